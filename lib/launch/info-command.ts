/**
 * `vmcomm info`: runs a small job (`info-app.ts`) whose ranks describe themselves, and prints what
 * rank 0 gathered: versions, the native addon, each rank's locality card, attached ivshmem regions,
 * the rank × rank transport matrix with why each pair got its transport, and the collective
 * algorithms in force. The job is started like `vmcomm run` starts one, with the same options, so it
 * shows what an app started the same way would get.
 *
 * @module
 */

import { fileURLToPath } from 'node:url';
import { UsageError, positiveInteger, type OptionSpec, type ParsedArgs } from './args.js';
import type { Command } from './cli.js';
import { runJob } from './launcher.js';

/** The rank program (compiled, next to this file). */
const INFO_APP = fileURLToPath(new URL('./info-app.js', import.meta.url));

/** Ranks when `-n` is not given: two, so that there is a pair to explain. */
export const DEFAULT_INFO_RANKS = 2;

const options: readonly OptionSpec[] = [
  { key: 'size', flags: ['-n', '-np', '--np'], value: 'N', help: `number of ranks (default ${DEFAULT_INFO_RANKS})` },
  { key: 'threads', flags: ['--threads'], help: 'run the ranks as worker threads of one process' },
  { key: 'threadsPerProcess', flags: ['--threads-per-process'], value: 'K', help: 'run the ranks as worker threads, K per process' },
  { key: 'backends', flags: ['--backends'], value: 'LIST', help: 'transports the ranks may use, e.g. shm,tcp (sets VMCOMM_BACKENDS)' },
  { key: 'json', flags: ['--json'], help: "print every rank's information as JSON instead" },
  { key: 'help', flags: ['-h', '--help'], help: 'show this help' },
];

async function run(name: string, args: ParsedArgs): Promise<number> {
  if (args.rest.length > 0) throw new UsageError(`${name}: unexpected argument '${args.rest[0]}' (see '${name} --help')`);
  const size = positiveInteger(name, '-n', args.values.get('size')) ?? DEFAULT_INFO_RANKS;
  const backends = args.values.get('backends');
  if (backends !== undefined && (typeof backends !== 'string' || !/^[A-Za-z0-9_-]+(?:,[A-Za-z0-9_-]+)*$/.test(backends))) {
    throw new UsageError(`${name}: --backends must be a comma-separated list of transport names, e.g. shm,tcp`);
  }
  const perProcess = positiveInteger(name, '--threads-per-process', args.values.get('threadsPerProcess'));
  if (perProcess !== undefined && args.values.has('threads')) throw new UsageError(`${name}: use --threads or --threads-per-process K, not both`);
  const threadsPerProcess = args.values.has('threads') ? size : perProcess;
  return runJob({
    size,
    app: INFO_APP,
    args: args.values.has('json') ? ['--json'] : [],
    tagOutput: false,
    killGraceMs: 5_000,
    typecheck: false,
    ...(typeof backends === 'string' ? { backends } : {}),
    ...(threadsPerProcess === undefined ? {} : { threadsPerProcess }),
  });
}

/** The `vmcomm info` subcommand (an entry of the `vmcomm` command table). */
export const infoCommand: Command = {
  summary: 'show the topology: cards, transport per pair and why, collective algorithms, addon, versions',
  usage: 'vmcomm info [-n N] [--threads | --threads-per-process K] [--backends LIST] [--json]',
  options,
  details: [
    'Starts N ranks as `vmcomm run` would (processes, or threads with --threads) and prints what they found:',
    'the versions; whether the native addon loaded on each rank (and why not); each rank\'s locality card',
    '(the transports that started, their card fields, and why the others did not); attached ivshmem regions;',
    'the rank × rank transport matrix and, per pair, every candidate by priority and why it lost or won;',
    'the collective algorithm table with the VMCOMM_COLL_* overrides in force; the VMCOMM_* settings.',
    'Exit status: as vmcomm run.',
  ].join('\n'),
  run,
};
