/**
 * `vmcomm bench`: the OSU-style suite over every vmcomm transport that can run here, beside the
 * baselines a Node program has without vmcomm, measured in the same run with the same patterns.
 *
 * One job per backend, each a child process of this command, so a job that hangs can be ended
 * (`--timeout`) without taking the command down: `shm`, `ivshmem` and `tcp` run as `vmcomm run -n N
 * bench/osu.ts` (rank processes), with `VMCOMM_BACKENDS` naming the backend (and `tcp`, so that a
 * backend that cannot run here still lets the job start and say why); `threads` runs as
 * `bench/osu.ts --thread-ranks N`, which hosts its thread-ranks itself (`runThreadRanks`) so that it
 * can hand each worker the baselines' shared ring and `MessagePort`. `ivshmem` gets a temporary
 * region file in /dev/shm, removed afterwards. The bare Node TCP baseline runs in the `tcp` job, the
 * shared-ring and `MessagePort` baselines in the `threads` job, each interleaved round by round with
 * the backend it is compared with. Rank 0 of each job reports what it measured as event lines
 * (`bench-protocol.ts`); this command draws the progress bar (on a terminal), prints the tables
 * (`bench-report.ts`), and writes `--json` and `--svg` (`bench-plot.ts`).
 *
 * @module
 */

import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BASELINE_OF,
  BENCH_BACKENDS,
  BENCH_BASELINES,
  BENCH_EVENT_PREFIX,
  BENCH_PATTERNS,
  DEFAULT_BENCH_SIZES,
  QUICK_BENCH_SIZES,
  formatBytes,
  parseSizes,
  type BenchBackend,
  type BenchBaseline,
  type BenchEvent,
  type BenchPattern,
  type BenchPlan,
  type BenchResult,
} from './bench-protocol.js';
import { machineInfo, renderDetail, renderHeader, renderMarkdown, renderRatios, renderTables, type BenchDocument, type BenchJobReport } from './bench-report.js';
import { UsageError, positiveInteger, seconds, type OptionSpec, type ParsedArgs } from './args.js';
import type { Command } from './cli.js';
import { processOutput, type LauncherOutput } from './launcher.js';
import { LineForwarder, type LineSink } from './line-forwarder.js';

/** What `vmcomm bench` was asked to do. */
export interface BenchOptions {
  readonly backends: readonly BenchBackend[];
  readonly baselines: readonly BenchBaseline[];
  readonly patterns: readonly BenchPattern[];
  readonly sizes: readonly number[];
  /** Ranks per job (2 unless `-n`). Baselines need exactly 2. */
  readonly ranks: number;
  readonly rounds: number;
  readonly warmupMs: number;
  readonly roundMs: number;
  readonly bindTo: 'core' | 'none';
  readonly quick: boolean;
  /** Also print OSU's per-implementation tables (typical, mean, worst and best round, iterations). */
  readonly detail: boolean;
  readonly jsonFile?: string;
  readonly svgFile?: string;
  /** A Markdown summary (a table at a few sizes, the ratios to the baselines), for a README. */
  readonly markdownFile?: string;
  /** After a rank fails: how long the others get (ms). */
  readonly killGraceMs: number;
  /** A job still running after this long (ms) is ended and counts as failed. */
  readonly jobTimeoutMs: number;
}

/** Defaults of a full run and of `--quick`. */
export const BENCH_DEFAULTS = {
  full: { sizes: DEFAULT_BENCH_SIZES, rounds: 5, warmupMs: 500, roundMs: 40, jobTimeoutMs: 30 * 60_000 },
  quick: { sizes: QUICK_BENCH_SIZES, rounds: 3, warmupMs: 100, roundMs: 8, jobTimeoutMs: 120_000 },
} as const;

/** Size of the temporary ivshmem region (a power of two, as QEMU requires of real ones). */
const IVSHMEM_REGION_BYTES = 64 * 1024 * 1024;
/** Signals that end a run. */
const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
/** Lines of a failed job's stderr kept for the report. */
const STDERR_TAIL = 8;

/** The `vmcomm` command (a process job is started as `vmcomm run`). */
const VMCOMM_BIN = fileURLToPath(new URL('../../../bin/vmcomm.js', import.meta.url));
/** The TypeScript preload, for the thread-ranks' host (`bench/osu.ts --thread-ranks N`). */
const TS_REGISTER = new URL('./ts-register.js', import.meta.url).href;

