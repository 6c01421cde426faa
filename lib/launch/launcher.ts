/**
 * `vmcomm run`: starts N rank processes on this host around an embedded rendezvous, forwards their
 * output, and ends the job as a unit.
 *
 * With `--threads` (all N ranks in one process) or `--threads-per-process K` (⌈N/K⌉ processes of up
 * to K ranks), ranks are worker threads: each process is a *thread host* (`thread-host.ts`) that
 * starts one worker per rank and reports over an IPC channel when each of them ends, so everything
 * below holds per rank, whether the rank is a process or a thread (a signal to a host ends all of
 * its ranks).
 *
 * ## How a job ends
 *
 * - **Normally**: every rank exits. A rank that exited after `finalize()` ended normally whatever its
 *   exit code (a non-zero code still becomes the job's status).
 * - **A rank ends before it finalized** (any exit code, or a signal): the survivors are told first
 *   (`peer-lost` through the rendezvous, so nothing waits for the dead rank), then one line on stderr
 *   names the rank, its pid and how it ended. The job is now failing: after `--kill-grace` seconds the
 *   ranks still running get SIGTERM, and after as long again SIGKILL.
 *   One exception: a rank that exits with code 0 without ever joining the rendezvous did not use
 *   vmcomm at all (a plain script under `vmcomm run`); the others are told, but it is not a failure by
 *   itself — unless other ranks did join, which is reported when the job ends.
 * - **A rank calls `abort(code)`**: the rendezvous fans it out; the launcher reports it and ends the
 *   ranks that do not exit by themselves as above. The job's status is the abort code.
 * - **The launcher gets SIGINT, SIGTERM or SIGHUP**: SIGTERM to every rank at once, SIGKILL after the
 *   grace period (at once on a second signal); status 128 + the signal number.
 *
 * ## Shared-memory files
 *
 * The shm transport removes its `/dev/shm` files at `finalize()`; a rank that died cannot. So when a
 * rank ends before it finalized, the launcher removes that rank's files whose lock can be taken
 * (`shm-files.ts`: the kernel dropped the dead rank's locks), and when the job ends, every such file
 * of the job. Before starting, it removes stale files of other jobs that are older than a minute.
 *
 * No path leaves a rank running: an `exit` hook SIGKILLs any rank still alive if the launcher itself
 * fails. (If the launcher is SIGKILLed, the ranks see their rendezvous connection break and their
 * `init()` ends them: see `rendezvous-client.ts`.)
 *
 * ## Exit status
 *
 * 128 + signal number if the launcher was signalled; else the abort code (0…255; anything else → 1);
 * else the first non-zero status of a rank that ended by itself (a signal counts as 128 + its
 * number), in the order they ended — ranks the launcher had to kill do not count; else 1 if the job
 * failed; else 0.
 *
 * @module
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { allowedCpus, BIND_CPUS, BIND_PRELOAD } from './binding.js';
import { deriveJobId, jobEnvironment } from './environment.js';
import { LineForwarder, type LineSink } from './line-forwarder.js';
import { RendezvousServer, type RendezvousServerOptions } from './rendezvous-server.js';
import { OTHER_JOBS_MIN_AGE_MS, shmJobPrefix, shmRankPrefix, sweepStaleShmFiles } from './shm-files.js';
import { isTypeScriptApp, moduleKindOf, tsNodeSettings } from './typescript.js';

/** What `vmcomm run` was asked to do. */
export interface RunOptions {
  /** Ranks to start. */
  readonly size: number;
  /** The program (`.js`, `.mjs`, `.cjs`, or TypeScript: `.ts`, `.mts`, `.cts`, `.tsx`). */
  readonly app: string;
  /** Its arguments. */
  readonly args: readonly string[];
  /** Prefix every output line with `[rank] `. */
  readonly tagOutput: boolean;
  /** After a failure: how long ranks get before SIGTERM, and again before SIGKILL (ms). */
  readonly killGraceMs: number;
  /** `VMCOMM_BACKENDS` for the ranks (validated by the core). */
  readonly backends?: string;
  /** Type-check TypeScript apps (default: transpile only). */
  readonly typecheck: boolean;
  /**
   * Run ranks as worker threads, this many per process (`--threads` = all of them in one,
   * `--threads-per-process K`); absent: one process per rank.
   */
  readonly threadsPerProcess?: number;
  /** `'core'`: pin each rank to a CPU of its own when there are enough (`--bind-to core`). Default `'none'`. */
  readonly bindTo?: 'core' | 'none';
}

