// `vmcomm bench` and `vmcomm info` as a user runs them (real jobs, the built dist/), plus their pure
// parts. The benchmark runs a small subset with --quick so its code never rots; nothing here asserts
// a speed: only the structure of what is printed and written.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, vmcomm } from '../helpers/processes.js';
import { tryLoadNative } from '../../backends/native/native.js';
import { parseSizes, sizesOf, type BenchResult } from '../../lib/launch/bench-protocol.js';
import { parseNameList, planJobs } from '../../lib/launch/bench-command.js';
import { renderRatios, renderTables } from '../../lib/launch/bench-report.js';
import { benchChartSpec } from '../../lib/launch/bench-plot.js';
import type { BenchDocument } from '../../lib/launch/bench-report.js';

/** A quick bench run of a few seconds per backend; generous, as the machine may be busy. */
const BENCH_MUST_FINISH_MS = 240_000;

let dir: string;

beforeAll(() => {
  const sources = path.join(ROOT, 'lib', 'launch');
  const stale = readdirSync(sources)
    .filter((f) => f.endsWith('.ts'))
    .some((f) => {
      const compiled = path.join(ROOT, 'dist', 'lib', 'launch', f.replace(/\.ts$/, '.js'));
      return !existsSync(compiled) || statSync(compiled).mtimeMs < statSync(path.join(sources, f)).mtimeMs;
    });
  if (stale) {
    spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  }
  expect(existsSync(path.join(ROOT, 'dist', 'lib', 'launch', 'cli.js')), 'dist/ must be built: run `npm run build`').toBe(true);
  dir = mkdtempSync(path.join(tmpdir(), 'vmcomm-bench-test-'));
}, 120_000);

