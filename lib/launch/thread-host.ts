/**
 * Thread-ranks: several ranks of a job as worker threads of one process, which the `threads`
 * transport connects through shared memory.
 *
 * ## The host process (`vmcomm run --threads`, `--threads-per-process K`)
 *
 * `vmcomm run` starts this file as the process — `node thread-host.js [--tag-output] [--] app [args…]`
 * with `VMCOMM_RANKS=a,b,…` instead of `VMCOMM_RANK` — and the host starts one `Worker` per rank
 * running the app, each with `VMCOMM_RANK` set in its own environment, so each worker's `init()`
 * joins the rendezvous as its own rank. TypeScript apps get ts-node in each worker through an
 * explicit `--import …/ts-register.js` in the worker's `execArgv` (workers do not reliably inherit
 * loaders; tsx does not work in workers).
 *
 * - **Output**: each worker's stdout and stderr are forwarded line by line (prefixed with `[rank] `
 *   under `--tag-output`); the rank hosted as 0 gets the host's stdin.
 * - **A worker ends**: the host tells the launcher which rank ended and how (over the IPC channel
 *   the launcher opens), so the launcher can tell the survivors at once and name the rank; an
 *   uncaught exception is printed first, as Node prints one for a process.
 * - **Exit status**: when every worker has ended, the host exits with the first non-zero worker exit
 *   code (in the order they ended), else 0. A signal to the host ends all of its ranks.
 *
 * ## In-process jobs ({@link runThreadRanks})
 *
 * `runThreadRanks(app, n)` runs a whole job of `n` thread-ranks inside the calling process, around
 * an embedded rendezvous, and resolves with their exit codes — `vmcomm run --threads -n N app` as a
 * function. After a rank fails (or aborts the job), the others get `killGraceMs` to end by
 * themselves before they are terminated.
 *
 * @example
 * ```ts
 * import { runThreadRanks } from 'vmcomm/dist/lib/launch/thread-host.js';
 * const codes = await runThreadRanks('examples/hello.ts', 4);
 * console.log(codes); // [ 0, 0, 0, 0 ] after four "hello from rank r of 4 … 0:threads 1:threads …" lines
 * ```
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isMainThread, Worker, type TransferListItem } from 'node:worker_threads';
import { VmcommError } from '../errors.js';
import { deriveJobId, ENV, jobEnvironment, parseRankList } from './environment.js';
import { processOutput, resolveApp, type LauncherOutput } from './launcher.js';
import { LineForwarder } from './line-forwarder.js';
import { RendezvousServer } from './rendezvous-server.js';
import { isTypeScriptApp, tsNodeSettings } from './typescript.js';
import { BIND_CPUS, BIND_PRELOAD } from './binding.js';

/** How one thread-rank ended. */
export interface RankExit {
  readonly rank: number;
  /** The worker's exit code (1 after an uncaught exception). */
  readonly code: number;
  /** Set when it ended with an uncaught exception: its message. */
  readonly error?: string;
}

/** What the host sends the launcher over IPC when a rank ends. */
export interface RankExitMessage extends RankExit {
  readonly type: 'vmcomm:rank-exit';
}

/** Options of {@link runThreadRanks}. */
export interface ThreadRanksOptions {
  /** The app's arguments. */
  readonly args?: readonly string[];
  /** The environment the ranks start from (default `process.env`). */
  readonly env?: NodeJS.ProcessEnv;
  /** `VMCOMM_BACKENDS` for the ranks. */
  readonly backends?: string;
  /** Type-check a TypeScript app (default: transpile only). */
  readonly typecheck?: boolean;
  /** Prefix every output line with `[rank] `. */
  readonly tagOutput?: boolean;
  /** After a failure: how long the other ranks get before they are terminated (ms). Default 5000. */
  readonly killGraceMs?: number;
  /** Where the ranks' output goes (default this process's stdout and stderr). */
  readonly output?: LauncherOutput;
  /**
   * What each rank's worker gets as `workerData` (`worker_threads`), with the objects to transfer
   * rather than copy (a `MessagePort` for that rank, say).
   */
  readonly workerData?: (rank: number) => { readonly value: unknown; readonly transferList?: readonly TransferListItem[] };
}

/** The preload that runs TypeScript in a worker. */
const TS_REGISTER = new URL('./ts-register.js', import.meta.url).href;
/** See {@link RendezvousServer}'s `lostGraceMs`. */
const LOST_GRACE_MS = 500;

