#!/usr/bin/env node
// The C MPI reference for vmcomm's numbers, measured in the same session as them: builds
// bench/mpi/osu-lite.c with the machine's MPI (MPICH's `mpicc.mpich`/`mpiexec.mpich` first, else
// `mpicc`/`mpiexec`; or $MPICC / $MPIEXEC) and runs it with the same method as bench/collectives.ts
// and `vmcomm bench` (time-based warm-up, blocks, median of block medians, median over rounds).
//
//   node bench/mpi-reference.mjs [-n N] [--quick] [--json FILE]
//   npx vmcomm run -n 2 bench/collectives.ts --reference FILE    ratios against that run
//
// Ranks are bound to cores (`-bind-to core`) when there are no more of them than cores, as MPICH and
// Open MPI do by default then. The MPI is a benchmark-only dependency (Debian: `mpich libmpich-dev`):
// without it this says what is missing and exits 2.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const usage = 'usage: node bench/mpi-reference.mjs [-n N] [--quick] [--json FILE]';
let ranks = 2;
let quick = false;
let json;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === '-n' || a === '--np') ranks = Number(args[++i]);
  else if (a === '--quick') quick = true;
  else if (a === '--json') json = args[++i];
  else if (a === '-h' || a === '--help') {
    console.log(usage);
    process.exit(0);
  } else fail(`unknown argument ${a}\n${usage}`);
}
if (!Number.isInteger(ranks) || ranks < 1) fail(`-n takes a whole number of ranks ≥ 1\n${usage}`);
if (json === '') fail(`--json takes a file name\n${usage}`);

const mpicc = process.env.MPICC ?? firstOnPath(['mpicc.mpich', 'mpicc']);
const mpiexec = process.env.MPIEXEC ?? firstOnPath(['mpiexec.mpich', 'mpiexec']);
if (!mpicc || !mpiexec) fail(`no MPI here (${!mpicc ? 'mpicc' : 'mpiexec'} not found); on Debian: apt-get install mpich libmpich-dev`);

const source = fileURLToPath(new URL('./mpi/osu-lite.c', import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'vmcomm-mpi-reference-'));
try {
  measure();
} catch (e) {
  rmSync(dir, { recursive: true, force: true });
  fail(e.message);
}
rmSync(dir, { recursive: true, force: true });

function measure() {
  const binary = path.join(dir, 'osu-lite');
  // -Wno-stringop-overflow: GCC 12 misreads MPI_STATUSES_IGNORE as a zero-length array.
  const cc = spawnSync(mpicc, ['-O2', '-Wall', '-Wno-stringop-overflow', '-o', binary, source], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`${mpicc} failed:\n${cc.stderr || cc.error?.message}`);
  const bind = ranks <= availableParallelism() ? ['-bind-to', 'core'] : [];
  // $MPIEXEC_FLAGS: what another MPI needs, e.g. Open MPI as root: "--allow-run-as-root --oversubscribe".
  const extra = (process.env.MPIEXEC_FLAGS ?? '').split(/\s+/).filter(Boolean);
  const run = spawnSync(mpiexec, ['-n', String(ranks), ...bind, ...extra, binary, ...(quick ? ['--quick'] : [])], { encoding: 'utf8', timeout: 15 * 60_000 });
  if (run.status !== 0) throw new Error(`${mpiexec} -n ${ranks} failed (${run.signal ?? `exit ${run.status}`}):\n${run.stderr || run.error?.message}`);
  const lines = run.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
  const version = lines.find((l) => l.library !== undefined)?.library.trim();
  const results = lines.filter((l) => l.case !== undefined);
  console.log(`# MPI reference: ${version ?? mpiexec}; ${ranks} ranks${bind.length ? ', bound to cores' : ', unbound (more ranks than cores)'}; typical over ${quick ? 3 : 5} rounds (min–max)`);
  for (const r of results) {
    const lo = Math.min(...r.rounds);
    const hi = Math.max(...r.rounds);
    console.log(`  ${r.case.padEnd(26)} ${r.typical.toFixed(2).padStart(10)} ${r.unit.padEnd(4)} (${lo.toFixed(2)}–${hi.toFixed(2)})`);
  }
  if (json) writeFileSync(json, JSON.stringify({ mpi: version ?? mpiexec, ranks, bound: bind.length > 0, measuredAt: new Date().toISOString(), results }, null, 2) + '\n');
}

function firstOnPath(names) {
  for (const n of names) if (spawnSync('sh', ['-c', `command -v ${n}`], { encoding: 'utf8' }).status === 0) return n;
  return undefined;
}

function fail(message) {
  process.stderr.write(`mpi-reference: ${message}\n`);
  process.exit(2);
}
