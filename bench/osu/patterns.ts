// The OSU patterns as steps (one iteration each) over a PairLink, and vmcomm's own collectives. A
// rank that takes no part in a pattern (ranks ≥ 2 in latency, bw, bibw) gets a step that does nothing;
// it still joins the control collectives between rounds.
import { Op, type Communicator } from 'vmcomm';
import { OSU_ACK_BYTES, OSU_WINDOW, type BenchPattern } from '../../dist/lib/launch/bench-protocol.js';
import type { PairLink } from './links.js';
import type { Iteration, Step } from './measure.js';

/** One implementation as the patterns see it. */
export interface Impl {
  /** `'shm'`, `'sab-ring'`, … */
  readonly name: string;
  readonly kind: 'vmcomm' | 'baseline';
  /** To the point-to-point peer (ranks 0 and 1 only). */
  readonly pair: PairLink | undefined;
  /** To this rank's `mbw_mr` partner (rank i ↔ i + n/2), if it has one. */
  readonly partner: PairLink | undefined;
}

const nothing: Step = () => undefined;

/** `a`, then `b`, awaiting only what is asynchronous. */
const seq =
  (a: () => Promise<unknown> | undefined, b: () => Promise<unknown> | undefined): Step =>
  () => {
    const p = a();
    return p === undefined ? b() : p.then(b);
  };

/** A window of the same buffer, as osu_bw sends and receives it. */
const windowOf = (buf: Uint8Array): Uint8Array[] => Array.from({ length: OSU_WINDOW }, () => buf);

/** The mbw_mr pairs: rank i (sender) with i + ⌊n/2⌋ (receiver). */
export function partnerOf(rank: number, size: number): { peer: number; sender: boolean } | undefined {
  const half = size >> 1;
  if (rank < half) return { peer: rank + half, sender: true };
  if (rank < 2 * half) return { peer: rank - half, sender: false };
  return undefined;
}

/** The bw window from `sender`'s side or the receiver's. */
function bwStep(link: PairLink, sender: boolean, bytes: number): Step {
  const buf = new Uint8Array(bytes).fill(1);
  const ack = new Uint8Array(OSU_ACK_BYTES);
  const window = windowOf(buf);
  return sender ? seq(() => link.exchange(window, []), () => link.recv(ack)) : seq(() => link.exchange([], window), () => link.send(ack));
}

/** One iteration of `pattern` with `bytes`-byte messages, on this rank. */
export function iterationOf(comm: Communicator, pattern: BenchPattern, impl: Impl, bytes: number): Iteration {
  const step = stepFor(comm, pattern, impl, bytes);
  if (pattern !== 'allreduce' && pattern !== 'bcast') return { step };
  // As osu_allreduce and osu_bcast: a barrier of the same implementation after each call, not timed.
  return { step, sync: stepFor(comm, 'barrier', impl, 0) };
}

function stepFor(comm: Communicator, pattern: BenchPattern, impl: Impl, bytes: number): Step {
  const { rank } = comm;
  const link = impl.pair;
  switch (pattern) {
    case 'latency': {
      if (link === undefined) return nothing;
      const buf = new Uint8Array(bytes).fill(1);
      return rank === 0 ? seq(() => link.send(buf), () => link.recv(buf)) : seq(() => link.recv(buf), () => link.send(buf));
    }
    case 'bw':
      return link === undefined ? nothing : bwStep(link, rank === 0, bytes);
    case 'bibw': {
      if (link === undefined) return nothing;
      const sends = windowOf(new Uint8Array(bytes).fill(1));
      const recvs = windowOf(new Uint8Array(bytes));
      return () => link.exchange(sends, recvs);
    }
    case 'mbw_mr': {
      const p = partnerOf(rank, comm.size);
      return p === undefined || impl.partner === undefined ? nothing : bwStep(impl.partner, p.sender, bytes);
    }
    case 'allreduce': {
      const count = Math.max(1, Math.floor(bytes / 4));
      const send = new Float32Array(count).fill(rank + 1);
      const recv = new Float32Array(count);
      if (impl.kind === 'vmcomm') return () => comm.allreduceBuffer(send, recv, Op.SUM);
      // A baseline (two ranks): swap vectors, add.
      if (link === undefined) return nothing;
      const theirs = new Float32Array(count);
      const sendBytes = new Uint8Array(send.buffer);
      const theirBytes = new Uint8Array(theirs.buffer);
      const add = () => {
        for (let i = 0; i < count; i++) recv[i] = send[i] + theirs[i];
        return undefined;
      };
      return seq(() => link.exchange([sendBytes], [theirBytes]), add);
    }
    case 'bcast': {
      const buf = new Uint8Array(bytes).fill(1);
      if (impl.kind === 'vmcomm') return () => comm.bcast(rank === 0 ? buf : undefined, 0);
      if (link === undefined) return nothing;
      return rank === 0 ? () => link.send(buf) : () => link.recv(buf);
    }
    case 'barrier': {
      if (impl.kind === 'vmcomm') return () => comm.barrier();
      if (link === undefined) return nothing;
      const out = [new Uint8Array(1)];
      const inn = [new Uint8Array(1)];
      return () => link.exchange(out, inn);
    }
  }
}

/** Bytes one iteration moves, for bandwidth patterns (MB/s = bytes per µs). */
export function bytesPerIteration(pattern: BenchPattern, bytes: number, size: number): number {
  if (pattern === 'bw') return bytes * OSU_WINDOW;
  if (pattern === 'bibw') return 2 * bytes * OSU_WINDOW;
  if (pattern === 'mbw_mr') return (size >> 1) * bytes * OSU_WINDOW;
  return 0;
}

/** Whether the slowest rank's time is the pattern's (collectives, mbw_mr), or rank 0's. */
export function slowestRankCounts(pattern: BenchPattern): boolean {
  return pattern === 'mbw_mr' || pattern === 'allreduce' || pattern === 'bcast' || pattern === 'barrier';
}
