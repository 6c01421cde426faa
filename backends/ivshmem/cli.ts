/**
 * `vmcomm ivshmem …`: managing region files from the command line, over `admin.ts`.
 *
 * ```text
 * vmcomm ivshmem create --size 64M [--slots N] [--ring-bytes SIZE] [--force] PATH
 * vmcomm ivshmem show [--json] [--size SIZE] PATH
 * vmcomm ivshmem revoke [--size SIZE] PATH
 * vmcomm ivshmem restore [--size SIZE] PATH
 * vmcomm ivshmem attach PATH        (VMCOMM_RENDEZVOUS, VMCOMM_JOB_SECRET of a running job)
 * ```
 *
 * `create` makes and formats a region file (a power-of-two size, as QEMU's ivshmem-plain requires,
 * else a clear error); `show` prints its header, members and rings; `revoke` marks it revoked
 * (running jobs move its pairs elsewhere and leave, nobody joins) and `restore` clears the mark
 * (running jobs join again and move pairs back: migration, `lib/migration/`); `attach` offers a
 * region to a running job through its rendezvous. `--size` on the others maps that many bytes, for a
 * device whose size reads as 0. Exit status: 0, 2 for a usage mistake (one line on
 * stderr), 1 for a failure (one line on stderr).
 *
 * `runIvshmemCommand` takes the arguments after `ivshmem` and two writable sinks, so that the
 * `vmcomm` command (`lib/launch/cli.ts`) can mount it as a subcommand and tests can call it directly.
 *
 * @module
 */

import { isVmcommError } from '../../lib/errors.js';
import { describeOptions, parseArgs, positiveInteger, UsageError, type OptionSpec, type ParsedArgs } from '../../lib/launch/args.js';
import { describeRegionFile, formatRegionFile, parseSize, renderRegionDescription, setRegionFileRevoked } from './admin.js';
import { formatSize } from './region-layout.js';
import { readJobAccess } from '../../lib/launch/environment.js';
import { sendAttach } from '../../lib/launch/rendezvous-client.js';

/** Where the command writes (`process.stdout`, `process.stderr`, or a test's collector). */
export interface TextSink {
  write(text: string): unknown;
}

interface Subcommand {
  readonly usage: string;
  readonly summary: string;
  readonly options: readonly OptionSpec[];
  run(name: string, args: ParsedArgs, out: TextSink): number | Promise<number>;
}

const HELP: OptionSpec = { key: 'help', flags: ['-h', '--help'], help: 'show this help' };
const MAP_SIZE: OptionSpec = { key: 'size', flags: ['--size'], value: 'SIZE', help: 'map this many bytes (for a device whose size reads as 0)' };

const SUBCOMMANDS: ReadonlyMap<string, Subcommand> = new Map<string, Subcommand>([
  [
    'create',
    {
      usage: 'vmcomm ivshmem create --size SIZE [--slots N] [--ring-bytes SIZE] [--force] PATH',
      summary: 'create and format a region file (give it to QEMU as memory-backend-file mem-path=PATH)',
      options: [
        { key: 'size', flags: ['--size'], value: 'SIZE', help: 'the region size: a power of two from 64K, e.g. 64M (K, M, G are powers of 1024)' },
        { key: 'slots', flags: ['--slots'], value: 'N', help: 'membership slots: ranks that can join at once (default 64; 16 below 1M)' },
        { key: 'ringBytes', flags: ['--ring-bytes'], value: 'SIZE', help: "each ring's data bytes, a power of two (default 64K, smaller if the region is small)" },
        { key: 'force', flags: ['--force'], help: 're-format an existing file of the same size (everything in it is lost)' },
        HELP,
      ],
      run: create,
    },
  ],
  [
    'show',
    {
      usage: 'vmcomm ivshmem show [--json] [--size SIZE] PATH',
      summary: "print a region's header, members and rings",
      options: [{ key: 'json', flags: ['--json'], help: 'print JSON instead of text' }, MAP_SIZE, HELP],
      run: show,
    },
  ],
  [
    'revoke',
    {
      usage: 'vmcomm ivshmem revoke [--size SIZE] PATH',
      summary: 'mark a region revoked (before a migration): running jobs move its pairs to another transport and leave it; nobody joins',
      options: [MAP_SIZE, HELP],
      run: (name, args, out) => revoke(name, args, out, true),
    },
  ],
  [
    'restore',
    {
      usage: 'vmcomm ivshmem restore [--size SIZE] PATH',
      summary: 'clear the revoked mark of a region: running jobs join it again and move their pairs back',
      options: [MAP_SIZE, HELP],
      run: (name, args, out) => revoke(name, args, out, false),
    },
  ],
  [
    'attach',
    {
      usage: 'vmcomm ivshmem attach PATH   (with VMCOMM_RENDEZVOUS and VMCOMM_JOB_SECRET of the running job)',
      summary: "offer a region to a running job through its rendezvous: its ranks join it and move the pairs that share it there",
      options: [HELP],
      run: attach,
    },
  ],
]);