/** Where the launcher writes. Whole lines only (see {@link LineSink}). */
export interface LauncherOutput {
  readonly stdout: LineSink;
  readonly stderr: LineSink;
}

/** The launcher's own messages start with this. */
const TAG = 'vmcomm run';
/** See {@link RendezvousServerOptions.lostGraceMs}. */
const LOST_GRACE_MS = 500;
/** The process a thread host runs. */
const THREAD_HOST = fileURLToPath(new URL('./thread-host.js', import.meta.url));

/** After the last rank exited, how long its output pipes may stay open (a grandchild holding them). */
const OUTPUT_DRAIN_MS = 2_000;

/** One started process: a rank, or a thread host with its thread-ranks. */
interface RankProcess {
  /** The ranks it runs (one, unless it is a thread host). */
  readonly ranks: readonly number[];
  /** A thread host: its ranks are threads, and it reports each one's end itself. */
  readonly host: boolean;
  /** Ranks whose end was already handled (a host's report, or the process's exit). */
  readonly ended: Set<number>;
  readonly child: ChildProcess;
  readonly pid: number | undefined;
  readonly stdout: LineForwarder;
  readonly stderr: LineForwarder;
  exited: boolean;
  /** The launcher sent it a signal: its end is not its own failure. */
  signalled: boolean;
  /** Resolves when its output pipes closed. */
  readonly drained: Promise<void>;
}

/**
 * Runs a job to its end; resolves with the launcher's exit status (see the module documentation).
 * Never rejects for anything the ranks do; rejects only when the job cannot start at all (the
 * rendezvous cannot listen), and then no rank was started.
 */
export async function runJob(options: RunOptions, output: LauncherOutput = processOutput()): Promise<number> {
  return new Job(options, output).run();
}

/** The app, resolved and checked; throws a one-line message when it cannot be run. */
export function resolveApp(app: string): string {
  const resolved = path.resolve(app);
  if (!existsSync(resolved)) throw new Error(`cannot find ${app} (looked for ${resolved})`);
  if (!statSync(resolved).isFile()) throw new Error(`${app} is not a file`);
  return resolved;
}

class Job {
  private readonly options: RunOptions;
  private readonly out: LauncherOutput;
  private readonly server: RendezvousServer;
  private readonly secret = randomBytes(32);
  private readonly ranks: RankProcess[] = [];

  private failing = false;
  private failureTimers: NodeJS.Timeout[] = [];
  private abortStatus: number | undefined;
  private signalStatus: number | undefined;
  private firstOwnFailureStatus: number | undefined;
  private joinedAny = false;
  private readonly exitedWithoutJoining: number[] = [];
  /** Removals of dead ranks' shm files under way (awaited before the job's own final sweep). */
  private readonly sweeps: Promise<unknown>[] = [];
  private remaining = 0;
  private done!: () => void;
  private readonly finished = new Promise<void>((resolve) => {
    this.done = resolve;
  });

  private readonly onSignal = (signal: NodeJS.Signals): void => this.signalled(signal);
  private readonly onProcessExit = (): void => {
    // Last resort when the launcher itself dies of an error: no orphans.
    for (const r of this.ranks) if (!r.exited) r.child.kill('SIGKILL');
  };

  constructor(options: RunOptions, out: LauncherOutput) {
    this.options = options;
    this.out = out;
    this.server = new RendezvousServer({
      size: options.size,
      jobId: deriveJobId(this.secret),
      secret: this.secret,
      // The launcher sees a rank's process end at about the time its socket closes, and can tell the
      // survivors how it ended; this bounds the wait when the process lives on without its socket.
      lostGraceMs: LOST_GRACE_MS,
    });
  }

