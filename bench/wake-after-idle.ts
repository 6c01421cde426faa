// What a message to a rank that has gone to sleep costs, against the floor of any Node process here.
//
// A receive that waits longer than the spin budgets (the blocking call's 20 µs, then the wait
// loop's adaptive budget, `shm({ minSpinNs, spinBudgetNs, maxSpinNs })`) sleeps in a futex on a
// thread of the addon, which wakes the event loop. Rank 0 computes (spins) for a gap, then sends 8
// bytes; rank 1, waiting in `recvBuffer` all that time, answers at once; rank 0 times send → answer.
// The baseline, in the same two processes and alternating with it in blocks: rank 1 sleeps in
// the addon's waiter on a word of a /dev/shm page and, woken, stores the answer from the callback
// (no vmcomm); rank 0 stores the word, calls `futexWake`, and spins on the answer. The ratio is
// vmcomm's median round trip ÷ the baseline's, per gap.
//
//   npx vmcomm run -n 2 --bind-to core bench/wake-after-idle.ts [--gaps 0.01,0.5,5,20] [--rounds 60] [--min-spin-us U]
//
// --min-spin-us: shm's minSpinNs (and spinBudgetNs) in µs, to see what spinning longer buys (and
// costs: the wait loop holds the event loop that long before sleeping). Needs the native addon.
import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { init, VmcommError } from 'vmcomm';
import { shm } from '../dist/backends/shm/index.js';
import { tryLoadNative } from '../dist/backends/native/native.js';

const usage = 'usage: npx vmcomm run -n 2 --bind-to core bench/wake-after-idle.ts [--gaps MS,MS,...] [--rounds N] [--min-spin-us U]';

function parse(argv: string[]): { gaps: number[]; rounds: number; minSpinUs: number | undefined } {
  const o = { gaps: [0.01, 0.5, 5, 20], rounds: 60, minSpinUs: undefined as number | undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (a === '--gaps') {
      o.gaps = (v ?? '').split(',').map(Number);
      if (o.gaps.length === 0 || o.gaps.some((g) => !Number.isFinite(g) || g < 0 || g > 1000)) throw new VmcommError('INVALID_ARGUMENT', `--gaps takes milliseconds in 0…1000, comma-separated, got ${v}; ${usage}`);
    } else if (a === '--rounds') {
      o.rounds = Number(v);
      if (!Number.isInteger(o.rounds) || o.rounds < 5) throw new VmcommError('INVALID_ARGUMENT', `--rounds takes a whole number ≥ 5, got ${v}; ${usage}`);
    } else if (a === '--min-spin-us') {
      o.minSpinUs = Number(v);
      if (!Number.isFinite(o.minSpinUs) || o.minSpinUs < 0 || o.minSpinUs > 1e6) throw new VmcommError('INVALID_ARGUMENT', `--min-spin-us takes µs in 0…1e6, got ${v}; ${usage}`);
    } else throw new VmcommError('INVALID_ARGUMENT', `unknown option ${a}; ${usage}`);
  }
  return o;
}

const o = parse(process.argv.slice(2));
const addon = tryLoadNative().addon;
if (addon === undefined) throw new VmcommError('UNSUPPORTED', 'wake-after-idle needs the native addon (npm install builds it)');
const spin: { minSpinNs?: number; spinBudgetNs?: number; maxSpinNs?: number } = o.minSpinUs === undefined ? {} : { minSpinNs: o.minSpinUs * 1000, spinBudgetNs: o.minSpinUs * 1000, maxSpinNs: Math.max(200_000, o.minSpinUs * 1000) };
const comm = await init({ backends: [shm(spin)], only: ['shm'] });
if (comm.size !== 2) throw new VmcommError('INVALID_ARGUMENT', `run with -n 2 (got ${comm.size} ranks); ${usage}`);
const peer = 1 - comm.rank;
const hr = (): number => Number(process.hrtime.bigint()) / 1000; // µs

// The baseline's page: rank 0 creates it, rank 1 maps it by name (both see the same /dev/shm).
const path = await comm.bcast(comm.rank === 0 ? `/dev/shm/vmcomm-wake-bench-${randomBytes(8).toString('hex')}` : '', 0);
const sab = comm.rank === 0 ? addon.createSharedFile(path, 4096) : undefined;
await comm.barrier();
const page = sab ?? addon.openSharedFile(path, 4096);
await comm.barrier();
if (comm.rank === 0) unlinkSync(path);
const words = new Int32Array(page);
const waiter = addon.createWaiter();

