/**
 * What `vmcomm bench` prints and writes, from the results its jobs reported: OSU-style tables (one per
 * pattern, a column per implementation), the ratio of each backend to its baseline, the per-
 * implementation detail, and the JSON document. Pure functions of the data.
 *
 * @module
 */

import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import {
  BASELINE_OF,
  BENCH_BACKENDS,
  BENCH_BASELINES,
  BENCH_PATTERNS,
  formatBytes,
  OSU_WINDOW,
  unitOf,
  warmUpCapMs,
  type BenchBackend,
  type BenchBaseline,
  type BenchEvent,
  type BenchPattern,
  type BenchResult,
} from './bench-protocol.js';

/** What one job did, as the command saw it. */
export interface BenchJobReport {
  /** `'threads'`, `'shm'`, … or `'baselines'`. */
  readonly label: string;
  readonly backend: BenchBackend | undefined;
  readonly baselines: readonly BenchBaseline[];
  /** The job's `start` event, when it got that far. */
  start?: Extract<BenchEvent, { type: 'start' }>;
  /** Implementations that could not be measured, with why. */
  readonly skipped: { impl: string; reason: string }[];
  readonly notes: string[];
  /** Set when the job did not run to its end: its exit status and last lines of stderr. */
  failure?: { status: number; stderr: string[] };
  /** How long the job took, start-up included. */
  seconds?: number;
}

/** The machine, for the report's header and the JSON document. */
export interface MachineInfo {
  readonly cpus: number;
  readonly model: string;
  readonly memoryGiB: number;
  readonly platform: string;
  readonly node: string;
  /** 1-minute load average when the run started (other load skews everything, spinning baselines most). */
  readonly loadAverage: number;
  /** From /sys/class/dmi or /proc/cpuinfo when they say (e.g. `'Firecracker'`, `'KVM'`), else undefined. */
  readonly hypervisor?: string;
}

/** The whole run, as written by `--json`. */
export interface BenchDocument {
  readonly tool: 'vmcomm bench';
  readonly version: string;
  readonly date: string;
  readonly machine: MachineInfo;
  readonly settings: {
    readonly ranks: number;
    readonly patterns: readonly BenchPattern[];
    readonly sizes: readonly number[];
    readonly rounds: number;
    readonly warmupMs: number;
    readonly roundMs: number;
    readonly window: number;
    readonly bindTo: string;
    readonly quick: boolean;
  };
  readonly jobs: readonly BenchJobReport[];
  readonly results: readonly BenchResult[];
}

/** Describes this machine. */
export function machineInfo(hypervisor?: string): MachineInfo {
  const list = cpus();
  return {
    cpus: availableParallelism(),
    model: list[0]?.model.trim() ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    platform: `${process.platform} ${process.arch} (kernel ${release()})`,
    node: process.version,
    loadAverage: loadavg()[0],
    ...(hypervisor === undefined ? {} : { hypervisor }),
  };
}

/** Column order: backends, then baselines. */
const ORDER: readonly string[] = [...BENCH_BACKENDS, ...BENCH_BASELINES];

/** A readable name for an implementation. */
export function implLabel(impl: string): string {
  switch (impl) {
    case 'sab-ring':
      return 'bare SAB ring';
    case 'sab-ring-awaited':
      return 'SAB ring, awaited';
    case 'message-port':
      return 'MessagePort';
    case 'node-tcp':
      return 'bare Node TCP';
    default:
      return `vmcomm ${impl}`;
  }
}

const PATTERN_TITLES: { readonly [P in BenchPattern]: string } = {
  latency: 'latency — half round trip, µs (lower is better)',
  bw: `bandwidth — window of ${OSU_WINDOW} nonblocking sends, then a 4-byte ack; MB/s, MB = 10^6 B (higher is better)`,
  bibw: `bidirectional bandwidth — windows of ${OSU_WINDOW} both ways at once; MB/s (higher is better)`,
  mbw_mr: `multiple bandwidth / message rate — the bw window on every pair (rank i → i + n/2); aggregate MB/s (higher is better)`,
  allreduce: 'allreduce — float32 SUM, µs per call, slowest rank (lower is better)',
  bcast: 'bcast — from rank 0, µs per call, slowest rank (lower is better)',
  barrier: 'barrier — µs per call, slowest rank (lower is better)',
};

