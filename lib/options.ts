/**
 * Options of `init()`, their defaults and their validation, in one place.
 *
 * @module
 */

import type { BackendFactory } from './backend.js';
import type { TransportName } from './constants.js';
import { VmcommError } from './errors.js';

/** A number for every transport, or per transport name. */
export type PerTransport<T> = T | { readonly [name in TransportName]?: T };

/** What `init()` accepts. Every field is optional. */
export interface InitOptions {
  /**
   * Extra transports (plug-ins implementing `vmcomm/backend`), offered beside the built-in ones. A
   * plug-in wins a pair when its priority is highest among the transports both ends proved.
   */
  backends?: readonly BackendFactory[];
  /**
   * Restricts the candidate transports (names). Default: `VMCOMM_BACKENDS` (comma-separated), else
   * all. `self` is always kept: it carries a rank's messages to itself.
   */
  only?: readonly TransportName[];
  /** Overrides transports' eager limits (bytes): one number for all, or per transport name. */
  eagerLimitBytes?: PerTransport<number>;
  /** Overrides transports' eager credits per pair: one number for all, or per transport name. */
  eagerCredits?: PerTransport<number>;
  /**
   * Rendezvous announcements a rank may have unanswered at one peer (default 1024); later sends to
   * that peer wait, in order. With the eager credits this bounds a receiver's unexpected queue: per
   * sender, `eagerCredits` × `eagerLimitBytes` of data plus this many small records.
   */
  rendezvousWindow?: number;
  /** Environment to read `VMCOMM_*` from (default `process.env`). */
  env?: Readonly<Record<string, string | undefined>>;
}

/** Options after validation. */
export interface ParsedOptions {
  readonly backends: readonly BackendFactory[];
  readonly only: ReadonlySet<string> | undefined;
  readonly eagerLimitBytes: PerTransport<number> | undefined;
  readonly eagerCredits: PerTransport<number> | undefined;
  readonly rendezvousWindow: number | undefined;
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Validates `init()`'s options; a bad one is `INVALID_ARGUMENT` naming it. */
export function parseInitOptions(options: InitOptions = {}): ParsedOptions {
  if (options === null || typeof options !== 'object') throw new VmcommError('INVALID_ARGUMENT', 'init() takes an options object');
  const known = new Set(['backends', 'only', 'eagerLimitBytes', 'eagerCredits', 'rendezvousWindow', 'env']);
  for (const k of Object.keys(options)) if (!known.has(k)) throw new VmcommError('INVALID_ARGUMENT', `unknown init() option "${k}" (known: ${[...known].join(', ')})`);
  const backends = options.backends ?? [];
  if (!Array.isArray(backends)) throw new VmcommError('INVALID_ARGUMENT', 'init({ backends }) must be an array of backend factories');
  for (const f of backends) {
    if (typeof f !== 'function' || typeof f.transportName !== 'string' || f.transportName === '') {
      throw new VmcommError('INVALID_ARGUMENT', 'each of init({ backends }) must be a function with a `transportName` string (see vmcomm/backend)');
    }
  }
  const env = options.env ?? process.env;
  let only: Set<string> | undefined;
  const list = options.only ?? (env.VMCOMM_BACKENDS ? env.VMCOMM_BACKENDS.split(',') : undefined);
  if (list !== undefined) {
    if (!Array.isArray(list) || list.some((n) => typeof n !== 'string')) throw new VmcommError('INVALID_ARGUMENT', 'init({ only }) must be an array of transport names');
    only = new Set(list.map((n) => n.trim()).filter((n) => n !== ''));
    only.add('self');
  }
  checkPerTransport('eagerLimitBytes', options.eagerLimitBytes, 0);
  checkPerTransport('eagerCredits', options.eagerCredits, 1);
  const window = options.rendezvousWindow;
  if (window !== undefined && (typeof window !== 'number' || !Number.isSafeInteger(window) || window < 1)) {
    throw new VmcommError('INVALID_ARGUMENT', 'init({ rendezvousWindow }) must be a whole number ≥ 1');
  }
  return { backends, only, eagerLimitBytes: options.eagerLimitBytes, eagerCredits: options.eagerCredits, rendezvousWindow: window, env };
}

function checkPerTransport(name: string, v: PerTransport<number> | undefined, min: number): void {
  if (v === undefined) return;
  const ok = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n) && n >= min;
  if (typeof v === 'number' ? !ok(v) : typeof v !== 'object' || v === null || Object.values(v).some((n) => n !== undefined && !ok(n))) {
    throw new VmcommError('INVALID_ARGUMENT', `init({ ${name} }) must be a whole number ≥ ${min}, or an object of them per transport name`);
  }
}

/** The value for `transport` from a {@link PerTransport}, else `fallback`. */
export function perTransport(v: PerTransport<number> | undefined, transport: string, fallback: number): number {
  if (v === undefined) return fallback;
  if (typeof v === 'number') return v;
  return (v as Record<string, number | undefined>)[transport] ?? fallback;
}
