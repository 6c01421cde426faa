/**
 * Command-line options for the `vmcomm` subcommands: a small parser with a declarative option table,
 * because `vmcomm run` must stop at the app (everything after it belongs to the app), which
 * `util.parseArgs` cannot do.
 *
 * @module
 */

/** A usage mistake: reported as one line, exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** One option of a subcommand. */
export interface OptionSpec {
  /** The key in the parsed result, e.g. `'size'`. */
  readonly key: string;
  /** Spellings, e.g. `['-n', '-np', '--np']`. */
  readonly flags: readonly string[];
  /** Name of its value in help (`'N'`); absent for a switch. */
  readonly value?: string;
  /** One line of help. */
  readonly help: string;
  /** When set, the option exists but cannot be used in this version: this says why. */
  readonly unavailable?: string;
}

/** What {@link parseArgs} returns. */
export interface ParsedArgs {
  /** Values by key (`true` for switches), last occurrence wins. */
  readonly values: ReadonlyMap<string, string | true>;
  /** The arguments after the options: the first non-option and everything after it, or after `--`. */
  readonly rest: readonly string[];
}

/**
 * Parses `argv` against `options`. Options end at `--` or at the first argument that does not start
 * with `-` (a lone `-` counts as an argument). Accepts `--flag value`, `--flag=value`, and for
 * one-letter flags `-n4`. Throws {@link UsageError} for unknown options, missing values, and options
 * marked unavailable.
 */
export function parseArgs(command: string, argv: readonly string[], options: readonly OptionSpec[]): ParsedArgs {
  const values = new Map<string, string | true>();
  const byFlag = new Map<string, OptionSpec>();
  for (const spec of options) for (const flag of spec.flags) byFlag.set(flag, spec);
  let i = 0;
  for (; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--') {
      i += 1;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') break;
    let flag = arg;
    let inline: string | undefined;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq !== -1) {
      flag = arg.slice(0, eq);
      inline = arg.slice(eq + 1);
    } else if (!byFlag.has(arg) && /^-[A-Za-z]./.test(arg) && byFlag.get(arg.slice(0, 2))?.value !== undefined) {
      flag = arg.slice(0, 2);
      inline = arg.slice(2).replace(/^=/, '');
    }
    const spec = byFlag.get(flag);
    if (spec === undefined) throw new UsageError(`${command}: unknown option ${flag} (see '${command} --help')`);
    if (spec.unavailable !== undefined) throw new UsageError(`${command}: ${flag} is not available yet: ${spec.unavailable}`);
    if (spec.value === undefined) {
      if (inline !== undefined) throw new UsageError(`${command}: ${flag} takes no value`);
      values.set(spec.key, true);
      continue;
    }
    let value = inline;
    if (value === undefined) {
      i += 1;
      if (i >= argv.length) throw new UsageError(`${command}: ${flag} needs a value (${spec.value})`);
      value = argv[i];
    }
    values.set(spec.key, value);
  }
  return { values, rest: argv.slice(i) };
}

/** A positive integer option, or a {@link UsageError} naming the flag. */
export function positiveInteger(command: string, flag: string, text: string | true | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = typeof text === 'string' && /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < 1) throw new UsageError(`${command}: ${flag} must be a positive integer, got ${JSON.stringify(text)}`);
  return value;
}

/** A non-negative number of seconds, returned in ms. */
export function seconds(command: string, flag: string, text: string | true | undefined, fallbackSeconds: number): number {
  if (text === undefined) return fallbackSeconds * 1000;
  const value = typeof text === 'string' && /^\d+(?:\.\d+)?$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isFinite(value) || value > 86_400) throw new UsageError(`${command}: ${flag} must be a number of seconds (0…86400), got ${JSON.stringify(text)}`);
  return Math.round(value * 1000);
}

/** Help lines for an option table, aligned. */
export function describeOptions(options: readonly OptionSpec[]): string {
  const rows = options
    .filter((o) => o.unavailable === undefined)
    .map((o) => [o.flags.join(', ') + (o.value === undefined ? '' : ` ${o.value}`), o.help] as const);
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, right]) => `  ${left.padEnd(width)}  ${right}`).join('\n');
}