function formatValue(v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '—';
  if (v >= 100_000) return v.toExponential(2);
  return v.toFixed(2);
}

function sizeLabel(pattern: BenchPattern, size: number): string {
  return pattern === 'barrier' ? '—' : String(size);
}

/** The implementations present in `results`, in column order. */
export function implsOf(results: readonly BenchResult[]): string[] {
  const present = new Set(results.map((r) => r.impl));
  return [...ORDER.filter((i) => present.has(i)), ...[...present].filter((i) => !ORDER.includes(i)).sort()];
}

/** The OSU-style comparison tables, one per pattern measured: a row per size, a column per implementation. */
export function renderTables(results: readonly BenchResult[]): string {
  const out: string[] = [];
  for (const pattern of BENCH_PATTERNS) {
    const rows = results.filter((r) => r.pattern === pattern);
    if (rows.length === 0) continue;
    const impls = implsOf(rows);
    const sizes = [...new Set(rows.map((r) => r.size))].sort((a, b) => a - b);
    const at = new Map(rows.map((r) => [`${r.impl}@${r.size}`, r]));
    const vmcommImpls = impls.filter((i) => rows.some((r) => r.impl === i && r.kind === 'vmcomm'));
    const widths = impls.map((i) => Math.max(10, implLabel(i).length));
    out.push(`# ${PATTERN_TITLES[pattern]}`);
    const header = impls.map((i, k) => (k === vmcommImpls.length && k > 0 ? '│ ' : '') + implLabel(i).padStart(widths[k])).join('  ');
    out.push(`${'# Size'.padEnd(10)}  ${header}`);
    for (const size of sizes) {
      const cells = impls.map((i, k) => (k === vmcommImpls.length && k > 0 ? '│ ' : '') + formatValue(at.get(`${i}@${size}`)?.typical).padStart(widths[k]));
      out.push(`${sizeLabel(pattern, size).padEnd(10)}  ${cells.join('  ')}`);
    }
    if (pattern === 'mbw_mr') {
      const rates = impls.map((i) => {
        const smallest = rows.find((r) => r.impl === i && r.size === sizes[0]);
        return smallest?.messageRate === undefined ? undefined : `${implLabel(i)} ${(smallest.messageRate / 1e6).toFixed(3)}`;
      });
      out.push(`# message rate at ${formatBytes(sizes[0])}, million messages/s: ${rates.filter((x) => x !== undefined).join(', ')}`);
    }
    out.push('');
  }
  return out.join('\n');
}

/** One ratio: a backend's typical value over its baseline's, oriented so that > 1 means the backend is slower (µs) or faster (MB/s) as written in the header. */
interface RatioCell {
  readonly backend: string;
  readonly baseline: string;
  readonly geomean: number;
  readonly smallest: number;
  readonly largest: number;
  readonly sizes: readonly [number, number];
}

/** Per pattern, each backend against each of its baselines: geometric mean over common sizes, and at the ends. */
export function ratios(results: readonly BenchResult[]): Map<BenchPattern, RatioCell[]> {
  const out = new Map<BenchPattern, RatioCell[]>();
  for (const pattern of BENCH_PATTERNS) {
    const rows = results.filter((r) => r.pattern === pattern);
    const cells: RatioCell[] = [];
    for (const backend of BENCH_BACKENDS) {
      for (const baseline of BASELINE_OF[backend]) {
        const pairs: [number, number][] = [];
        for (const r of rows.filter((x) => x.impl === backend)) {
          const b = rows.find((x) => x.impl === baseline && x.size === r.size);
          if (b !== undefined && r.typical > 0 && b.typical > 0) pairs.push([r.size, r.typical / b.typical]);
        }
        if (pairs.length === 0) continue;
        pairs.sort((a, b) => a[0] - b[0]);
        const geomean = Math.exp(pairs.reduce((s, [, q]) => s + Math.log(q), 0) / pairs.length);
        cells.push({ backend, baseline, geomean, smallest: pairs[0][1], largest: pairs[pairs.length - 1][1], sizes: [pairs[0][0], pairs[pairs.length - 1][0]] });
      }
    }
    if (cells.length > 0) out.set(pattern, cells);
  }
  return out;
}