/** The rank program, in the package's sources (next to `dist/`). */
export function benchProgram(): string {
  return fileURLToPath(new URL('../../../bench/osu.ts', import.meta.url));
}

function packageVersion(): string {
  try {
    return String((JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown }).version);
  } catch {
    return 'unknown';
  }
}

/** One job to run. */
interface JobSpec {
  readonly report: BenchJobReport;
  readonly threads: boolean;
}

/** The jobs for `options`, in order: threads, shm, ivshmem, tcp (and a baselines-only job when needed). */
export function planJobs(options: Pick<BenchOptions, 'backends' | 'baselines' | 'ranks'>): { jobs: JobSpec[]; notes: string[] } {
  const notes: string[] = [];
  let baselines = [...options.baselines];
  if (options.ranks !== 2 && baselines.length > 0) {
    notes.push(`baselines run between two ranks only; with -n ${options.ranks} they are not measured`);
    baselines = [];
  }
  const jobs: JobSpec[] = [];
  const make = (backend: BenchBackend | undefined, own: BenchBaseline[], threads: boolean): JobSpec => ({
    threads,
    report: { label: backend ?? 'baselines', backend, baselines: own, skipped: [], notes: [] },
  });
  const inThreads = baselines.filter((b) => b !== 'node-tcp');
  const inTcp = baselines.filter((b) => b === 'node-tcp');
  for (const backend of BENCH_BACKENDS) {
    const own = backend === 'threads' ? inThreads : backend === 'tcp' ? inTcp : [];
    if (options.backends.includes(backend)) jobs.push(make(backend, own, backend === 'threads'));
    else if (own.length > 0) jobs.push(make(undefined, own, backend === 'threads'));
  }
  return { jobs, notes };
}