  async run(): Promise<number> {
    const { options } = this;
    const app = resolveApp(options.app);
    const address = await this.server.listen({ host: '127.0.0.1', port: 0 });
    this.watchServer();

    const execArgv: string[] = [];
    let tsEnv: { [name: string]: string } = {};
    if (isTypeScriptApp(app)) {
      // Explicit, not inherited: children do not reliably inherit a parent's loaders.
      execArgv.push('--import', new URL('./ts-register.js', import.meta.url).href);
      const settings = tsNodeSettings(app, process.env, options.typecheck ? { typecheck: true } : {});
      tsEnv = settings.env;
      if (settings.commonJs) {
        const { packageJson } = moduleKindOf(app);
        const why = packageJson === undefined ? 'there is no package.json above it' : `${packageJson} has no "type": "module"`;
        this.say(
          `note: ${path.basename(app)} runs as CommonJS (${why}); \`import … from 'vmcomm'\` and top-level await ` +
            `need ESM: add "type": "module" to package.json or rename the app to .mts`,
        );
      }
    }

    const bindEnv = this.bindingEnvironment();
    // First, so the rank is pinned before anything else of it runs.
    if (bindEnv[BIND_CPUS] !== undefined) execArgv.unshift('--import', BIND_PRELOAD);

    await sweepStaleShmFiles({ minAgeMs: OTHER_JOBS_MIN_AGE_MS });
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    process.on('SIGHUP', this.onSignal);
    process.on('exit', this.onProcessExit);
    try {
      for (const ranks of processGroups(options.size, options.threadsPerProcess)) {
        const host = options.threadsPerProcess !== undefined;
        const env = {
          // A launcher started from a bound rank inherits VMCOMM_BIND_CPUS: its own ranks are bound
          // only if it binds them (its own list then), else hostCores() would count a list they do not have.
          ...withoutVariable(process.env, BIND_CPUS),
          ...tsEnv,
          ...bindEnv,
          ...jobEnvironment({
            rendezvous: address,
            rank: ranks[0],
            ...(host ? { ranks } : {}),
            size: options.size,
            secret: this.secret,
            jobId: this.server.jobId,
            ...(options.backends === undefined ? {} : { backends: options.backends }),
          }),
        };
        // A thread host is plain JavaScript; it gives each worker the TypeScript preload itself.
        const args = host ? [THREAD_HOST, ...(options.tagOutput ? ['--tag-output'] : []), '--', app, ...options.args] : [...execArgv, app, ...options.args];
        this.start(ranks, host, args, env);
      }
      if (this.remaining > 0) await this.finished;
      // Every rank is gone: whatever shm file of this job is still there, nobody holds.
      await Promise.all(this.sweeps);
      await sweepStaleShmFiles({ prefix: shmJobPrefix(this.server.jobId) });
      await Promise.race([Promise.all(this.ranks.map((r) => r.drained)), delay(OUTPUT_DRAIN_MS)]);
      for (const r of this.ranks) {
        r.child.stdout?.destroy();
        r.child.stderr?.destroy();
        r.stdout.end();
        r.stderr.end();
      }
    } finally {
      for (const timer of this.failureTimers) clearTimeout(timer);
      process.off('SIGINT', this.onSignal);
      process.off('SIGTERM', this.onSignal);
      process.off('SIGHUP', this.onSignal);
      this.onProcessExit();
      process.off('exit', this.onProcessExit);
      await this.server.close();
    }
    return this.status();
  }

  /**
   * `--bind-to core`: the variable that makes each rank pin itself (see backends/native/bind-to-core.ts),
   * or nothing, with a note, when there are more ranks than CPUs this launcher may use (binding two
   * ranks to one core would only make them take turns; the kernel does better unbound).
   */
  private bindingEnvironment(): { [name: string]: string } {
    if (this.options.bindTo !== 'core') return {};
    const cpus = allowedCpus();
    if (this.options.size > cpus.length) {
      this.say(`note: --bind-to core: ${this.options.size} ranks on ${cpus.length} CPUs; the ranks run unbound`);
      return {};
    }
    return { [BIND_CPUS]: cpus.join(',') };
  }

