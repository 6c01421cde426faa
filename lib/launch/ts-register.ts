/**
 * Preload module for TypeScript ranks: `node --import <dist>/lib/launch/ts-register.js app.ts`.
 * `vmcomm run` adds it for `.ts` apps; a rank started by hand can use the same line.
 *
 * Why this shape (each alternative was tried on Node 20): `module.register('ts-node/esm', …)` from
 * an `--import` preload runs ts-node's ESM hooks without the warning `--loader` prints, and works
 * with decorators; `ts-node --esm` fails on current Node, and tsx breaks in worker threads. Hooks
 * registered this way run on Node's hooks thread, so a CommonJS entry (a `.ts` file under a
 * `package.json` without `"type": "module"`, or a `.cts`) additionally needs ts-node's `require`
 * hook on the main thread: Node's CommonJS loader, not the hooks, compiles it.
 *
 * ts-node is resolved from vmcomm's own location (it is a dependency), not from the current
 * directory, so apps outside a project that installs ts-node work too. The settings come from
 * {@link tsNodeSettings} and are put into `process.env` before ts-node loads, because ts-node reads
 * its options from the environment when its hooks thread starts.
 *
 * @module
 */

import { createRequire, register } from 'node:module';
import { tsNodeSettings } from './typescript.js';

const entry = process.argv[1];
if (entry !== undefined && entry !== '') {
  const settings = tsNodeSettings(entry, process.env);
  for (const [name, value] of Object.entries(settings.env)) process.env[name] = value;
  register(new URL('./ts-hooks.js', import.meta.url));
  if (settings.commonJs) {
    const tsNode = createRequire(import.meta.url)('ts-node') as { register(): unknown };
    tsNode.register();
  }
} else {
  // `node --import …/ts-register.js` with no script (a REPL, `-e`): no entry to configure from;
  // ts-node's own defaults apply.
  register(new URL('./ts-hooks.js', import.meta.url));
}