/** Runs the suite; resolves with the exit status (0, or 1 when a job failed or a file could not be written). */
export async function runBench(options: BenchOptions, out: LauncherOutput): Promise<number> {
  const app = benchProgram();
  const write = (sink: LineSink, text: string) => sink.write(Buffer.from(text.endsWith('\n') ? text : `${text}\n`, 'utf8'));
  if (!existsSync(app)) {
    write(out.stderr, `vmcomm bench: the benchmark program ${app} is missing (it ships with vmcomm's sources, next to dist/)`);
    return 1;
  }
  const { jobs, notes } = planJobs(options);
  const progress = new ProgressBar(process.stderr.isTTY === true && process.env.CI !== 'true', process.stderr);
  const say = (text: string) => {
    progress.clear();
    write(out.stderr, text);
  };
  for (const n of notes) say(`vmcomm bench: ${n}`);

  const machine = machineInfo(detectHypervisor());
  const results: BenchResult[] = [];
  let failed = false;
  // A signal ends the run after the current job, which is told to end (its launcher ends its ranks).
  let interrupted: NodeJS.Signals | undefined;
  let current: ChildProcess | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted ??= signal;
    current?.kill('SIGTERM');
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);
  try {
    for (let j = 0; j < jobs.length && interrupted === undefined; j++) {
      const { report, threads } = jobs[j];
      const plan: BenchPlan = {
        backend: report.backend,
        baselines: report.baselines,
        patterns: options.patterns,
        sizes: options.sizes,
        rounds: options.rounds,
        warmupMs: options.warmupMs,
        roundMs: options.roundMs,
        bindTo: options.bindTo,
      };
      progress.job(j, jobs.length, report.label);
      const stderrTail: string[] = [];
      const events = new EventLines((e) => {
        switch (e.type) {
          case 'start':
            report.start = e;
            break;
          case 'skip':
            report.skipped.push({ impl: e.impl, reason: e.reason });
            say(`vmcomm bench: ${e.impl} skipped: ${e.reason}`);
            break;
          case 'note':
            report.notes.push(e.text);
            break;
          case 'progress':
            progress.update(e.total === 0 ? 1 : e.done / e.total, e.what);
            break;
          case 'result':
            results.push(e.result);
            break;
        }
      }, (line) => say(line));
      const onStderr = (line: string) => {
        stderrTail.push(line);
        if (stderrTail.length > STDERR_TAIL) stderrTail.shift();
        say(line);
      };
      const env: NodeJS.ProcessEnv = { ...process.env };
      // The backend, and tcp so that a backend that cannot run here still lets the job start and say why.
      if (report.backend !== undefined) env.VMCOMM_BACKENDS = report.backend === 'tcp' ? 'tcp' : `${report.backend},tcp`;
      const planArgs = ['--plan', JSON.stringify(plan)];
      let removeRegion: (() => void) | undefined;
      const started = performance.now();
      try {
        if (report.backend === 'ivshmem') {
          const region = await temporaryRegion();
          if ('reason' in region) {
            report.skipped.push({ impl: 'ivshmem', reason: region.reason });
            say(`vmcomm bench: ivshmem skipped: ${region.reason}`);
            continue;
          }
          removeRegion = region.remove;
          env.VMCOMM_IVSHMEM = region.file;
        }
        // Thread-ranks: bench/osu.ts hosts them itself (only the parent can hand each worker the
        // baselines' ring and port); processes: `vmcomm run`, as a user would start them.
        const argv = threads
          ? ['--import', TS_REGISTER, app, '--thread-ranks', String(options.ranks), ...planArgs]
          : [VMCOMM_BIN, 'run', '-n', String(options.ranks), '--kill-grace', String(options.killGraceMs / 1000), app, ...planArgs];
        const child = spawn(process.execPath, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
        current = child;
        const outcome = await watchJob(child, events, onStderr, options.jobTimeoutMs, options.killGraceMs);
        if (outcome.timedOut) onStderr(`vmcomm bench: the ${report.label} job did not finish within ${options.jobTimeoutMs / 1000} s; it was ended`);
        if (outcome.status !== 0 && interrupted === undefined) {
          failed = true;
          report.failure = { status: outcome.status, stderr: [...stderrTail] };
          say(`vmcomm bench: the ${report.label} job failed (exit ${outcome.status})`);
        }
      } finally {
        current = undefined;
        removeRegion?.();
        report.seconds = Math.round(performance.now() - started) / 1000;
      }
    }
  } finally {
    for (const signal of SIGNALS) process.off(signal, onSignal);
  }
  progress.done();
  if (interrupted !== undefined) write(out.stderr, `vmcomm bench: interrupted by ${interrupted}; the results so far:`);

  const doc: BenchDocument = {
    tool: 'vmcomm bench',
    version: packageVersion(),
    date: new Date().toISOString(),
    machine,
    settings: {
      ranks: options.ranks,
      patterns: options.patterns,
      sizes: options.sizes,
      rounds: options.rounds,
      warmupMs: options.warmupMs,
      roundMs: options.roundMs,
      window: 64,
      bindTo: options.bindTo,
      quick: options.quick,
    },
    jobs: jobs.map((j) => j.report),
    results,
  };
  const parts = [renderHeader(doc), renderTables(results), renderRatios(results), options.detail ? renderDetail(results) : ''];
  const text = parts.map((p) => p.trim()).filter((p) => p !== '').join('\n\n');
  write(out.stdout, text.trimEnd());

  let status = interrupted !== undefined ? 128 + (osConstants.signals[interrupted] ?? 0) : failed ? 1 : 0;
  if (options.jsonFile !== undefined) {
    try {
      writeFileSync(options.jsonFile, JSON.stringify(doc, null, 2) + '\n');
      write(out.stderr, `vmcomm bench: wrote ${options.jsonFile}`);
    } catch (error) {
      write(out.stderr, `vmcomm bench: cannot write ${options.jsonFile}: ${(error as Error).message}`);
      status = 1;
    }
  }
  if (options.markdownFile !== undefined) {
    try {
      writeFileSync(options.markdownFile, renderMarkdown(doc));
      write(out.stderr, `vmcomm bench: wrote ${options.markdownFile}`);
    } catch (error) {
      write(out.stderr, `vmcomm bench: cannot write ${options.markdownFile}: ${(error as Error).message}`);
      status = 1;
    }
  }
  if (options.svgFile !== undefined) {
    try {
      const { renderBenchSvg } = await import('./bench-plot.js');
      const m = doc.machine;
      const title = `vmcomm ${doc.version}, ${options.ranks} ranks — ${m.cpus} CPUs${m.hypervisor === undefined ? '' : ` (${m.hypervisor} VM)`}, Node ${m.node}${options.quick ? ' — quick run' : ''}`;
      writeFileSync(options.svgFile, await renderBenchSvg(results, title));
      write(out.stderr, `vmcomm bench: wrote ${options.svgFile}`);
    } catch (error) {
      write(out.stderr, `vmcomm bench: cannot draw ${options.svgFile}: ${(error as Error).message}`);
      status = 1;
    }
  }
  return status;
}

/** Which backends a baseline list can be compared with, for help text. */
export function baselinesHelp(): string {
  return BENCH_BACKENDS.map((b) => `${b} ↔ ${BASELINE_OF[b].join(', ')}`).join('; ');
}

