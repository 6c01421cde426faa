// What a message to a rank that has gone to sleep costs, against the floor of any Node process here.
//
// A receive that waits longer than the spin budgets (the blocking call's 20 µs, then the wait
// loop's adaptive budget, `shm({ minSpinNs, spinBudgetNs, maxSpinNs })`) sleeps in a futex on a
// thread of the addon, which wakes the event loop. Rank 0 computes (spins) for a gap, then sends 8
// bytes; rank 1, waiting in `recvBuffer` all that time, answers at once; rank 0 times send → answer.
// Three kinds of round trip, in the same two processes, alternating in blocks:
// - baseline: rank 1 sleeps in the addon's waiter on a word of a /dev/shm page and, woken, stores
//   the answer from the callback (no vmcomm); rank 0 stores the word, calls `futexWake`, and spins
//   on the answer;
// - vmcomm, spinning: rank 0 waits for the answer by polling `test()` of an `irecvBuffer`, so only
//   rank 1 sleeps, as in the baseline; the ratio is this one's median ÷ the baseline's;
// - vmcomm, recvBuffer: rank 0 waits the ordinary way, so it may go to sleep too before the answer
//   comes (its wait loop's budget shrinks after long sleeps) and pay a second wake-up.
//
//   npx vmcomm run -n 2 --bind-to core bench/wake-after-idle.ts [--gaps 0.01,0.5,5,20] [--rounds 60] [--min-spin-us U]
//
// --min-spin-us: shm's spinBudgetNs and minSpinNs (and maxSpinNs, at least 200 µs) in µs, to see
// what spinning longer buys (and costs: the wait loop holds the event loop that long before
// sleeping). Needs the native addon.
import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { init, VmcommError } from 'vmcomm';
import { shm } from '../dist/backends/shm/index.js';
import { tryLoadNative } from '../dist/backends/native/native.js';

const usage = 'usage: npx vmcomm run -n 2 --bind-to core bench/wake-after-idle.ts [--gaps MS,MS,...] [--rounds N ≥ 5] [--min-spin-us U]';

function parse(argv: string[]): { gaps: number[]; rounds: number; minSpinUs: number | undefined } {
  const o = { gaps: [0.01, 0.5, 5, 20], rounds: 60, minSpinUs: undefined as number | undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    if (a === '--gaps') {
      o.gaps = v === undefined || v === '' ? [] : v.split(',').map((g) => (g.trim() === '' ? NaN : Number(g)));
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
const removePage = (): void => {
  try {
    unlinkSync(path);
  } catch {
    // Removed already.
  }
};
// Removed as soon as rank 1 has it mapped, and by rank 0's exit should anything fail before.
if (comm.rank === 0) process.on('exit', removePage);
const sab = comm.rank === 0 ? addon.createSharedFile(path, 4096) : undefined;
await comm.barrier();
const page = sab ?? addon.openSharedFile(path, 4096);
await comm.barrier();
if (comm.rank === 0) removePage();
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

/**
 * One vmcomm round trip to a rank waiting in recvBuffer (rank 0's time, µs): rank 0 waits for the
 * answer spinning on `test()` (`spin`), or in `recvBuffer`.
 */
async function viaVmcomm(gap: number, spin: boolean): Promise<number> {
  if (comm.rank === 0) {
    busy(gap);
    const t0 = hr();
    await comm.sendBuffer(buf, peer, 2);
    if (spin) {
      const answer = comm.irecvBuffer(buf, peer, 2);
      while (!answer.test());
      await answer;
    } else await comm.recvBuffer(buf, peer, 2);
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
// Blocks of rounds alternate between the kinds (the machine's state drifts), in a rotating order.
// Before each block both ranks pause with their event loops free, longer than the wait loop spins,
// so it is asleep when the block starts: a wait loop still spinning would hold the event loop the
// baseline's wake needs.
const BLOCKS = 6;
const KINDS = ['baseline', 'spinning', 'recvBuffer'] as const;
const settleMs = Math.ceil((2 * (spin.maxSpinNs ?? 200_000)) / 1e6) + 5;
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, settleMs));
const perBlock = Math.ceil(o.rounds / BLOCKS);
const rows: string[] = [];
for (const gap of o.gaps) {
  const times: Record<(typeof KINDS)[number], number[]> = { baseline: [], spinning: [], recvBuffer: [] };
  for (let block = 0; block < BLOCKS; block++) {
    for (let k = 0; k < KINDS.length; k++) {
      const kind = KINDS[(block + k) % KINDS.length];
      await comm.barrier();
      await settle();
      for (let r = 0; r < perBlock; r++) times[kind].push(kind === 'baseline' ? await baseline(gap) : await viaVmcomm(gap, kind === 'spinning'));
    }
  }
  if (comm.rank === 0) {
    const [b, v, w] = KINDS.map((kind) => median(times[kind]));
    const cell = (x: number): string => x.toFixed(1).padStart(14);
    rows.push(`${`${gap} ms`.padStart(10)}${cell(b)}${cell(v)}${(v / b).toFixed(2).padStart(8)}${cell(w)}`);
  }
}
waiter.close();
if (comm.rank === 0) {
  const policy = o.minSpinUs === undefined ? 'shm defaults' : `shm spinBudgetNs = minSpinNs = ${spin.minSpinNs}, maxSpinNs = ${spin.maxSpinNs}`;
  console.log(`# wake after idle: 8-byte round trip to a rank waiting in recvBuffer while its peer computed for a gap (${policy}; ${perBlock * BLOCKS} rounds per gap and kind, in ${BLOCKS} blocks; medians)`);
  console.log('# baseline: a bare futex sleep in the addon\'s waiter; spinning: rank 0 polls test() for the answer (ratio = spinning ÷ baseline); recvBuffer: rank 0 waits in recvBuffer');
  console.log(`${'gap'.padStart(10)}${'baseline µs'.padStart(14)}${'spinning µs'.padStart(14)}${'ratio'.padStart(8)}${'recvBuffer µs'.padStart(14)}`);
  console.log(rows.join('\n'));
}
await comm.finalize();
