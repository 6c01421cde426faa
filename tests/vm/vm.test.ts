// Issue 11, "Real VMs": the namespaces of topology.test.ts imitate VMs; this runs the real thing —
// three QEMU guests with their own kernels (TCG: no KVM needed), booted in parallel from a tiny
// initramfs, each running the project from the host's root (read-only virtio-9p) (tests/vm/guests.ts).
//
//   host A: guests a1 and a2, sharing region RA (memory-backend-file,share=on + ivshmem-plain)
//   host B: guest b, no region in common with anyone
//   a link between the three: QEMU socket multicast on the host's loopback, 10.251.0.1–3/24
//
// One vmcomm job of 6 ranks, 2 per guest, started by hand in each guest against `vmcomm rendezvous`
// running in guest b. No VMCOMM_IVSHMEM anywhere: the guests of host A find RA by vmcomm's PCI scan.
// Asserted: the transport matrix exactly (shm within a guest, ivshmem between a1 and a2, tcp to and
// from b), the region found on the bus is RA (its UUID in the ranks' cards) and b has none, every
// ordered pair's messages (eager and rendezvous sizes) arrive with the SHA-256 recomputed here, two
// allreduces agree, every rank finalized and left RA. Ping-pong latency and bandwidth over shm,
// ivshmem and tcp are measured in the guests, printed, and written to a results file; they are
// TCG-emulated numbers and are never asserted.
//
// Needs root and Debian's qemu-system-x86, linux-image-amd64 and busybox-static (test-only
// dependencies): installed in beforeAll when missing if running as root with CI=true; elsewhere, or
// when installing fails, the file prints why and skips.
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRegionFile } from '../../backends/ivshmem/admin.js';
import { ensureBuilt } from '../helpers/pmi-launchers.js';
import { ROOT } from '../helpers/processes.js';
import { createLab, guestAvailability, installGuestPackages, type GuestOutcome, type VmLab } from './guests.js';

const availability = guestAvailability();
if (availability.kind === 'skip') console.log(`vm test skipped: ${availability.reason}`);

const SIZE = 6;
const REGION_BYTES = 16 * 1024 * 1024;
/** Guest → its link address and its ranks. */
const GUESTS = [
  { name: 'a1', ip: '10.251.0.1', ranks: [0, 1], region: 'ra' },
  { name: 'a2', ip: '10.251.0.2', ranks: [2, 3], region: 'ra' },
  { name: 'b', ip: '10.251.0.3', ranks: [4, 5], region: undefined },
] as const;
const RENDEZVOUS_GUEST = 'b';
const JOB = 'tests/fixtures/vm/job.mjs';
/** Sizes the job sends on every ordered pair (job.mjs: eager and rendezvous). */
const SIZES = [100, 300_000];
/** Everything the guests do, boot included, must end within this (a safety net, not a speed check). */
const GUESTS_MUST_FINISH_MS = 210_000;
const RESULTS_FILE = process.env.VMCOMM_VM_RESULTS ?? path.join(tmpdir(), 'vmcomm-vm-results.json');

let skipReason: string | undefined;
let lab: VmLab | undefined;