/** Parses a comma-separated list against the known names (`all` = every one, `none` = none). */
export function parseNameList<T extends string>(what: string, text: string, known: readonly T[]): T[] {
  const t = text.trim().toLowerCase();
  if (t === 'all') return [...known];
  if (t === 'none' || t === '') return [];
  const out: T[] = [];
  for (const raw of t.split(',')) {
    const name = raw.trim() as T;
    if (!known.includes(name)) throw new Error(`unknown ${what} '${raw.trim()}' (known: ${known.join(', ')})`);
    if (!out.includes(name)) out.push(name);
  }
  return known.filter((k) => out.includes(k));
}

// ---------------------------------------------------------------------------------------------------

/** A temporary formatted ivshmem region in /dev/shm, or why there is none. */
async function temporaryRegion(): Promise<{ file: string; remove: () => void } | { reason: string }> {
  const file = path.join('/dev/shm', `vmcommbench-${randomBytes(6).toString('hex')}.ivshmem`);
  try {
    // Loaded only here, lazily (as shm-files.ts loads the addon): the launcher imports no backend.
    const admin = await import('../../backends/ivshmem/admin.js');
    admin.formatRegionFile(file, IVSHMEM_REGION_BYTES);
  } catch (error) {
    rmSync(file, { force: true });
    return { reason: `cannot make a temporary region: ${(error as Error).message.split('\n')[0]}` };
  }
  // Removed after the job, and at the latest when this process exits.
  const remove = () => {
    process.off('exit', remove);
    rmSync(file, { force: true });
  };
  process.on('exit', remove);
  return { file, remove };
}

/**
 * Forwards a job's output (events and other lines) until it ends; past `timeoutMs`, SIGTERM, and
 * SIGKILL after twice the grace (a `vmcomm run` launcher uses one grace to end its ranks).
 */
function watchJob(
  child: ChildProcess,
  events: EventLines,
  onStderr: (line: string) => void,
  timeoutMs: number,
  graceMs: number,
): Promise<{ status: number; timedOut: boolean }> {
  const stdout = new LineForwarder({ write: (data) => events.push(data) });
  const stderr = new LineForwarder({ write: (data) => onStderr(data.toString('utf8').replace(/\n$/, '')) });
  child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
  let timedOut = false;
  const timers: NodeJS.Timeout[] = [];
  timers.push(
    setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
      timers.push(setTimeout(() => child.kill('SIGKILL'), 2 * graceMs + 1_000));
    }, timeoutMs),
  );
  return new Promise((resolve) => {
    child.once('error', (error) => {
      onStderr(`vmcomm bench: cannot start the job: ${error.message}`);
    });
    child.once('close', (code, signal) => {
      for (const t of timers) clearTimeout(t);
      stdout.end();
      stderr.end();
      resolve({ status: signal !== null ? 128 + (osConstants.signals[signal] ?? 0) : (code ?? 1), timedOut });
    });
  });
}

/** A short name for the hypervisor, when the machine says: `'Firecracker'`, a DMI product name, or `'a'` hypervisor. */
export function detectHypervisor(): string | undefined {
  const read = (p: string) => {
    try {
      return readFileSync(p, 'utf8').trim();
    } catch {
      return undefined;
    }
  };
  if (/firecracker/i.test(read('/proc/cmdline') ?? '')) return 'Firecracker';
  const product = read('/sys/class/dmi/id/product_name');
  if (product !== undefined && product !== '' && !/to be filled/i.test(product)) return product;
  if (/^flags\s*:.*\bhypervisor\b/m.test(read('/proc/cpuinfo') ?? '')) return 'KVM or another hypervisor';
  return undefined;
}

/** Splits a job's stdout into event lines (handled) and other lines (passed on). */
class EventLines {
  constructor(
    private readonly onEvent: (e: BenchEvent) => void,
    private readonly onOther: (line: string) => void,
  ) {}

  /** One whole line (the launcher's forwarders write whole lines). */
  push(data: Buffer): void {
    const line = data.toString('utf8').replace(/\n$/, '');
    if (!line.startsWith(BENCH_EVENT_PREFIX)) {
      this.onOther(line);
      return;
    }
    try {
      this.onEvent(JSON.parse(line.slice(BENCH_EVENT_PREFIX.length)) as BenchEvent);
    } catch {
      this.onOther(line);
    }
  }
}

