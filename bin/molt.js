#!/usr/bin/env node
// molt CLI. Run `npm run build` first: this loads the compiled TypeScript from dist/.
import { main } from '../dist/controller/cli.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => { console.error(err); process.exitCode = 1; },
);
