/**
 * Injection tokens of the core's container (explicit tokens: no reliance on emitted type metadata).
 *
 * @module
 */

/** The tokens; internal to vmcomm. */
export const TOKENS = {
  /** The validated `init()` options (`ParsedOptions`). */
  Options: Symbol.for('vmcomm.Options'),
  /** The job bootstrap (`Bootstrap`). */
  Bootstrap: Symbol.for('vmcomm.Bootstrap'),
  /** Every transport factory, built-in and plug-in (`BackendFactory`, multi-bound). */
  BackendFactory: Symbol.for('vmcomm.BackendFactory'),
} as const;