/** A one-line progress bar on stderr, drawn only on a terminal. */
class ProgressBar {
  private jobIndex = 0;
  private jobs = 1;
  private label = '';
  private fraction = 0;
  private what = '';
  private drawn = false;
  private last = 0;

  constructor(
    private readonly enabled: boolean,
    private readonly stream: NodeJS.WriteStream,
  ) {}

  job(index: number, count: number, label: string): void {
    this.jobIndex = index;
    this.jobs = count;
    this.label = label;
    this.fraction = 0;
    this.what = 'starting';
    this.draw(true);
  }

  update(fraction: number, what: string): void {
    this.fraction = fraction;
    this.what = what;
    this.draw(false);
  }

  clear(): void {
    if (this.enabled && this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }

  done(): void {
    this.clear();
  }

  private draw(force: boolean): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    const overall = (this.jobIndex + Math.min(1, this.fraction)) / this.jobs;
    const width = 30;
    const full = Math.round(overall * width);
    const text = `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${String(Math.round(overall * 100)).padStart(3)}%  ${this.label} (${this.jobIndex + 1}/${this.jobs}): ${this.what}`;
    const columns = this.stream.columns ?? 80;
    this.stream.write(`\r\x1b[2K${text.slice(0, columns - 1)}`);
    this.drawn = true;
  }
}

// ---------------------------------------------------------------------------------------------------
// The subcommand

const benchOptions: readonly OptionSpec[] = [
  { key: 'quick', flags: ['--quick'], help: `a short run for smoke tests: sizes ${QUICK_BENCH_SIZES.map(formatBytes).join(', ')}, ${BENCH_DEFAULTS.quick.rounds} rounds, warm-up ≥ 0.1 s (as --warmup counts it)` },
  { key: 'patterns', flags: ['--patterns'], value: 'LIST', help: `what to run (default all): ${BENCH_PATTERNS.join(',')}; also as arguments` },
  { key: 'backends', flags: ['--backends'], value: 'LIST', help: `vmcomm transports to measure (default all): ${BENCH_BACKENDS.join(',')}` },
  { key: 'baselines', flags: ['--baselines'], value: 'LIST', help: `baselines to measure beside them: ${BENCH_BASELINES.join(',')}, or none (default: those of the backends measured)` },
  { key: 'sizes', flags: ['--sizes'], value: 'LIST', help: 'message sizes: e.g. 1:4M (every power of two; the default), 8,1K,64K' },
  { key: 'size', flags: ['-n', '-np', '--np'], value: 'N', help: 'ranks per job (default 2; baselines need 2; mbw_mr pairs rank i with i + N/2)' },
  { key: 'bindTo', flags: ['--bind-to'], value: 'core|none', help: 'pin each rank to a core of its own (needs ranks ≤ cores and the addon; default none)' },
  { key: 'rounds', flags: ['--rounds'], value: 'N', help: `measurements per size and implementation, interleaved (default ${BENCH_DEFAULTS.full.rounds})` },
  { key: 'warmup', flags: ['--warmup'], value: 'SECONDS', help: `warm-up per pattern and implementation, at least (default ${BENCH_DEFAULTS.full.warmupMs / 1000}); it goes on until the time per iteration settles, up to 5 times as long (at least 1 s); both count a rank's time on a core, so with more ranks than cores they take that much longer` },
  {
    key: 'timeout',
    flags: ['--timeout'],
    value: 'SECONDS',
    help: `end a job still running after this long; it counts as failed (default ${BENCH_DEFAULTS.full.jobTimeoutMs / 1000}, --quick ${BENCH_DEFAULTS.quick.jobTimeoutMs / 1000})`,
  },
  { key: 'json', flags: ['--json'], value: 'FILE', help: 'also write every result, the machine and the settings as JSON' },
  { key: 'svg', flags: ['--svg'], value: 'FILE', help: 'also draw latency and bandwidth against size (log-log), one line per backend and baseline' },
  { key: 'markdown', flags: ['--markdown'], value: 'FILE', help: 'also write a Markdown summary: typical values at a few sizes, and the ratios to the baselines' },
  { key: 'detail', flags: ['--detail'], help: "also print OSU's per-implementation tables (typical, mean, worst and best round, iterations)" },
  { key: 'help', flags: ['-h', '--help'], help: 'show this help' },
];

