/**
 * Node module-customization hooks for TypeScript ranks, registered by `ts-register.ts`; they run on
 * Node's hooks thread. They are ts-node's ESM hooks (`ts-node/esm`, configured from the environment
 * that `ts-register.ts` prepared) with one change: a compile error is re-thrown as a plain `Error`.
 *
 * Why: ts-node's `TSError` keeps its diagnostics in a non-enumerable field and prints itself through a
 * custom `util.inspect` method. Neither survives the trip from the hooks thread to the main thread, so
 * a type error in a rank would be reported as `[Object: null prototype] {}` and nothing else.
 *
 * @module
 */

/** The two hooks of `ts-node/esm` that Node ≥ 20 calls. */
interface EsmHooks {
  resolve(specifier: string, context: unknown, nextResolve: unknown): Promise<unknown>;
  load(url: string, context: unknown, nextLoad: unknown): Promise<unknown>;
}

// A variable specifier: ts-node ships no typings for its `./esm` entry.
const tsNodeEsm = 'ts-node/esm';
const hooks = (await import(tsNodeEsm)) as EsmHooks;

/** Node's `resolve` hook: ts-node's, unchanged. */
export function resolve(specifier: string, context: unknown, nextResolve: unknown): Promise<unknown> {
  return hooks.resolve(specifier, context, nextResolve);
}

/** Node's `load` hook: ts-node's, with compile errors made printable on the main thread. */
export async function load(url: string, context: unknown, nextLoad: unknown): Promise<unknown> {
  try {
    return await hooks.load(url, context, nextLoad);
  } catch (error) {
    throw printable(error);
  }
}

function printable(error: unknown): unknown {
  if (!(error instanceof Error) || !('diagnosticText' in error)) return error;
  const plain = new Error(error.message);
  plain.name = 'TSError';
  // The diagnostics already say where the problem is; a stack into ts-node's internals would not.
  plain.stack = `${plain.name}: ${error.message}`;
  return plain;
}