beforeAll(async () => {
  if (availability.kind === 'install') {
    const t0 = performance.now();
    skipReason = await installGuestPackages();
    if (skipReason !== undefined) console.log(`vm test skipped: ${skipReason}`);
    else console.log(`vm test: installed qemu-system-x86, linux-image-amd64, busybox-static in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  if (availability.kind !== 'skip') ensureBuilt();
}, 600_000);

afterAll(async () => {
  await lab?.destroy();
  lab = undefined;
});

/** The guest a rank runs in. */
const guestOf = (rank: number) => GUESTS.find((g) => (g.ranks as readonly number[]).includes(rank))!;

/** What the pair (a, b) must use. */
function expectedTransport(a: number, b: number): string {
  if (a === b) return 'self';
  const ga = guestOf(a);
  const gb = guestOf(b);
  if (ga === gb) return 'shm';
  return ga.region !== undefined && ga.region === gb.region ? 'ivshmem' : 'tcp';
}

/** job.mjs's payload from `from` to `to` of `n` bytes: keep in step with it. */
function expectedDigest(from: number, to: number, n: number): string {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + from * 17 + to * 29 + n) & 0xff;
  return createHash('sha256').update(b).digest('hex');
}

/** A guest's script: wait for the job's variables (guest b: serve the rendezvous first), run its ranks. */
function guestScript(guest: (typeof GUESTS)[number], share: string): string {
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const lines = [
    '# written by tests/vm/vm.test.ts; run by the guest init with the host\'s /bin/sh',
    'set -u',
    `S=${q(share)}`,
    `cd ${q(ROOT)} || exit 1`,
    'log() { echo "$(cut -d" " -f1 /proc/uptime)s $*"; }',
    'log "node $(node --version), vmcomm from $(pwd), VMCOMM_IVSHMEM=${VMCOMM_IVSHMEM:-unset}"',
  ];
  if (guest.name === RENDEZVOUS_GUEST) {
    lines.push(
      `node bin/vmcomm.js rendezvous -n ${SIZE} --bind ${guest.ip}:0 >"$S/rendezvous.out" 2>"$S/rendezvous.err" &`,
      'rv=$!',
      'tries=0',
      'until [ "$(grep -c "^VMCOMM_" "$S/rendezvous.out" 2>/dev/null)" = 4 ]; do',
      '  kill -0 $rv 2>/dev/null || { log "vmcomm rendezvous exited:"; cat "$S/rendezvous.err"; exit 1; }',
      '  tries=$((tries + 1)); [ $tries -le 1200 ] || { log "vmcomm rendezvous printed nothing within 120 s"; kill $rv; exit 1; }',
      '  sleep 0.1',
      'done',
      // Renamed whole, so the other guests never read half of it.
      'cp "$S/rendezvous.out" "$S/job.env.tmp" && mv "$S/job.env.tmp" "$S/job.env" || exit 1',
      'log "rendezvous serving: $(grep VMCOMM_RENDEZVOUS "$S/job.env")"',
    );
  } else {
    lines.push(
      'tries=0',
      'until [ -s "$S/job.env" ]; do',
      '  tries=$((tries + 1)); [ $tries -le 1200 ] || { log "no job.env from guest b within 120 s"; exit 1; }',
      '  sleep 0.1',
      'done',
    );
  }
  lines.push(
    'set -a; . "$S/job.env"; set +a',
    'pids=""',
    `for r in ${guest.ranks.join(' ')}; do`,
    `  VMCOMM_RANK=$r node ${JOB} "$S" >"$S/rank-$r.out" 2>"$S/rank-$r.err" &`,
    '  pids="$pids $!"',
    'done',
    'status=0',
    'for p in $pids; do wait $p || status=1; done',
    `for r in ${guest.ranks.join(' ')}; do log "rank $r: $(cat "$S/rank-$r.out")"; [ -s "$S/rank-$r.err" ] && { echo "--- rank $r stderr:"; tail -c 3000 "$S/rank-$r.err"; }; done`,
  );
  if (guest.name === RENDEZVOUS_GUEST) {
    lines.push('wait $rv || { status=1; log "vmcomm rendezvous failed:"; cat "$S/rendezvous.err"; }');
  }
  lines.push('log "done, status $status"', 'exit $status', '');
  return lines.join('\n');
}

interface Measure {
  iterationsPerRound: number;
  rounds: number[];
  median: number;
  min: number;
  max: number;
}

interface RankResult {
  rank: number;
  size: number;
  hostname: string;
  address: string;
  env: { VMCOMM_IVSHMEM: string | null };
  pciIvshmem: { address: string; resource2: string }[];
  scanPci: string[];
  ivshmemCard: { regions: { uuid: string; slot: number; generation: number }[] } | null;
  row: string[];
  received: { from: number; bytes: number; sha256: string }[];
  allreduce: { small: number[]; bigLength: number; bigTotal: number; bigFirst: number[] };
  bench: { peer: number; transport: string; latencyBytes: number; latencyUs: Measure; bandwidthBytes: number; window: number; bandwidthMBps: Measure }[];
  phases: Record<string, number>;
}

describe.skipIf(availability.kind === 'skip')('a vmcomm job across three real guests (QEMU/TCG)', () => {
  it(
    'host A: a1 + a2 share RA, found by PCI scan; host B: guest b; shm / ivshmem / tcp, every pair checksummed, allreduce, ping-pong numbers',
    async (context) => {
      if (skipReason !== undefined) {
        console.log(`vm test skipped: ${skipReason}`);
        context.skip();
        return;
      }
      const t0 = performance.now();
      lab = await createLab({
        guests: GUESTS.map((g) => ({ name: g.name, address: `${g.ip}/24`, ...(g.region ? { region: g.region } : {}) })),
        regions: { ra: REGION_BYTES },
        keep: [ROOT],
      });
      const regionFile = lab.regions.get('ra')!;
      const uuid = describeRegionFile(regionFile).header.uuid;
      for (const g of GUESTS) lab.writeScript(g.name, guestScript(g, lab.share));
      const prepared = performance.now();
      lab.start();
      // On failure this throws with each guest's console and script output tails.
      const outcomes: GuestOutcome[] = await lab.wait(GUESTS_MUST_FINISH_MS);
      const ran = performance.now();

      const results: RankResult[] = [];
      for (let r = 0; r < SIZE; r++) {
        let text: string;
        try {
          text = readFileSync(path.join(lab.share, `result-${r}.json`), 'utf8');
        } catch {
          throw new Error(`rank ${r} wrote no result\n${lab.report()}`);
        }
        results.push(JSON.parse(text) as RankResult);
      }

      // Where each rank ran, and what it found on its PCI bus — with nothing configured.
      for (const res of results) {
        const g = guestOf(res.rank);
        expect(res.size).toBe(SIZE);
        expect(res.hostname).toBe(g.name);
        expect(res.address).toBe(g.ip);
        expect(res.env.VMCOMM_IVSHMEM).toBeNull();
        if (g.region !== undefined) {
          expect(res.pciIvshmem, `rank ${res.rank}: one ivshmem device on the bus`).toHaveLength(1);
          expect(res.scanPci).toEqual([res.pciIvshmem[0]!.resource2]);
          expect(res.ivshmemCard?.regions.map((x) => x.uuid)).toEqual([uuid]);
        } else {
          expect(res.pciIvshmem).toEqual([]);
          expect(res.scanPci).toEqual([]);
          expect(res.ivshmemCard).toBeNull();
        }
      }

      // The transport matrix, exactly.
      const want = Array.from({ length: SIZE }, (_, a) => Array.from({ length: SIZE }, (_, b) => expectedTransport(a, b)));
      expect(results.map((r) => r.row)).toEqual(want);

      // Every ordered pair, both sizes, with the digest recomputed here.
      for (const res of results) {
        const got = [...res.received].sort((x, y) => x.from - y.from || x.bytes - y.bytes);
        const expected = [];
        for (let p = 0; p < SIZE; p++) if (p !== res.rank) for (const n of SIZES) expected.push({ from: p, bytes: n, sha256: expectedDigest(p, res.rank, n) });
        expect(got, `what rank ${res.rank} received`).toEqual(expected);
      }

      // Allreduces: the same, right answer everywhere.
      const ranksSum = (SIZE * (SIZE - 1)) / 2;
      let bigTotal = 0;
      for (let i = 0; i < 65_536; i++) bigTotal += ranksSum * 1000 + SIZE * (i % 97);
      for (const res of results) {
        expect(res.allreduce.small).toEqual([ranksSum, SIZE]);
        expect(res.allreduce.bigLength).toBe(65_536);
        expect(res.allreduce.bigTotal).toBe(bigTotal);
        expect(res.allreduce.bigFirst).toEqual([0, 1, 2, 3].map((i) => ranksSum * 1000 + SIZE * i));
      }

      // Every rank left RA at finalize: no member, no ring.
      const after = describeRegionFile(regionFile);
      expect(after.members).toEqual([]);
      expect(after.rings).toEqual([]);

      // Numbers: reported, never judged.
      const bench = results[0]!.bench;
      expect(bench.map((b) => [b.peer, b.transport])).toEqual([
        [1, 'shm'],
        [2, 'ivshmem'],
        [4, 'tcp'],
      ]);
      for (const b of bench) {
        expect(b.latencyUs.median).toBeGreaterThan(0);
        expect(b.bandwidthMBps.median).toBeGreaterThan(0);
      }
      const wall = performance.now() - t0;
      const summary = {
        note: 'QEMU TCG-emulated guests (no KVM), 1 vCPU each, on the host the test ran on: not representative of KVM',
        host: { cpus: availableParallelism(), node: process.version },
        guestKernel: lab.kernel.version,
        boot: lab.boot.note ?? 'uncompressed kernel, PVH entry',
        bench: bench.map((b) => ({
          pair: `rank 0 (a1) ↔ rank ${b.peer} (${guestOf(b.peer).name})`,
          transport: b.transport,
          latencyUs: { bytes: b.latencyBytes, median: b.latencyUs.median, min: b.latencyUs.min, max: b.latencyUs.max },
          bandwidthMBps: { bytes: b.bandwidthBytes, window: b.window, median: b.bandwidthMBps.median, min: b.bandwidthMBps.min, max: b.bandwidthMBps.max },
        })),
        timings: {
          prepareMs: Math.round(prepared - t0),
          guests: outcomes.map((o) => ({ name: o.name, bootToScriptMs: o.bootMs === undefined ? null : Math.round(o.bootMs), runMs: Math.round(o.ms) })),
          rankPhasesMs: results.map((r) => Object.fromEntries(Object.entries(r.phases).map(([k, v]) => [k, Math.round(v)]))),
          guestsMs: Math.round(ran - prepared),
          wallMs: Math.round(wall),
        },
      };
      writeFileSync(RESULTS_FILE, `${JSON.stringify(summary, null, 2)}\n`);
      const f = (x: number): string => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
      console.log(
        [
          `vm test: ping-pong between guests, ${summary.note}`,
          '| pair | transport | latency, 8 B half round trip (µs): median [min–max] | bandwidth, 1 MiB × window 8 (MB/s): median [min–max] |',
          '|---|---|---:|---:|',
          ...summary.bench.map((b) => `| ${b.pair} | ${b.transport} | ${f(b.latencyUs.median)} [${f(b.latencyUs.min)}–${f(b.latencyUs.max)}] | ${f(b.bandwidthMBps.median)} [${f(b.bandwidthMBps.min)}–${f(b.bandwidthMBps.max)}] |`),
          `guests reached their scripts after ${outcomes.map((o) => `${o.name} ${((o.bootMs ?? NaN) / 1000).toFixed(1)} s`).join(', ')}; ranks' init() done ${results.map((r) => (r.phases.init! / 1000).toFixed(1)).join(', ')} s after node started; guests ran ${(summary.timings.guestsMs / 1000).toFixed(1)} s; test ${(wall / 1000).toFixed(1)} s`,
          `results: ${RESULTS_FILE}`,
        ].join('\n'),
      );
    },
    280_000,
  );
});