/** The overview printed by `vmcomm ivshmem --help`. */
export function ivshmemHelp(): string {
  const width = Math.max(...[...SUBCOMMANDS.keys()].map((k) => k.length));
  return [
    'usage: vmcomm ivshmem <create|show|revoke|restore|attach> [options] PATH',
    '',
    'Manage ivshmem region files: the host memory that VMs on one host share (QEMU ivshmem-plain).',
    '',
    'commands:',
    ...[...SUBCOMMANDS].map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    "'vmcomm ivshmem <command> --help' describes a command.",
  ].join('\n');
}

/**
 * Runs `vmcomm ivshmem <argv…>` (`argv` starts with the subcommand). Resolves with the exit status;
 * never rejects.
 */
export async function runIvshmemCommand(argv: readonly string[], out: TextSink, err: TextSink): Promise<number> {
  const print = (sink: TextSink, text: string): void => void sink.write(text.endsWith('\n') ? text : `${text}\n`);
  try {
    const [first, ...rest] = argv;
    if (first === undefined || first === '-h' || first === '--help' || first === 'help') {
      print(first === undefined ? err : out, ivshmemHelp());
      return first === undefined ? 2 : 0;
    }
    const command = SUBCOMMANDS.get(first);
    if (command === undefined) throw new UsageError(`vmcomm ivshmem: unknown command '${first}' (create, show, revoke, restore, attach)`);
    const name = `vmcomm ivshmem ${first}`;
    const args = parseArgs(name, rest, command.options);
    if (args.values.has('help')) {
      print(out, [`usage: ${command.usage}`, '', `${command.summary}.`, '', 'options:', describeOptions(command.options)].join('\n'));
      return 0;
    }
    return await command.run(name, args, { write: (text) => print(out, text) });
  } catch (error) {
    if (error instanceof UsageError) {
      print(err, error.message);
      return 2;
    }
    const message = error instanceof Error ? error.message : String(error);
    print(err, `vmcomm ivshmem: ${isVmcommError(error) ? `${error.code}: ` : ''}${message}`);
    return 1;
  }
}

/** The one PATH argument. */
function onePath(name: string, args: ParsedArgs): string {
  if (args.rest.length === 0) throw new UsageError(`${name}: PATH is required (see '${name} --help')`);
  if (args.rest.length > 1) throw new UsageError(`${name}: unexpected argument '${args.rest[1]}' (one PATH)`);
  return args.rest[0];
}

/** A size option (`64M`), as a {@link UsageError} when malformed. */
function sizeOption(name: string, flag: string, value: string | true | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (value === true) throw new UsageError(`${name}: ${flag} needs a size, e.g. 64M`);
  try {
    return parseSize(value);
  } catch (error) {
    throw new UsageError(`${name}: ${flag}: ${(error as Error).message}`);
  }
}

function create(name: string, args: ParsedArgs, out: TextSink): number {
  const path = onePath(name, args);
  const size = sizeOption(name, '--size', args.values.get('size'));
  if (size === undefined) throw new UsageError(`${name}: --size SIZE is required, e.g. --size 64M`);
  const slots = positiveInteger(name, '--slots', args.values.get('slots'));
  const ringDataBytes = sizeOption(name, '--ring-bytes', args.values.get('ringBytes'));
  // A size that is not a power of two is the admin's INVALID_ARGUMENT with the nearest valid sizes.
  const made = formatRegionFile(path, size, {
    ...(slots === undefined ? {} : { slots }),
    ...(ringDataBytes === undefined ? {} : { ringDataBytes }),
    force: args.values.has('force'),
  });
  const l = made.layout;
  out.write(
    `created ${made.path}: ivshmem region ${made.uuid}, ${formatSize(made.sizeBytes)} (${made.sizeBytes} bytes), ${l.slots} slots, ${l.blocks} rings of ${formatSize(l.ringDataBytes)}\n` +
      `QEMU: -object memory-backend-file,id=hostmem,share=on,mem-path=${made.path},size=${formatSize(made.sizeBytes)} -device ivshmem-plain,memdev=hostmem`,
  );
  return 0;
}

function show(name: string, args: ParsedArgs, out: TextSink): number {
  const path = onePath(name, args);
  const size = sizeOption(name, '--size', args.values.get('size'));
  const d = describeRegionFile(path, size === undefined ? {} : { sizeBytes: size });
  out.write(args.values.has('json') ? JSON.stringify({ path, ...d }, null, 2) : `${path}\n${renderRegionDescription(d)}`);
  return 0;
}

function revoke(name: string, args: ParsedArgs, out: TextSink, revoked: boolean): number {
  const path = onePath(name, args);
  const size = sizeOption(name, '--size', args.values.get('size'));
  setRegionFileRevoked(path, revoked, size === undefined ? {} : { sizeBytes: size });
  out.write(
    revoked
      ? `revoked ${path}: running jobs move its pairs to another transport (tcp) and leave it; nobody joins until \`vmcomm ivshmem restore\``
      : `restored ${path}: running jobs join it again and move their pairs back; new ranks join it as they start`,
  );
  return 0;
}

async function attach(name: string, args: ParsedArgs, out: TextSink): Promise<number> {
  const path = onePath(name, args);
  const access = readJobAccess(process.env);
  const ranks = await sendAttach({ host: access.host, port: access.port, jobId: access.jobId, secret: access.secret }, path);
  out.write(`offered ${path} to the job at ${access.host}:${access.port}: ${ranks} rank(s) told; each joins the region and moves the pairs that share it there`);
  return 0;
}
