// Static files of the dashboard, read from the package itself (never a CDN): the page from
// controller/dashboard/ui/ in the source tree (tsc compiles only .ts into dist/, so they are resolved from the
// package root, which works from a fresh clone after `npm run build`) and uPlot from node_modules.

import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MoltError } from '../../common/errors.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** The folder holding package.json "name": "molt", searched upwards from this file (src or dist). */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    try {
      if ((JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'molt') return dir;
    } catch {
      // keep looking
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('molt dashboard: cannot find the package root (package.json "name": "molt")');
    dir = up;
  }
}

export interface Asset {
  body: Buffer;
  type: string;
}

/** URL path below /ui/ -> file. Fixed list: nothing else under /ui is read from disk. */
function assetFiles(): Map<string, string> {
  const root = packageRoot();
  const ui = path.join(root, 'controller', 'dashboard', 'ui');
  const require = createRequire(path.join(root, 'package.json'));
  const uplotDir = path.dirname(require.resolve('uplot/package.json'));
  return new Map([
    ['', path.join(ui, 'index.html')],
    ['app.js', path.join(ui, 'app.js')],
    ['style.css', path.join(ui, 'style.css')],
    ['vendor/uplot.esm.js', path.join(uplotDir, 'dist', 'uPlot.esm.js')],
    ['vendor/uplot.css', path.join(uplotDir, 'dist', 'uPlot.min.css')],
  ]);
}

export class DashboardAssets {
  #files: Map<string, string> | undefined;
  readonly #cache = new Map<string, Asset>();

  /** The asset for a path below /ui/ ("" is the page), or undefined. Read once, then served from memory. */
  get(name: string): Asset | undefined {
    const cached = this.#cache.get(name);
    if (cached) return cached;
    this.#files ??= assetFiles();
    const file = this.#files.get(name);
    if (!file) return undefined;
    let body: Buffer;
    try {
      body = fs.readFileSync(file);
    } catch (err) {
      // A package (or image) built without controller/dashboard/ui or node_modules/uplot.
      throw new MoltError('MOLT_ERR_NOT_FOUND', `dashboard file missing from the installation: ${file} (${(err as NodeJS.ErrnoException).code})`);
    }
    const asset = { body, type: TYPES[path.extname(file)] ?? 'application/octet-stream' };
    this.#cache.set(name, asset);
    return asset;
  }
}
