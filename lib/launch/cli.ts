/**
 * The `vmcomm` command (`bin/vmcomm.js` loads this file from `dist/`). Subcommands live in
 * {@link COMMANDS}: each has its options table, help text and a `run` that returns the exit status.
 * A new subcommand (`info`, `bench`, `clean`, `ivshmem`) is one more entry.
 *
 * Exit statuses: what the subcommand returns; 2 for a usage mistake (one line on stderr);
 * 1 for an error that stopped a subcommand before it started anything.
 *
 * @module
 */

import { readFileSync } from 'node:fs';
import { isVmcommError } from '../errors.js';
import { parseRendezvousAddress } from './address.js';
import { UsageError, describeOptions, parseArgs, positiveInteger, seconds, type OptionSpec, type ParsedArgs } from './args.js';
import { benchCommand } from './bench-command.js';
import { cleanShm, DEFAULT_CLEAN_MIN_AGE_SECONDS } from './clean-command.js';
import { infoCommand } from './info-command.js';
import { processOutput, resolveApp, runJob } from './launcher.js';
import { serveRendezvous } from './rendezvous-command.js';

/** One `vmcomm` subcommand. */
export interface Command {
  /** One line for `vmcomm --help`. */
  readonly summary: string;
  /** The synopsis line(s) after `usage: `. */
  readonly usage: string;
  /** Text after the options in `vmcomm <command> --help` (may be empty). */
  readonly details: string;
  readonly options: readonly OptionSpec[];
  /** Runs the command; `name` is e.g. `'vmcomm run'` for messages. Throws {@link UsageError} for misuse. */
  run(name: string, args: ParsedArgs): Promise<number>;
  /** For a command with subcommands of its own: gets the arguments unparsed instead of {@link run}. */
  readonly passThrough?: (argv: readonly string[]) => Promise<number>;
}

const HELP: OptionSpec = { key: 'help', flags: ['-h', '--help'], help: 'show this help' };

const runOptions: readonly OptionSpec[] = [
  { key: 'size', flags: ['-n', '-np', '--np'], value: 'N', help: 'number of ranks to start' },
  { key: 'tagOutput', flags: ['--tag-output'], help: "prefix each output line with '[rank] '" },
  {
    key: 'killGrace',
    flags: ['--kill-grace'],
    value: 'SECONDS',
    help: 'after a rank fails or aborts: wait this long, SIGTERM the others, wait again, SIGKILL (default 5)',
  },
  { key: 'backends', flags: ['--backends'], value: 'LIST', help: 'transports the ranks may use, e.g. shm,tcp (sets VMCOMM_BACKENDS)' },
  { key: 'typecheck', flags: ['--typecheck'], help: 'type-check TypeScript apps (default: transpile only)' },
  { key: 'threads', flags: ['--threads'], help: 'run the ranks as worker threads of one process' },
  { key: 'threadsPerProcess', flags: ['--threads-per-process'], value: 'K', help: 'run the ranks as worker threads, K per process' },
  {
    key: 'bindTo',
    flags: ['--bind-to'],
    value: 'core|none',
    help: 'core: pin each rank to a CPU of its own (needs ranks ≤ CPUs and the addon; otherwise the ranks run unbound and say why); default none',
  },
  HELP,
];

const rendezvousOptions: readonly OptionSpec[] = [
  { key: 'size', flags: ['-n', '-np', '--np'], value: 'N', help: 'number of ranks in the job' },
  { key: 'bind', flags: ['--bind'], value: 'ADDR:PORT', help: 'where to listen (default 127.0.0.1:0, a random port); [v6]:PORT for IPv6' },
  { key: 'grace', flags: ['--grace'], value: 'SECONDS', help: 'after a failure, how long connected ranks get to leave (default 5)' },
  HELP,
];

const cleanOptions: readonly OptionSpec[] = [
  { key: 'dir', flags: ['--dir'], value: 'PATH', help: 'the shared-memory directory to sweep (default /dev/shm)' },
  {
    key: 'minAge',
    flags: ['--min-age'],
    value: 'SECONDS',
    help: `keep unlocked files younger than this (default ${DEFAULT_CLEAN_MIN_AGE_SECONDS}; 0 removes every unlocked one)`,
  },
  { key: 'dryRun', flags: ['--dry-run'], help: 'list what would be removed, remove nothing' },
  { key: 'job', flags: ['--job'], value: 'ID', help: "only this job's files (its VMCOMM_JOB_ID)" },
  HELP,
];