/** The ratio table: vmcomm backend ÷ baseline, a row per pattern, a column per pair. */
export function renderRatios(results: readonly BenchResult[]): string {
  const table = ratios(results);
  if (table.size === 0) return '';
  const columns: string[] = [];
  for (const cells of table.values()) for (const c of cells) if (!columns.includes(`${c.backend}/${c.baseline}`)) columns.push(`${c.backend}/${c.baseline}`);
  const text = (c: RatioCell | undefined) => (c === undefined ? '—' : c.sizes[0] === c.sizes[1] ? c.geomean.toFixed(2) : `${c.geomean.toFixed(2)} (${c.smallest.toFixed(2)}…${c.largest.toFixed(2)})`);
  const rows = [...table].map(([pattern, cells]) => [`${pattern} (${unitOf(pattern) === 'us' ? 'µs' : 'MB/s'})`, ...columns.map((col) => text(cells.find((c) => `${c.backend}/${c.baseline}` === col)))]);
  const widths = ['# pattern', ...columns].map((h, k) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (cells: string[]) => cells.map((c, k) => (k === 0 ? c.padEnd(widths[k]) : c.padStart(widths[k]))).join('  ');
  return [
    '# vmcomm ÷ baseline, typical values: µs rows > 1 = vmcomm slower, MB/s rows > 1 = vmcomm faster',
    '# geometric mean over the sizes both measured (at the smallest…largest size)',
    line(['# pattern', ...columns]),
    ...rows.map(line),
  ].join('\n') + '\n';
}

/** OSU's own layout, per implementation: size, typical, mean, range of rounds, iterations. */
export function renderDetail(results: readonly BenchResult[]): string {
  const out: string[] = [];
  for (const pattern of BENCH_PATTERNS) {
    for (const impl of implsOf(results.filter((r) => r.pattern === pattern))) {
      const rows = results.filter((r) => r.pattern === pattern && r.impl === impl).sort((a, b) => a.size - b.size);
      const unit = rows[0].unit === 'us' ? 'µs' : 'MB/s';
      out.push(`# ${pattern}, ${implLabel(impl)} (${unit}; ${rows[0].rounds} rounds)`);
      out.push(`${'# Size'.padEnd(10)}  ${'typical'.padStart(12)}  ${'mean'.padStart(12)}  ${'worst round'.padStart(12)}  ${'best round'.padStart(12)}  ${'iterations'.padStart(10)}`);
      for (const r of rows) {
        const [worst, best] = r.unit === 'us' ? [r.max, r.min] : [r.min, r.max];
        out.push(
          `${sizeLabel(pattern, r.size).padEnd(10)}  ${formatValue(r.typical).padStart(12)}  ${formatValue(r.mean).padStart(12)}  ${formatValue(worst).padStart(12)}  ${formatValue(best).padStart(12)}  ${String(r.iterations).padStart(10)}`,
        );
      }
      out.push('');
    }
  }
  return out.join('\n');
}

/** The report's header: machine, method, and what each job measured or why not. */
export function renderHeader(doc: BenchDocument): string {
  const m = doc.machine;
  const s = doc.settings;
  const out = [
    `# vmcomm bench ${doc.version} — OSU-style micro-benchmarks${s.quick ? ' (--quick: few sizes, short warm-up; for smoke tests, not for numbers)' : ''}`,
    `# ${m.cpus} CPUs (${m.model})${m.hypervisor === undefined ? '' : `, ${m.hypervisor} VM`}, ${m.memoryGiB} GiB, ${m.platform}, Node ${m.node}; load average ${m.loadAverage.toFixed(2)} at start`,
    `# ${s.ranks} ranks; warm-up per pattern and implementation ≥ ${s.warmupMs / 1000} s, until the time per iteration settles (≤ ${warmUpCapMs(s.warmupMs) / 1000} s; both of a rank's time on a core, longer when ranks outnumber cores); ${s.rounds} rounds per size, implementations interleaved;` +
      ` typical = median over rounds of each round's median of block medians`,
  ];
  for (const job of doc.jobs) {
    const what = job.backend === undefined ? 'baselines' : job.backend;
    if (job.failure !== undefined) {
      out.push(`# ${what}: FAILED (exit ${job.failure.status})${job.failure.stderr.length > 0 ? `: ${job.failure.stderr[job.failure.stderr.length - 1]}` : ''}`);
      continue;
    }
    const st = job.start;
    if (st !== undefined) {
      const took = job.seconds === undefined ? '' : `, ${job.seconds.toFixed(1)} s`;
      const how = `${st.ranks} ${st.threads ? 'thread-ranks of one process' : 'processes'}, ranks 0–1 over ${st.transport}, binding: ${st.binding}${took}`;
      out.push(`# ${what}: ${st.impls.length === 0 ? 'nothing measured' : st.impls.map(implLabel).join(', ')} (${how})`);
    }
    for (const s2 of job.skipped) out.push(`# ${s2.impl} skipped: ${s2.reason}`);
    for (const n of job.notes) out.push(`# note: ${n}`);
  }
  return out.join('\n') + '\n';
}

/** Sizes a summary shows per pattern (those measured; the largest measured stands in for 4 MiB). */
const SUMMARY_SIZES: { readonly [P in BenchPattern]: readonly number[] } = {
  latency: [8, 4096, 65536, 1 << 20],
  bw: [8, 4096, 65536, 1 << 22],
  bibw: [4096, 65536, 1 << 22],
  mbw_mr: [8, 65536],
  allreduce: [8, 65536, 1 << 20],
  bcast: [8, 65536, 1 << 20],
  barrier: [0],
};

/**
 * A Markdown summary (for a README): one table of typical values at a few sizes per pattern, a
 * column per implementation; then each backend's ratio to its baseline per pattern.
 */
export function renderMarkdown(doc: BenchDocument): string {
  const { results } = doc;
  const impls = implsOf(results);
  const out = [`| pattern | size | ${impls.map(implLabel).join(' | ')} |`, `|---|---:|${impls.map(() => '---:').join('|')}|`];
  for (const pattern of BENCH_PATTERNS) {
    const rows = results.filter((r) => r.pattern === pattern);
    if (rows.length === 0) continue;
    const measured = [...new Set(rows.map((r) => r.size))].sort((a, b) => a - b);
    const wanted = SUMMARY_SIZES[pattern].map((s) => (measured.includes(s) ? s : s >= measured[measured.length - 1] ? measured[measured.length - 1] : undefined));
    const sizes = [...new Set(wanted.filter((s): s is number => s !== undefined))];
    if (sizes.length === 0) sizes.push(measured[0]);
    const unit = unitOf(pattern) === 'us' ? 'µs' : 'MB/s';
    for (const size of sizes) {
      const cells = impls.map((i) => {
        const r = rows.find((x) => x.impl === i && x.size === size);
        if (r === undefined) return '—';
        const rate = r.messageRate === undefined ? '' : ` (${(r.messageRate / 1e6).toFixed(2)} M msg/s)`;
        return `${formatValue(r.typical)}${rate}`;
      });
      out.push(`| ${pattern} (${unit}) | ${pattern === 'barrier' ? '—' : formatBytes(size)} | ${cells.join(' | ')} |`);
    }
  }
  const table = ratios(results);
  if (table.size > 0) {
    const patterns = [...table.keys()];
    const pairs: string[] = [];
    for (const cells of table.values()) for (const c of cells) if (!pairs.includes(`${c.backend}/${c.baseline}`)) pairs.push(`${c.backend}/${c.baseline}`);
    out.push('', `| vmcomm ÷ baseline | ${patterns.map((p) => `${p} (${unitOf(p) === 'us' ? 'µs' : 'MB/s'})`).join(' | ')} |`, `|---|${patterns.map(() => '---:').join('|')}|`);
    for (const pair of pairs) {
      const cells = patterns.map((p) => {
        const c = table.get(p)?.find((x) => `${x.backend}/${x.baseline}` === pair);
        return c === undefined ? '—' : c.geomean.toFixed(2);
      });
      out.push(`| ${implLabel(pair.split('/')[0])} ÷ ${implLabel(pair.split('/')[1])} | ${cells.join(' | ')} |`);
    }
  }
  return out.join('\n') + '\n';
}
