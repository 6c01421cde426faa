// Helpers for the ivshmem transport's tests: region files in the temporary directory (never
// /dev/shm), transports built by hand with recording sinks, cards and the selection steps the core
// would run.
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import type { BackendComponents, CardFields, FrameSink, LocalityCard } from '../../../lib/backend.js';
import { frameLength } from '../../../lib/protocol.js';
import { tryLoadNative } from '../../native/native.js';
import { formatRegionFile, type FormatFileOptions } from '../admin.js';
import { ivshmem, type IvshmemInit, type IvshmemTransport } from '../index.js';

export const addon = tryLoadNative().addon;

const files = new Set<string>();

/** A formatted region file of `bytes` in the temporary directory; removed by {@link removeRegionFiles}. */
export function regionFile(bytes = 1 << 20, options: FormatFileOptions = {}): string {
  const file = path.join(tmpdir(), `vmcomm-ivshmem-test-${process.pid}-${randomBytes(6).toString('hex')}`);
  files.add(file);
  formatRegionFile(file, bytes, options);
  return file;
}

/** Removes every region file made by {@link regionFile}. */
export function removeRegionFiles(): void {
  for (const f of files) rmSync(f, { force: true });
  files.clear();
}

/** A sink that records frames (whole payloads) and losses. */
export interface RecordingSink extends FrameSink {
  readonly frames: { peer: number; data: Uint8Array }[];
  readonly losses: { peer: number; error: Error }[];
}

export function recordingSink(): RecordingSink {
  let current: { peer: number; data: Uint8Array } | undefined;
  const sink: RecordingSink = {
    frames: [],
    losses: [],
    begin(peer, header) {
      current = { peer, data: new Uint8Array(frameLength(header)) };
      return current.data;
    },
    commit(peer) {
      if (current === undefined || current.peer !== peer) throw new Error('commit without begin');
      sink.frames.push(current);
      current = undefined;
    },
    lost(peer, error) {
      sink.losses.push({ peer, error });
    },
  };
  return sink;
}

/** A job of transports built by hand, as the core would: same job id, one process nonce per rank unless told. */
export interface HandJob {
  readonly transports: IvshmemTransport[];
  readonly sinks: RecordingSink[];
  readonly fields: (CardFields | undefined)[];
  card(rank: number): LocalityCard;
}

/** Builds and starts `size` transports; `init(rank)` gives each its options. */
export async function handJob(size: number, init: (rank: number) => IvshmemInit, options: { jobId?: string; nonce?: (rank: number) => string } = {}): Promise<HandJob> {
  const jobId = options.jobId ?? `test-${randomBytes(6).toString('hex')}`;
  const nonces = Array.from({ length: size }, (_, r) => options.nonce?.(r) ?? randomBytes(16).toString('hex'));
  const sinks = Array.from({ length: size }, () => recordingSink());
  const transports = Array.from({ length: size }, (_, rank) => {
    const components: BackendComponents = { rank, size, jobId, jobSecret: new Uint8Array(32), processNonce: nonces[rank], address: '127.0.0.1', sink: sinks[rank] };
    return ivshmem(init(rank))(components) as IvshmemTransport;
  });
  const fields = await Promise.all(transports.map((t) => t.start()));
  const card = (rank: number): LocalityCard => ({
    rank,
    processNonce: nonces[rank],
    hostname: hostname(),
    pid: process.pid,
    address: '127.0.0.1',
    backends: fields[rank] === undefined ? {} : { ivshmem: fields[rank]! },
    priorities: { ivshmem: 40 },
  });
  return { transports, sinks, fields, card };
}

/**
 * What the core does after start(): every rank probes every peer, a pair is chosen when both
 * directions were proven, then `addPeers`. Returns the chosen pairs as "a-b" strings.
 */
export async function select(job: HandJob): Promise<Set<string>> {
  const n = job.transports.length;
  const reach: boolean[][] = [];
  for (let a = 0; a < n; a++) {
    reach[a] = [];
    for (let b = 0; b < n; b++) reach[a][b] = a !== b && job.fields[a] !== undefined && job.fields[b] !== undefined && (await job.transports[a].probe(job.card(b)));
  }
  const chosen = new Set<string>();
  for (let a = 0; a < n; a++) {
    const peers: number[] = [];
    for (let b = 0; b < n; b++) {
      if (a === b || !reach[a][b] || !reach[b][a]) continue;
      peers.push(b);
      if (a < b) chosen.add(`${a}-${b}`);
    }
    job.transports[a].addPeers(peers);
  }
  return chosen;
}

/** Resolves when `cond()` holds, polling every few ms; rejects after `ms`. */
export async function until(cond: () => boolean, ms = 10_000, what: string | (() => string) = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