const buf = new Uint8Array(8);
// Warm-up (time-based, ≥ 1 s: the JIT settles) of the vmcomm path; the baseline's is a few lines.
// Rank 0's clock decides for both.
const warmUntil = performance.now() + 1000;
for (let more = true; more; ) {
  for (let i = 0; i < 200; i++) {
    if (comm.rank === 0) {
      await comm.sendBuffer(buf, peer, 1);
      await comm.recvBuffer(buf, peer, 1);
    } else {
      await comm.recvBuffer(buf, peer, 1);
      await comm.sendBuffer(buf, peer, 1);
    }
  }
  more = await comm.bcast(comm.rank === 0 ? performance.now() < warmUntil : false, 0);
}

function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

let word = 0;
/** One baseline round trip (rank 0's time, µs), or on rank 1 the answer to it. */
async function baseline(gap: number): Promise<number> {
  word++;
  if (comm.rank === 0) {
    busy(gap);
    const t0 = hr();
    Atomics.store(words, 0, word);
    addon!.futexWake(page, 0, 1);
    while (Atomics.load(words, 1) !== word);
    return hr() - t0;
  }
  for (;;) {
    if (Atomics.load(words, 0) === word) break;
    await new Promise<void>((resolve) => waiter.wait(page, 0, word - 1, -1, () => resolve()));
  }
  Atomics.store(words, 1, word);
  return 0;
}

/** One vmcomm round trip to a rank waiting in recvBuffer (rank 0's time, µs). */
async function viaVmcomm(gap: number): Promise<number> {
  if (comm.rank === 0) {
    busy(gap);
    const t0 = hr();
    await comm.sendBuffer(buf, peer, 2);
    await comm.recvBuffer(buf, peer, 2);
    return hr() - t0;
  }
  await comm.recvBuffer(buf, peer, 2);
  await comm.sendBuffer(buf, peer, 2);
  return 0;
}

const median = (xs: number[]): number => {
  const s = xs.slice().sort((a, b) => a - b);
  return s[s.length >> 1];
};
// Blocks of rounds alternate between the two (the machine's state drifts). Between blocks both
// ranks pause with their event loops free, longer than the wait loop spins, so it is asleep before
// a baseline block: a wait loop still spinning would hold the event loop the baseline's wake needs.
const BLOCKS = 4;
const settleMs = Math.ceil(2 * (spin.maxSpinNs ?? 200_000) / 1e6) + 5;
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, settleMs));
const rows: string[] = [];
for (const gap of o.gaps) {
  const base: number[] = [];
  const vm: number[] = [];
  const perBlock = Math.ceil(o.rounds / BLOCKS);
  for (let block = 0; block < BLOCKS; block++) {
    // Which goes first alternates.
    for (const which of block % 2 === 0 ? ['base', 'vm'] : ['vm', 'base']) {
      await comm.barrier();
      await settle();
      for (let r = 0; r < perBlock; r++) {
        if (which === 'base') base.push(await baseline(gap));
        else vm.push(await viaVmcomm(gap));
      }
    }
  }
  if (comm.rank === 0) {
    const b = median(base);
    const v = median(vm);
    rows.push(`  ${String(gap).padStart(6)} ms   ${b.toFixed(1).padStart(8)}   ${v.toFixed(1).padStart(8)}   ${(v / b).toFixed(2).padStart(5)}`);
  }
}
waiter.close();
if (comm.rank === 0) {
  const policy = o.minSpinUs === undefined ? 'shm defaults' : `shm minSpinNs = spinBudgetNs = ${o.minSpinUs * 1000}`;
  console.log(`# wake after idle: 8-byte round trip to a rank waiting in recvBuffer while its peer computed for a gap (${policy}; ${Math.ceil(o.rounds / BLOCKS) * BLOCKS} rounds per gap in ${BLOCKS} blocks each; medians)`);
  console.log('      gap    baseline µs   vmcomm µs   ratio');
  console.log(rows.join('\n'));
}
await comm.finalize();