/** `vmcomm bench` arguments → options; throws {@link UsageError}. */
export function parseBenchArgs(name: string, args: ParsedArgs): BenchOptions {
  const text = (key: string, flag: string): string | undefined => {
    const v = args.values.get(key);
    if (v === true) throw new UsageError(`${name}: ${flag} needs a value`);
    return v;
  };
  const list = <T extends string>(what: string, flag: string, value: string | undefined, known: readonly T[]): T[] => {
    if (value === undefined) return [...known];
    try {
      return parseNameList(what, value, known);
    } catch (error) {
      throw new UsageError(`${name}: ${flag}: ${(error as Error).message}`);
    }
  };
  const quick = args.values.has('quick');
  const defaults = quick ? BENCH_DEFAULTS.quick : BENCH_DEFAULTS.full;
  const patternText = [text('patterns', '--patterns'), ...args.rest].filter((x) => x !== undefined).join(',');
  const patterns = list('pattern', '--patterns', patternText === '' ? undefined : patternText, BENCH_PATTERNS);
  if (patterns.length === 0) throw new UsageError(`${name}: no pattern to run`);
  const backends = list('backend', '--backends', text('backends', '--backends'), BENCH_BACKENDS);
  // By default, the baselines of the backends measured (all of them for all backends).
  const baselineText = text('baselines', '--baselines');
  const baselines =
    baselineText === undefined ? BENCH_BASELINES.filter((b) => backends.some((k) => BASELINE_OF[k].includes(b))) : list('baseline', '--baselines', baselineText, BENCH_BASELINES);
  if (backends.length === 0 && baselines.length === 0) throw new UsageError(`${name}: nothing to measure (no backend and no baseline)`);
  let sizes: readonly number[] = defaults.sizes;
  const sizeText = text('sizes', '--sizes');
  if (sizeText !== undefined) {
    try {
      sizes = parseSizes(sizeText);
    } catch (error) {
      throw new UsageError(`${name}: --sizes: ${(error as Error).message}`);
    }
  }
  const ranks = positiveInteger(name, '-n', args.values.get('size')) ?? 2;
  if (ranks < 2) throw new UsageError(`${name}: -n must be at least 2`);
  const bind = text('bindTo', '--bind-to') ?? 'none';
  if (bind !== 'core' && bind !== 'none') throw new UsageError(`${name}: --bind-to takes core or none, got ${JSON.stringify(bind)}`);
  const json = text('json', '--json');
  const svg = text('svg', '--svg');
  const markdown = text('markdown', '--markdown');
  return {
    backends,
    baselines,
    patterns,
    sizes,
    ranks,
    rounds: positiveInteger(name, '--rounds', args.values.get('rounds')) ?? defaults.rounds,
    warmupMs: seconds(name, '--warmup', args.values.get('warmup'), defaults.warmupMs / 1000),
    roundMs: defaults.roundMs,
    bindTo: bind,
    quick,
    detail: args.values.has('detail'),
    killGraceMs: 5_000,
    jobTimeoutMs: seconds(name, '--timeout', args.values.get('timeout'), defaults.jobTimeoutMs / 1000),
    ...(json === undefined ? {} : { jsonFile: json }),
    ...(svg === undefined ? {} : { svgFile: svg }),
    ...(markdown === undefined ? {} : { markdownFile: markdown }),
  };
}

/** The `vmcomm bench` subcommand (an entry of the `vmcomm` command table). */
export const benchCommand: Command = {
  summary: 'OSU-style benchmarks of every transport, beside bare Node baselines',
  usage: 'vmcomm bench [--quick] [--patterns LIST | pattern…] [--backends LIST] [--baselines LIST] [--sizes LIST] [--bind-to core] [--json FILE] [--svg FILE]',
  options: benchOptions,
  details: [
    'Patterns (OSU): latency = half round trip; bw = a window of 64 nonblocking sends, then a 4-byte ack;',
    'bibw = windows both ways; mbw_mr = bw on every pair at once (aggregate MB/s and message rate);',
    'allreduce (float32 SUM), bcast, barrier = time per call of the slowest rank. MB = 10^6 B.',
    'One job per backend (threads: thread-ranks of one process; shm, ivshmem, tcp: processes; ivshmem over a',
    'temporary region in /dev/shm). Baselines, measured in the same job, interleaved round by round:',
    `${baselinesHelp()}.`,
    'Method: a warm-up per pattern and implementation (at least --warmup, then until the time per iteration',
    'settles), iterations calibrated per size, rounds interleaved across implementations; typical = median',
    'over rounds of the median of block medians.',
    'A backend that cannot run here is skipped with the reason. Exit status: 0, or 1 if a job failed.',
  ].join('\n'),
  run: (name, args) => runBench(parseBenchArgs(name, args), processOutput()),
};