afterAll(() => {
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('vmcomm bench --quick (a subset)', () => {
  it('measures latency and allreduce on every backend that can run here, beside the baselines, and writes JSON and SVG', async () => {
    const json = path.join(dir, 'bench.json');
    const svg = path.join(dir, 'bench.svg');
    const out = await vmcomm(['bench', '--quick', '--patterns', 'latency,allreduce', '--sizes', '8,4K', '--json', json, '--svg', svg], undefined, BENCH_MUST_FINISH_MS);
    expect(out.code, out.stderr).toBe(0);

    // stdout: the header, one OSU-style table per pattern, a row per size, a number or — per column.
    const text = out.stdout;
    expect(text).toMatch(/^# vmcomm bench \S+ — OSU-style micro-benchmarks \(--quick/);
    expect(text).toMatch(/^# 2 CPUs|^# \d+ CPUs/m);
    for (const title of ['# latency — half round trip, µs', '# allreduce — float32 SUM, µs per call']) expect(text).toContain(title);
    const latency = text.slice(text.indexOf('# latency'), text.indexOf('# allreduce'));
    const rows = latency.split('\n').filter((l) => /^\d/.test(l));
    expect(rows.map((r) => r.split(/\s+/)[0])).toEqual(['8', '4096']);
    for (const row of rows) for (const cell of row.replace('│', '').trim().split(/\s+/).slice(1)) expect(cell).toMatch(/^(\d+\.\d\d|\d\.\d\de\+\d+|—)$/);
    expect(text).toContain('# vmcomm ÷ baseline');

    // JSON: every measured cell, with the method's numbers; every backend measured or skipped with a reason.
    const doc = JSON.parse(readFileSync(json, 'utf8')) as BenchDocument;
    expect(doc.tool).toBe('vmcomm bench');
    expect(doc.settings).toMatchObject({ ranks: 2, patterns: ['latency', 'allreduce'], sizes: [8, 4096], quick: true, window: 64 });
    expect(doc.machine.cpus).toBeGreaterThan(0);
    const measured = new Set(doc.results.map((r) => r.impl));
    for (const backend of ['threads', 'shm', 'ivshmem', 'tcp']) {
      const job = doc.jobs.find((j) => j.backend === backend);
      expect(job, backend).toBeDefined();
      expect(job?.failure, `${backend} job failed: ${JSON.stringify(job?.failure)}`).toBeUndefined();
      const skipped = job?.skipped.find((s) => s.impl === backend);
      if (!measured.has(backend)) expect(skipped?.reason, `${backend} neither measured nor skipped with a reason`).toMatch(/\S/);
    }
    // threads, tcp and their baselines always run on Linux.
    for (const impl of ['threads', 'tcp', 'sab-ring', 'sab-ring-awaited', 'message-port', 'node-tcp']) expect(measured.has(impl), impl).toBe(true);
    for (const r of doc.results) {
      expect(['latency', 'allreduce']).toContain(r.pattern);
      expect([8, 4096]).toContain(r.size);
      expect(r.unit).toBe('us');
      expect(r.rounds).toBe(3);
      expect(r.iterations).toBeGreaterThanOrEqual(1);
      for (const k of ['typical', 'mean', 'min', 'max'] as const) expect(Number.isFinite(r[k]) && r[k] > 0, `${r.impl} ${r.pattern} ${r.size} ${k}`).toBe(true);
      expect(r.min).toBeLessThanOrEqual(r.typical);
      expect(r.typical).toBeLessThanOrEqual(r.max);
    }
    for (const impl of measured) for (const pattern of ['latency', 'allreduce']) for (const size of [8, 4096]) {
      expect(doc.results.filter((r) => r.impl === impl && r.pattern === pattern && r.size === size), `${impl} ${pattern} ${size}`).toHaveLength(1);
    }

    // SVG: drawn by vega, one line per implementation.
    const picture = readFileSync(svg, 'utf8');
    expect(picture.startsWith('<svg')).toBe(true);
    expect(picture).toContain('latency (half round trip)');
    expect(picture).toContain('bare SAB ring');
    expect(picture).toContain('vmcomm threads');
  }, BENCH_MUST_FINISH_MS + 10_000);

  it('rejects bad arguments with a one-line usage error (exit 2)', async () => {
    for (const args of [['--sizes', '12Q'], ['--backends', 'carrier-pigeon'], ['--bind-to', 'socket'], ['nonsense'], ['-n', '1']]) {
      const out = await vmcomm(['bench', ...args]);
      expect(out.code, args.join(' ')).toBe(2);
      expect(out.stderr.trim().split('\n')).toHaveLength(1);
      expect(out.stdout).toBe('');
    }
  });
});

describe.skipIf(tryLoadNative().addon === undefined)('bench/wake-after-idle.ts', () => {
  it('prints a row per gap: the baseline, vmcomm with rank 0 spinning, their ratio, and vmcomm through recvBuffer', async () => {
    const out = await vmcomm(['run', '-n', '2', 'bench/wake-after-idle.ts', '--gaps', '0.01,0.3', '--rounds', '12'], undefined, 120_000);
    expect(out.code, out.stderr).toBe(0);
    expect(out.stdout).toMatch(/^# wake after idle: .*shm defaults; 12 rounds per gap and kind, in 6 blocks; medians\)$/m);
    const rows = out.stdout.split('\n').filter((l) => /^\s+[\d.]+ ms /.test(l));
    expect(rows.map((r) => r.trim().split(/\s+/)[0])).toEqual(['0.01', '0.3']);
    for (const row of rows) {
      const cells = row.trim().split(/\s+/);
      expect(cells).toHaveLength(6);
      const [, , base, spinning, ratio, recvBuffer] = cells.map(Number);
      for (const x of [base, spinning, ratio, recvBuffer]) expect(x).toBeGreaterThan(0);
      expect(ratio).toBeCloseTo(spinning / base, 1);
    }
  }, 130_000);

  it('refuses bad options with the usage', async () => {
    for (const [args, message] of [
      [['--rounds', '2'], '--rounds takes a whole number ≥ 5, got 2'],
      [['--gaps', ''], '--gaps takes milliseconds in 0…1000, comma-separated, got '],
      [['--gaps', '1,,2'], '--gaps takes milliseconds in 0…1000, comma-separated, got 1,,2'],
    ] as const) {
      const out = await vmcomm(['run', '-n', '2', 'bench/wake-after-idle.ts', ...args], undefined, 60_000);
      expect(out.code, args.join(' ')).not.toBe(0);
      expect(out.stderr).toContain(message);
    }
  }, 190_000);
});

describe('vmcomm info', () => {
  it('-n 2 prints versions, the addon, cards, regions, the matrix with reasons and the collective table', async () => {
    const out = await vmcomm(['info', '-n', '2']);
    expect(out.code, out.stderr).toBe(0);
    const text = out.stdout;
    expect(text).toMatch(/^vmcomm info — a job of 2 ranks \(2 processes\)/);
    for (const section of ['versions', 'native addon', 'ranks (locality cards)', 'ivshmem regions', 'transport matrix', 'why each pair uses its transport', 'collective algorithms']) {
      expect(text).toContain(`\n${section}`);
    }
    expect(text).toMatch(/vmcomm \S+, Node v\d+/);
    expect(text).toMatch(/every rank: (loaded; mmap (yes|no)|NOT loaded: .+)/);
    expect(text).toMatch(/ {2}rank 0: pid \d+ \(main thread/);
    expect(text).toMatch(/ {2}rank 1: pid \d+ \(main thread/);
    const matrix = text.slice(text.indexOf('transport matrix'));
    const row0 = matrix.split('\n').find((l) => /^ {2}0 /.test(l));
    const row1 = matrix.split('\n').find((l) => /^ {2}1 /.test(l));
    expect(row0?.trim().split(/\s+/)).toEqual(['0', 'self', expect.stringMatching(/^(shm|tcp)$/)]);
    expect(row1?.trim().split(/\s+/)[2]).toBe('self');
    expect(text).toMatch(/0↔1: .*→ chosen/);
    expect(text).toContain('| allreduce | shared memory if every pair of ranks talks through one transport with cells (shm, or threads)');
    expect(text).not.toMatch(/SECRET/);
  });

  it('--threads shows the threads transport, and --json every rank as data', async () => {
    const out = await vmcomm(['info', '-n', '2', '--threads', '--json'], { ...process.env, VMCOMM_COLL_ALLREDUCE: 'ring' });
    expect(out.code, out.stderr).toBe(0);
    const infos = JSON.parse(out.stdout) as { rank: number; threadId: number; description: { pairs: { transport: string }[]; collectiveOverrides: object } }[];
    expect(infos.map((i) => i.rank)).toEqual([0, 1]);
    expect(infos[0].description.pairs.map((p) => p.transport)).toEqual(['self', 'threads']);
    expect(infos[1].threadId).toBeGreaterThan(0);
    expect(infos[0].description.collectiveOverrides).toEqual({ allreduce: 'ring' });
    expect(out.stdout).not.toMatch(/VMCOMM_JOB_SECRET/);
  });
});

describe('bench pieces', () => {
  it('parses sizes, ranges and name lists', () => {
    expect(parseSizes('1:16')).toEqual([1, 2, 4, 8, 16]);
    expect(parseSizes('8,1K,64KiB,1M')).toEqual([8, 1024, 65536, 1048576]);
    expect(parseSizes('1:4M')).toHaveLength(23);
    expect(() => parseSizes('0')).toThrow(/out of range/);
    expect(() => parseSizes('4:2')).toThrow(/empty/);
    expect(sizesOf('allreduce', [1, 2, 4, 8])).toEqual([4, 8]);
    expect(sizesOf('barrier', [1, 2])).toEqual([0]);
    expect(parseNameList('backend', 'tcp,shm', ['threads', 'shm', 'tcp'])).toEqual(['shm', 'tcp']);
    expect(parseNameList('baseline', 'none', ['a', 'b'])).toEqual([]);
    expect(() => parseNameList('backend', 'udp', ['tcp'])).toThrow(/unknown backend 'udp'/);
  });

  it('plans one job per backend, baselines with the backend they are compared with', () => {
    const { jobs, notes } = planJobs({ backends: ['threads', 'shm', 'ivshmem', 'tcp'], baselines: ['sab-ring', 'sab-ring-awaited', 'message-port', 'node-tcp'], ranks: 2 });
    expect(jobs.map((j) => [j.report.label, j.threads, j.report.baselines])).toEqual([
      ['threads', true, ['sab-ring', 'sab-ring-awaited', 'message-port']],
      ['shm', false, []],
      ['ivshmem', false, []],
      ['tcp', false, ['node-tcp']],
    ]);
    expect(notes).toEqual([]);
    const only = planJobs({ backends: ['shm'], baselines: ['node-tcp'], ranks: 2 });
    expect(only.jobs.map((j) => [j.report.label, j.report.backend, j.report.baselines])).toEqual([
      ['shm', 'shm', []],
      ['baselines', undefined, ['node-tcp']],
    ]);
    expect(planJobs({ backends: ['tcp'], baselines: ['node-tcp'], ranks: 4 }).notes[0]).toMatch(/two ranks/);
  });

  it('renders tables with a column per implementation, ratios, and a chart spec', () => {
    const cell = (impl: string, kind: 'vmcomm' | 'baseline', size: number, typical: number): BenchResult => ({
      pattern: 'latency', impl, kind, size, unit: 'us', typical, mean: typical, min: typical, max: typical, rounds: 3, iterations: 10, ranks: 2,
    });
    const results = [cell('shm', 'vmcomm', 1, 2), cell('sab-ring', 'baseline', 1, 1), cell('shm', 'vmcomm', 1024, 3), cell('sab-ring', 'baseline', 1024, 1.5)];
    const table = renderTables(results);
    expect(table).toContain('vmcomm shm');
    expect(table).toContain('bare SAB ring');
    expect(table).toMatch(/^1 +2\.00 +│ +1\.00$/m);
    expect(renderRatios(results)).toMatch(/^latency \(µs\) +2\.00 \(2\.00…2\.00\)$/m);
    const spec = benchChartSpec(results, 'test') as unknown as { vconcat: unknown[]; data: { values: unknown[] } };
    expect(spec.data.values).toHaveLength(4);
    expect(spec.vconcat).toHaveLength(1);
  });
});