  private start(ranks: readonly number[], host: boolean, args: string[], env: NodeJS.ProcessEnv): void {
    // Rank 0 reads the launcher's stdin (as with mpirun); the others get none. A thread host tags its
    // ranks' lines itself, and tells us over IPC when each of its ranks ends.
    const stdin = ranks.includes(0) ? 'inherit' : 'ignore';
    const child = spawn(process.execPath, args, { env, stdio: host ? [stdin, 'pipe', 'pipe', 'ipc'] : [stdin, 'pipe', 'pipe'] });
    const prefix = this.options.tagOutput && !host ? `[${ranks[0]}] ` : '';
    const r: RankProcess = {
      ranks,
      host,
      ended: new Set(),
      child,
      pid: child.pid,
      stdout: new LineForwarder(this.out.stdout, prefix),
      stderr: new LineForwarder(this.out.stderr, prefix),
      exited: false,
      signalled: false,
      drained: new Promise<void>((resolve) => child.once('close', () => resolve())),
    };
    this.ranks.push(r);
    this.remaining += 1;
    child.stdout?.on('data', (chunk: Buffer) => r.stdout.push(chunk));
    child.stdout?.on('end', () => r.stdout.end());
    child.stderr?.on('data', (chunk: Buffer) => r.stderr.push(chunk));
    child.stderr?.on('end', () => r.stderr.end());
    child.once('exit', (code, signal) => {
      // A host's last reports may still be in the IPC pipe: read them (up to its end) first.
      if (host && child.connected) child.once('disconnect', () => this.ended(r, code, signal));
      else this.ended(r, code, signal);
    });
    if (host) child.on('message', (message) => this.reported(r, message));
    child.once('error', (error) => {
      // Spawning failed ('exit' will not come); any other error is followed by 'exit'.
      if (child.pid === undefined) {
        this.say(`could not start ${ranks.length === 1 ? 'rank' : 'ranks'} ${ranks.join(', ')}: ${error.message}`);
        this.ended(r, 127, null, true);
      }
    });
  }

  /** A thread host says one of its ranks ended. */
  private reported(r: RankProcess, message: unknown): void {
    const m = message as { type?: unknown; rank?: unknown; code?: unknown };
    if (m?.type !== 'vmcomm:rank-exit' || typeof m.rank !== 'number' || !r.ranks.includes(m.rank) || !Number.isInteger(m.code)) return;
    this.rankEnded(r, m.rank, m.code as number, null);
  }

  /** A process ended: so did each of its ranks not reported yet. */
  private ended(r: RankProcess, code: number | null, signal: NodeJS.Signals | null, quiet = false): void {
    if (r.exited) return;
    r.exited = true;
    this.remaining -= 1;
    for (const rank of r.ranks) this.rankEnded(r, rank, code, signal, quiet);
    if (this.remaining === 0) this.done();
  }

  private rankEnded(r: RankProcess, rank: number, code: number | null, signal: NodeJS.Signals | null, quiet = false): void {
    if (r.ended.has(rank)) return;
    r.ended.add(rank);
    const status = signal !== null ? 128 + (osConstants.signals[signal] ?? 0) : (code ?? 1);
    const how = signal !== null ? `was killed by ${signal}` : `exited with code ${String(code)}`;
    const who = r.host ? `rank ${rank} (a thread of pid ${r.pid ?? '?'})` : `rank ${rank} (pid ${r.pid ?? '?'})`;
    const state = this.server.stateOf(rank);
    if (!r.signalled && status !== 0) this.firstOwnFailureStatus ??= status;

    if (state === 'finalized') {
      if (status !== 0) this.say(`${who} ${how} after finalize`);
    } else if (status === 0 && state === 'waiting') {
      // Never joined: not a vmcomm program, or it ended before init(). Tell anyone waiting for it.
      this.server.markLost(rank, `${who} exited with code 0 without joining the job (it never called init())`);
      this.exitedWithoutJoining.push(rank);
    } else {
      // Survivors first: nothing must wait for this rank while the launcher talks.
      this.server.markLost(rank, `${who} ${how} before finalize`);
      // Its shm files: it cannot remove them, and its locks died with it.
      this.sweeps.push(sweepStaleShmFiles({ prefix: shmRankPrefix(this.server.jobId, rank) }));
      const expected = r.signalled || this.abortStatus !== undefined || this.signalStatus !== undefined;
      if (!expected && !quiet) this.say(`${who} ${how} before finalize`);
      this.fail();
    }
  }