/** A started thread-rank. */
interface RankWorker {
  readonly rank: number;
  readonly worker: Worker;
  /** Resolves when the worker has ended and its output is flushed. */
  readonly exited: Promise<RankExit>;
}

/** Starts the app as `rank` in a worker thread; see the module comment for output and exit. */
function startRankWorker(options: {
  readonly app: string;
  readonly args: readonly string[];
  readonly rank: number;
  readonly env: NodeJS.ProcessEnv;
  readonly output: LauncherOutput;
  readonly prefix: string;
  readonly stdin: boolean;
  readonly workerData?: { readonly value: unknown; readonly transferList?: readonly TransferListItem[] };
}): RankWorker {
  const { app, rank, output, prefix } = options;
  const execArgv = isTypeScriptApp(app) ? ['--import', TS_REGISTER] : [];
  // `--bind-to core`: each worker pins its own thread before the app runs.
  if (options.env[BIND_CPUS]) execArgv.unshift('--import', BIND_PRELOAD);
  const worker = new Worker(pathToFileURL(app), {
    argv: [...options.args],
    env: options.env,
    execArgv,
    stdout: true,
    stderr: true,
    stdin: options.stdin,
    ...(options.workerData === undefined ? {} : { workerData: options.workerData.value, transferList: [...(options.workerData.transferList ?? [])] }),
  });
  const out = new LineForwarder(output.stdout, prefix);
  const err = new LineForwarder(output.stderr, prefix);
  const ended = (stream: NodeJS.ReadableStream | null | undefined, forwarder: LineForwarder) =>
    new Promise<void>((resolve) => {
      if (stream === null || stream === undefined) return resolve();
      stream.on('data', (chunk: Buffer) => forwarder.push(chunk));
      stream.once('end', () => resolve());
      stream.once('close', () => resolve());
    }).then(() => forwarder.end());
  const drained = Promise.all([ended(worker.stdout, out), ended(worker.stderr, err)]);
  if (options.stdin && worker.stdin !== null) {
    const stdin = worker.stdin;
    stdin.on('error', () => undefined);
    process.stdin.pipe(stdin);
    worker.once('exit', () => process.stdin.unpipe(stdin));
  }
  let error: string | undefined;
  worker.on('error', (e: unknown) => {
    const text = e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : `Uncaught ${String(e)}`;
    error = e instanceof Error ? e.message : String(e);
    err.push(Buffer.from(`${text}\n`, 'utf8'));
  });
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve)).then(async (code) => {
    // Output written just before the end still arrives after 'exit'; don't wait forever for it.
    await Promise.race([drained, new Promise((r) => setTimeout(r, 2_000).unref())]);
    return error === undefined ? { rank, code } : { rank, code, error };
  });
  return { rank, worker, exited };
}

// ---------------------------------------------------------------------------------------------------
// The host process

/**
 * Runs the ranks of `VMCOMM_RANKS` as worker threads (see the module comment). `argv` is
 * `[--tag-output] [--] app [args…]`. Resolves with the host's exit status.
 */
export async function hostThreadRanks(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, output: LauncherOutput = processOutput()): Promise<number> {
  let i = 0;
  let tagOutput = false;
  for (; i < argv.length && argv[i].startsWith('-'); i++) {
    if (argv[i] === '--') {
      i++;
      break;
    }
    if (argv[i] === '--tag-output') tagOutput = true;
    else throw new VmcommError('INVALID_ARGUMENT', `thread-host: unknown option ${argv[i]} (usage: thread-host.js [--tag-output] [--] app [args…])`);
  }
  const [appArg, ...args] = argv.slice(i);
  if (appArg === undefined) throw new VmcommError('INVALID_ARGUMENT', 'thread-host: no app given (usage: thread-host.js [--tag-output] [--] app [args…])');
  const app = resolveApp(appArg);
  const size = Number(env[ENV.size]);
  if (!Number.isSafeInteger(size) || size < 1) throw new VmcommError('INVALID_ARGUMENT', `thread-host: ${ENV.size} must be the number of ranks in the job; got ${JSON.stringify(env[ENV.size])}`);
  const ranksText = env[ENV.ranks];
  if (ranksText === undefined || ranksText === '') throw new VmcommError('INVALID_ARGUMENT', `thread-host: ${ENV.ranks} must list the ranks this process hosts (e.g. 0,1)`);
  const ranks = parseRankList(ranksText, size);
  const workers = ranks.map((rank) =>
    startRankWorker({
      app,
      args,
      rank,
      env: { ...env, [ENV.rank]: String(rank) },
      output,
      prefix: tagOutput ? `[${rank}] ` : '',
      stdin: rank === 0,
    }),
  );
  let status: number | undefined;
  await Promise.all(
    workers.map((w) =>
      w.exited.then((exit) => {
        if (exit.code !== 0) status ??= exit.code;
        if (typeof process.send === 'function' && process.connected) {
          const message: RankExitMessage = { type: 'vmcomm:rank-exit', ...exit };
          process.send(message);
        }
      }),
    ),
  );
  return status ?? 0;
}

