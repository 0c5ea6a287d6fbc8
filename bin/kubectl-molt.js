// Entry of the kubectl plugin (bin/kubectl-molt runs it).
// `kubectl molt ...`: kubectl runs this plugin when it is on PATH (npm install -g puts it there).
import { kubectlMoltMain } from '../dist/controller/kube/kubectl-plugin.js';

kubectlMoltMain(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err); process.exitCode = 1; },
);