  private watchServer(): void {
    this.server.on('joined', () => {
      this.joinedAny = true;
    });
    this.server.on('abort', (code, fromRank, reason) => {
      this.abortStatus = Number.isInteger(code) && code >= 0 && code <= 255 ? code : 1;
      const by = fromRank === -1 ? 'the launcher' : `rank ${fromRank}`;
      this.say(`${by} aborted the job with code ${code}${reason === '' ? '' : `: ${reason}`}`);
      this.fail();
    });
  }

  /** The job is failing: ranks get the grace period, then SIGTERM, then SIGKILL. */
  private fail(): void {
    if (this.failing) return;
    this.failing = true;
    if (this.remaining === 0) return;
    const grace = this.options.killGraceMs;
    this.failureTimers.push(
      setTimeout(() => {
        this.terminate('SIGTERM', `${grace / 1000} s after the failure`);
        this.failureTimers.push(setTimeout(() => this.terminate('SIGKILL', `${grace / 1000} s after SIGTERM`), grace));
      }, grace),
    );
  }

  private signalled(signal: NodeJS.Signals): void {
    if (this.signalStatus !== undefined) {
      this.terminate('SIGKILL', `on a second signal (${signal})`);
      return;
    }
    this.signalStatus = 128 + (osConstants.signals[signal] ?? 0);
    this.failing = true;
    if (this.remaining === 0) return;
    this.terminate('SIGTERM', `on ${signal}`);
    const grace = this.options.killGraceMs;
    this.failureTimers.push(setTimeout(() => this.terminate('SIGKILL', `${grace / 1000} s after SIGTERM`), grace));
  }

  private terminate(signal: 'SIGTERM' | 'SIGKILL', when: string): void {
    const running = this.ranks.filter((r) => !r.exited);
    if (running.length === 0) return;
    const ranks = running.flatMap((r) => r.ranks.filter((rank) => !r.ended.has(rank)));
    const whom = running.some((r) => r.host) ? ` (${running.length === 1 ? 'the process' : 'the processes'} hosting them)` : '';
    this.say(`sending ${signal} to ${ranks.length === 1 ? 'rank' : 'ranks'} ${ranks.join(', ')}${whom} ${when}`);
    for (const r of running) {
      r.signalled = true;
      r.child.kill(signal);
    }
  }

  private status(): number {
    if (this.signalStatus !== undefined) return this.signalStatus;
    if (this.abortStatus !== undefined) return this.abortStatus;
    let failed = this.failing;
    if (this.joinedAny && this.exitedWithoutJoining.length > 0) {
      const list = this.exitedWithoutJoining.sort((a, b) => a - b).join(', ');
      this.say(`${this.exitedWithoutJoining.length === 1 ? 'rank' : 'ranks'} ${list} exited without joining the job (no init()) while other ranks did`);
      failed = true;
    }
    if (this.firstOwnFailureStatus !== undefined) return this.firstOwnFailureStatus;
    return failed ? 1 : 0;
  }

  private say(message: string): void {
    this.out.stderr.write(Buffer.from(`${TAG}: ${message}\n`, 'utf8'));
  }
}

/** The launcher's stdout/stderr as {@link LineSink}s that survive a closed pipe (`| head`). */
export function processOutput(): LauncherOutput {
  return { stdout: sinkOf(process.stdout), stderr: sinkOf(process.stderr) };
}

function sinkOf(stream: NodeJS.WriteStream): LineSink {
  let broken = false;
  // EPIPE when the reader went away: stop writing, keep running the job.
  stream.on('error', () => {
    broken = true;
  });
  return {
    write: (data) => {
      if (!broken) stream.write(data);
    },
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

/** The ranks of each process: one each, or consecutive groups of `threadsPerProcess`. */
export function processGroups(size: number, threadsPerProcess: number | undefined): number[][] {
  const per = threadsPerProcess ?? 1;
  const groups: number[][] = [];
  for (let first = 0; first < size; first += per) groups.push(Array.from({ length: Math.min(per, size - first) }, (_, i) => first + i));
  return groups;
}

/** `env` without `name`. */
function withoutVariable(env: NodeJS.ProcessEnv, name: string): NodeJS.ProcessEnv {
  const { [name]: _dropped, ...rest } = env;
  return rest;
}