/** Sends what is queued on the IPC channel, then disconnects it. */
function closeIpc(): Promise<void> {
  if (typeof process.send !== 'function' || !process.connected) return Promise.resolve();
  return new Promise((resolve) => {
    // An empty send whose callback runs once everything before it was written.
    process.send!({ type: 'vmcomm:host-done' }, undefined, {}, () => {
      process.disconnect();
      resolve();
    });
  });
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!isMainThread || entry === undefined || entry === '') return false;
  try {
    return realpathSync(path.resolve(entry)) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  hostThreadRanks(process.argv.slice(2)).then(
    async (status) => {
      await closeIpc();
      process.exit(status);
    },
    async (error: unknown) => {
      process.stderr.write(`vmcomm thread-host: ${error instanceof Error ? error.message : String(error)}\n`);
      await closeIpc();
      process.exit(1);
    },
  );
}

// ---------------------------------------------------------------------------------------------------
// In-process jobs

/**
 * Runs a job of `n` thread-ranks of `app` in this process (see the module comment) and resolves with
 * their exit codes, indexed by rank. Rejects only when the job cannot start (no such app, `n` not a
 * positive integer: `INVALID_ARGUMENT`; the rendezvous cannot listen).
 */
export async function runThreadRanks(app: string | URL, n: number, options: ThreadRanksOptions = {}): Promise<number[]> {
  if (!Number.isSafeInteger(n) || n < 1) throw new VmcommError('INVALID_ARGUMENT', `runThreadRanks: n must be a positive integer, got ${String(n)}`);
  let file: string;
  try {
    file = resolveApp(typeof app === 'string' ? app : fileURLToPath(app));
  } catch (error) {
    throw new VmcommError('INVALID_ARGUMENT', `runThreadRanks: ${(error as Error).message}`);
  }
  const output = options.output ?? processOutput();
  const killGraceMs = options.killGraceMs ?? 5_000;
  const secret = randomBytes(32);
  const server = new RendezvousServer({ size: n, jobId: deriveJobId(secret), secret, lostGraceMs: LOST_GRACE_MS });
  const address = await server.listen({ host: '127.0.0.1', port: 0 });
  const base: NodeJS.ProcessEnv = { ...(options.env ?? process.env) };
  if (isTypeScriptApp(file)) Object.assign(base, tsNodeSettings(file, base, options.typecheck ? { typecheck: true } : {}).env);
  const all = Array.from({ length: n }, (_, rank) => rank);

  let failing = false;
  let killTimer: NodeJS.Timeout | undefined;
  const workers: RankWorker[] = [];
  const fail = (): void => {
    if (failing) return;
    failing = true;
    killTimer = setTimeout(() => {
      for (const w of workers) void w.worker.terminate();
    }, killGraceMs);
    killTimer.unref();
  };
  server.on('abort', fail);
  try {
    for (const rank of all) {
      const env = {
        ...base,
        ...jobEnvironment({
          rendezvous: address,
          rank,
          size: n,
          secret,
          jobId: server.jobId,
          ...(options.backends === undefined ? {} : { backends: options.backends }),
        }),
        [ENV.ranks]: all.join(','),
      };
      const workerData = options.workerData?.(rank);
      workers.push(
        startRankWorker({ app: file, args: options.args ?? [], rank, env, output, prefix: options.tagOutput ? `[${rank}] ` : '', stdin: false, ...(workerData === undefined ? {} : { workerData }) }),
      );
    }
    const exits = await Promise.all(
      workers.map((w) =>
        w.exited.then((exit) => {
          const state = server.stateOf(exit.rank);
          if (state !== 'finalized') {
            // Tell the survivors now; a rank that never joined and exited 0 is not a failure by itself.
            server.markLost(exit.rank, `rank ${exit.rank} (a thread of this process) ${exit.error === undefined ? `exited with code ${exit.code}` : `threw ${exit.error}`} before finalize`);
            if (exit.code !== 0 || state !== 'waiting') fail();
          }
          return exit.code;
        }),
      ),
    );
    return exits;
  } finally {
    clearTimeout(killTimer);
    await server.close();
  }
}
