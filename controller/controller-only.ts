// `molt controller` in local mode: the controller and admin API without a supervised sidecar.
// Sidecars started separately (`molt sidecar --control SOCKET`) connect to it.

import { runUp } from './up.js';

export async function runControllerOnly(argv: string[]): Promise<void> {
  const handle = await runUp(argv, { sidecar: false, command: 'controller' });
  if (!handle) return;
  process.stdout.write(`control socket: ${handle.controller.control.socketPath}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => void handle.shutdown().then(resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