/** The subcommands, by name. */
export const COMMANDS: ReadonlyMap<string, Command> = new Map<string, Command>([
  [
    'run',
    {
      summary: 'start N ranks of an app on this host',
      usage: 'vmcomm run -n N [options] [--] app.ts|app.js [args…]',
      options: runOptions,
      details: [
        'Ranks are node processes; .ts/.mts/.cts apps run through ts-node (transpile only unless --typecheck).',
        'With --threads or --threads-per-process, ranks are worker threads instead, and the ranks of one process',
        'talk through shared memory (the threads transport); ranks in different processes use the other transports.',
        'Node options for the ranks go in NODE_OPTIONS. Rank 0 reads the launcher\'s stdin.',
        'Exit status: the abort code if a rank aborted; else the first non-zero exit of a rank that ended by',
        'itself (a signal counts as 128 + its number); 1 if a rank ended before finalize with status 0;',
        '128 + N if the launcher got signal N.',
      ].join('\n'),
      run: runCommand,
    },
  ],
  [
    'rendezvous',
    {
      summary: 'serve the rendezvous of a job whose ranks are started elsewhere',
      usage: 'vmcomm rendezvous -n N [--bind ADDR:PORT] [--grace SECONDS]',
      options: rendezvousOptions,
      details: [
        'Prints VMCOMM_RENDEZVOUS, VMCOMM_JOB_SECRET, VMCOMM_JOB_ID and VMCOMM_SIZE on stdout, one per line;',
        'start each rank with them and its own VMCOMM_RANK. Exits 0 when every rank finalized; when a rank',
        'is lost or aborts, exits non-zero once the others left (or after --grace).',
      ].join('\n'),
      run: rendezvousCommand,
    },
  ],
  [
    'clean',
    {
      summary: 'remove stale shared-memory files left by ranks that died',
      usage: 'vmcomm clean [--dir PATH] [--min-age SECONDS] [--dry-run]',
      options: cleanOptions,
      details: [
        'A rank holds a lock (flock) on each of its /dev/shm/vmcomm-* files while it runs; the kernel drops',
        'it when the process ends, however it ends. So a file whose lock can be taken is stale: it is removed',
        '(while locked). Files in use are kept; pids are never used. Prints each removed file on stdout.',
        'vmcomm run does the same for its own job (and for old files of other jobs) by itself.',
      ].join('\n'),
      run: cleanCommand,
    },
  ],
  ['info', infoCommand],
  ['bench', benchCommand],
  [
    'ivshmem',
    {
      summary: 'create, show, revoke or restore an ivshmem region (memory shared by the VMs of a host)',
      usage: 'vmcomm ivshmem create --size 64M PATH | show [--json] PATH | revoke PATH | restore PATH',
      options: [HELP],
      details: "See 'vmcomm ivshmem --help'. The size must be a power of two (QEMU's ivshmem-plain requires one).",
      run: async () => 2,
      // The region tools live with the backend; lib/ names no backend statically (DESIGN section 1).
      passThrough: async (argv) => {
        const { runIvshmemCommand } = await import('../../backends/ivshmem/cli.js');
        return runIvshmemCommand(argv, process.stdout, process.stderr);
      },
    },
  ],
]);

/**
 * Runs `vmcomm <argv…>`; resolves with the exit status. Prints help, usage errors and failures
 * itself; never rejects.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const out = processOutput();
  const print = (sink: 'stdout' | 'stderr', text: string): void => out[sink].write(Buffer.from(text.endsWith('\n') ? text : text + '\n', 'utf8'));
  try {
    const [first, ...rest] = argv;
    if (first === undefined || first === '-h' || first === '--help') {
      print(first === undefined ? 'stderr' : 'stdout', overview());
      return first === undefined ? 2 : 0;
    }
    if (first === '--version') {
      print('stdout', version());
      return 0;
    }
    if (first === 'help') {
      const topic = rest[0];
      if (topic === undefined) {
        print('stdout', overview());
        return 0;
      }
      const command = COMMANDS.get(topic);
      if (command === undefined) throw new UsageError(`vmcomm: unknown command '${topic}' (${commandList()})`);
      print('stdout', commandHelp(topic, command));
      return 0;
    }
    if (first.startsWith('-')) throw new UsageError(`vmcomm: unknown option ${first} (see 'vmcomm --help')`);
    const command = COMMANDS.get(first);
    if (command === undefined) throw new UsageError(`vmcomm: unknown command '${first}' (${commandList()})`);
    if (command.passThrough) return await command.passThrough(rest);
    const name = `vmcomm ${first}`;
    const parsed = parseArgs(name, rest, command.options);
    if (parsed.values.has('help')) {
      print('stdout', commandHelp(first, command));
      return 0;
    }
    return await command.run(name, parsed);
  } catch (error) {
    if (error instanceof UsageError) {
      print('stderr', error.message);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    print('stderr', `vmcomm: ${isVmcommError(error) ? `${error.code}: ` : ''}${message}`);
    return 1;
  }
}

/**
 * `main`, then exit the process with its status once stdout and stderr were flushed. Used by
 * `bin/vmcomm.js`.
 */
