/**
 * How a TypeScript app is run: `node --import <dist>/lib/launch/ts-register.js app.ts`, with ts-node
 * compiling each file as Node loads it. This module only decides the ts-node settings; it has no side
 * effects, so the launcher and the register module share it (and tests can call it).
 *
 * Why these settings:
 * - ts-node looks for `tsconfig.json` from the *current directory*, so the same app would compile
 *   differently depending on where `vmcomm run` was started. We look from the app's own directory
 *   instead (what `ts-node app.ts` does in its default script mode) and pass the result as
 *   `TS_NODE_PROJECT`.
 * - With no `tsconfig.json` at all, ts-node falls back to its built-in defaults, which TypeScript 6
 *   rejects (`moduleResolution=node10` is deprecated) and which emit CommonJS. We then give it a small
 *   config of our own ({@link DEFAULT_COMPILER_OPTIONS}) through `TS_NODE_COMPILER_OPTIONS`. When a
 *   tsconfig exists we never override its compiler options: the environment variable would win over
 *   the file.
 * - Transpile-only unless asked otherwise: type checking every rank's files on every start costs
 *   seconds per rank and N times the memory; `vmcomm run --typecheck` turns it on.
 * - Settings the user already put in the environment (`TS_NODE_PROJECT`, `TS_NODE_SKIP_PROJECT`,
 *   `TS_NODE_COMPILER_OPTIONS`, `TS_NODE_TRANSPILE_ONLY`, `TS_NODE_TYPE_CHECK`) are kept, except that an
 *   explicit `--typecheck` wins (`TS_NODE_TYPE_CHECK=true` also beats a tsconfig's
 *   `"ts-node": { "transpileOnly": true }`).
 *
 * @module
 */

import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/** File names that `vmcomm run` hands to ts-node. */
const TYPESCRIPT_FILE = /\.(?:[cm]?ts|tsx)$/i;

/**
 * The compiler options used when no `tsconfig.json` is found above the app: native ESM as Node runs
 * it (`NodeNext` emits ESM or CommonJS per file, following the package's `"type"`, like Node itself),
 * a target every supported Node runs, and legacy decorators (what inversify-style code uses).
 */
export const DEFAULT_COMPILER_OPTIONS = {
  module: 'NodeNext',
  moduleResolution: 'NodeNext',
  target: 'ES2022',
  experimentalDecorators: true,
  esModuleInterop: true,
  skipLibCheck: true,
} as const;

/** True when `vmcomm run` runs `file` through ts-node (`.ts`, `.mts`, `.cts`, `.tsx`). */
export function isTypeScriptApp(file: string): boolean {
  return TYPESCRIPT_FILE.test(file);
}

/** The nearest `tsconfig.json` at or above `dir`, or `undefined`. */
export function findTsconfig(dir: string): string | undefined {
  for (let current = path.resolve(dir); ; current = path.dirname(current)) {
    const candidate = path.join(current, 'tsconfig.json');
    if (isFile(candidate)) return candidate;
    if (path.dirname(current) === current) return undefined;
  }
}

/**
 * How Node treats `file`: `'module'` (ESM) or `'commonjs'`, by its extension and else by the
 * `"type"` of the nearest `package.json` (Node's own rule; no `package.json` means CommonJS).
 * Returns the `package.json` consulted too, for messages.
 */
export function moduleKindOf(file: string): { kind: 'module' | 'commonjs'; packageJson?: string } {
  if (/\.m[jt]s$/i.test(file)) return { kind: 'module' };
  if (/\.c[jt]s$/i.test(file)) return { kind: 'commonjs' };
  for (let current = path.dirname(path.resolve(file)); ; current = path.dirname(current)) {
    const candidate = path.join(current, 'package.json');
    if (isFile(candidate)) {
      let type: unknown;
      try {
        type = (JSON.parse(readFileSync(candidate, 'utf8')) as { type?: unknown }).type;
      } catch {
        // Node refuses to load a module under an unreadable package.json with its own clear error.
        type = undefined;
      }
      return { kind: type === 'module' ? 'module' : 'commonjs', packageJson: candidate };
    }
    if (path.dirname(current) === current) return { kind: 'commonjs' };
  }
}

/** What {@link tsNodeSettings} decided. */
export interface TsNodeSettings {
  /** Variables to add to the environment before ts-node is loaded (only ones not already set). */
  readonly env: { [name: string]: string };
  /** The entry is CommonJS: ts-node's `require` hook must be installed on the main thread too. */
  readonly commonJs: boolean;
  /** The tsconfig ts-node will read, if any. */
  readonly tsconfig?: string;
}

/**
 * The ts-node settings for running `entry` (an absolute or relative path), given the current
 * environment `env` (not modified).
 *
 * @param options.typecheck `true` → type-check (`TS_NODE_TYPE_CHECK=true`), `false` → transpile only,
 *   `undefined` → the environment's choice, else transpile only.
 */
export function tsNodeSettings(
  entry: string,
  env: NodeJS.ProcessEnv,
  options: { typecheck?: boolean } = {},
): TsNodeSettings {
  const out: { [name: string]: string } = {};
  let tsconfig: string | undefined;
  if (env.TS_NODE_PROJECT !== undefined) {
    tsconfig = path.resolve(env.TS_NODE_PROJECT);
  } else if (env.TS_NODE_SKIP_PROJECT === undefined) {
    tsconfig = findTsconfig(path.dirname(path.resolve(entry)));
    if (tsconfig !== undefined) out.TS_NODE_PROJECT = tsconfig;
    else out.TS_NODE_SKIP_PROJECT = 'true';
  }
  if (tsconfig === undefined && env.TS_NODE_COMPILER_OPTIONS === undefined) {
    out.TS_NODE_COMPILER_OPTIONS = JSON.stringify(DEFAULT_COMPILER_OPTIONS);
  }
  if (options.typecheck === true) {
    // TYPE_CHECK also beats a `"ts-node": { "transpileOnly": true }` in the tsconfig.
    out.TS_NODE_TRANSPILE_ONLY = 'false';
    out.TS_NODE_TYPE_CHECK = 'true';
  } else if (options.typecheck === false) {
    out.TS_NODE_TRANSPILE_ONLY = 'true';
    out.TS_NODE_TYPE_CHECK = 'false';
  } else if (env.TS_NODE_TRANSPILE_ONLY === undefined && env.TS_NODE_TYPE_CHECK === undefined) {
    out.TS_NODE_TRANSPILE_ONLY = 'true';
  }
  const settings: TsNodeSettings = { env: out, commonJs: moduleKindOf(entry).kind === 'commonjs' };
  return tsconfig === undefined ? settings : { ...settings, tsconfig };
}

function isFile(p: string): boolean {
  try {
    return existsSync(p) && statSync(p).isFile();
  } catch {
    return false;
  }
}