export async function runCli(argv: readonly string[]): Promise<never> {
  const status = await main(argv);
  await Promise.all([flush(process.stdout), flush(process.stderr)]);
  process.exit(status);
}

// ---------------------------------------------------------------------------------------------------

async function runCommand(name: string, args: ParsedArgs): Promise<number> {
  const size = positiveInteger(name, '-n', args.values.get('size'));
  if (size === undefined) throw new UsageError(`${name}: -n N is required (see '${name} --help')`);
  const [app, ...appArgs] = args.rest;
  if (app === undefined) throw new UsageError(`${name}: no app given (usage: ${COMMANDS.get('run')?.usage})`);
  const backends = args.values.get('backends');
  if (backends !== undefined && (typeof backends !== 'string' || !/^[A-Za-z0-9_-]+(?:,[A-Za-z0-9_-]+)*$/.test(backends))) {
    throw new UsageError(`${name}: --backends must be a comma-separated list of transport names, e.g. shm,tcp`);
  }
  try {
    resolveApp(app);
  } catch (error) {
    throw new UsageError(`${name}: ${(error as Error).message}`);
  }
  const perProcess = positiveInteger(name, '--threads-per-process', args.values.get('threadsPerProcess'));
  if (perProcess !== undefined && args.values.has('threads')) {
    throw new UsageError(`${name}: use --threads (all ranks in one process) or --threads-per-process K, not both`);
  }
  const threadsPerProcess = args.values.has('threads') ? size : perProcess;
  const bindTo = args.values.get('bindTo') ?? 'none';
  if (bindTo !== 'core' && bindTo !== 'none') throw new UsageError(`${name}: --bind-to takes core or none, got ${JSON.stringify(bindTo)}`);
  return runJob({
    size,
    app,
    args: appArgs,
    tagOutput: args.values.has('tagOutput'),
    killGraceMs: seconds(name, '--kill-grace', args.values.get('killGrace'), 5),
    typecheck: args.values.has('typecheck'),
    bindTo,
    ...(typeof backends === 'string' ? { backends } : {}),
    ...(threadsPerProcess === undefined ? {} : { threadsPerProcess }),
  });
}

async function rendezvousCommand(name: string, args: ParsedArgs): Promise<number> {
  const size = positiveInteger(name, '-n', args.values.get('size'));
  if (size === undefined) throw new UsageError(`${name}: -n N is required (see '${name} --help')`);
  if (args.rest.length > 0) throw new UsageError(`${name}: unexpected argument '${args.rest[0]}' (see '${name} --help')`);
  const bindText = args.values.get('bind');
  let bind = { host: '127.0.0.1', port: 0 };
  if (typeof bindText === 'string') {
    try {
      bind = parseRendezvousAddress(bindText, '--bind', true);
    } catch (error) {
      throw new UsageError(`${name}: ${(error as Error).message}`);
    }
  }
  return serveRendezvous({ size, bind, graceMs: seconds(name, '--grace', args.values.get('grace'), 5) }, processOutput());
}

async function cleanCommand(name: string, args: ParsedArgs): Promise<number> {
  if (args.rest.length > 0) throw new UsageError(`${name}: unexpected argument '${args.rest[0]}' (see '${name} --help')`);
  const dir = args.values.get('dir');
  if (dir === true || dir === '') throw new UsageError(`${name}: --dir needs a directory`);
  const job = args.values.get('job');
  if (job !== undefined && (typeof job !== 'string' || !/^[\x21-\x7e]{1,128}$/.test(job))) throw new UsageError(`${name}: --job takes a job id (VMCOMM_JOB_ID)`);
  return cleanShm(
    {
      ...(dir === undefined ? {} : { directory: dir }),
      ...(typeof job === 'string' ? { jobId: job } : {}),
      minAgeMs: seconds(name, '--min-age', args.values.get('minAge'), DEFAULT_CLEAN_MIN_AGE_SECONDS),
      dryRun: args.values.has('dryRun'),
    },
    processOutput(),
  );
}

function overview(): string {
  const width = Math.max(...[...COMMANDS.keys()].map((k) => k.length));
  const lines = [...COMMANDS].map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return [
    'usage: vmcomm <command> [options]',
    '',
    'commands:',
    ...lines,
    '',
    "'vmcomm <command> --help' describes a command; 'vmcomm --version' prints the version.",
  ].join('\n');
}

function commandHelp(name: string, command: Command): string {
  return [`usage: ${command.usage}`, '', command.summary + '.', '', 'options:', describeOptions(command.options), '', command.details]
    .join('\n')
    .trimEnd();
}

function commandList(): string {
  return `commands: ${[...COMMANDS.keys()].join(', ')}; see 'vmcomm --help'`;
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return `vmcomm ${String(pkg.version)}`;
  } catch {
    return 'vmcomm (version unknown: package.json not found next to dist/)';
  }
}

function flush(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 1_000);
    stream.write('', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
