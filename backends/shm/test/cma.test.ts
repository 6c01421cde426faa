// Single copy (cma.ts, shm-channel.ts): the protocol on a ring in plain memory with a stand-in for
// the kernel (read, refusal and fallback, order, pieces, validation, a dead reader); then the real
// thing between worlds of this process and between processes, VMCOMM_CMA=0, and a reader that the
// kernel refuses (another user, via setpriv: CI runs as root, where CMA always works).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { FrameSink } from '../../../lib/backend.js';
import { emptyHeader, encodeHeader, FrameKind, frameLength } from '../../../lib/protocol.js';
import { Inbox, InboxSender, inboxBytes, initInbox } from '../../../lib/ring/inbox.js';
import { initRing, RingConsumer, ringRegionBytes } from '../../../lib/ring/spsc-ring.js';
import { lines, ROOT, vmcomm } from '../../../tests/helpers/processes.js';
import { CMA_PIECE_BYTES, HELP_MIN_BYTES, CmaSink } from '../cma.js';
import { FILE_HEADER_BYTES, RingFileControl } from '../layout.js';
import { ShmChannel } from '../shm-channel.js';
import { addon, ensureDist, finalizeAll, pattern, same, startJob } from './helpers.js';

const PRODUCER_PID = 4242;
const CONSUMER_PID = 4343;
const MIN = 1024;

/** A producer (rank 0) and a consumer (rank 1) on one ring in plain memory; the "kernel" is a map of addresses. */
function harness(options: { refuse?: boolean; refuseWrites?: boolean; pidOf?: number; ringBytes?: number; readerAlive?: () => boolean } = {}) {
  const ringBytes = options.ringBytes ?? 4096;
  const sab = new SharedArrayBuffer(FILE_HEADER_BYTES + ringRegionBytes(ringBytes));
  const control = new RingFileControl(sab);
  control.init(0, 1, ringBytes);
  const region = { sab, byteOffset: FILE_HEADER_BYTES, byteLength: ringRegionBytes(ringBytes) };
  initRing(region);
  const inboxRegion = { sab: new SharedArrayBuffer(inboxBytes(2)), byteOffset: 0, byteLength: inboxBytes(2) };
  initInbox(inboxRegion, 2);
  new Inbox(inboxRegion);
  const memory = new Map<bigint, Uint8Array>();
  let nextAddress = 0x10000n;
  /** Gives a view an address in the pretend address space (both "processes" share it). */
  const addressOf = (view: ArrayBufferView): bigint => {
    const address = nextAddress;
    nextAddress += BigInt(view.byteLength) + 0x10000n;
    memory.set(address, new Uint8Array(view.buffer, view.byteOffset, view.byteLength));
    return address;
  };
  const kernel = {
    reads: 0,
    writes: 0,
    refuse: options.refuse ?? false,
    refuseWrites: options.refuseWrites ?? false,
    gone: false,
    addressOf,
    cmaWrite(pid: number, remote: bigint, from: ArrayBufferView): number {
      this.writes++;
      if (this.refuseWrites) throw Object.assign(new Error('operation not permitted'), { code: 'EPERM', errno: 1 });
      expect(pid).toBe(CONSUMER_PID);
      for (const [base, view] of memory) {
        if (remote >= base && remote < base + BigInt(view.byteLength)) {
          const at = Number(remote - base);
          const n = Math.min(from.byteLength, view.byteLength - at);
          view.set(new Uint8Array(from.buffer, from.byteOffset, n), at);
          return n;
        }
      }
      throw Object.assign(new Error('bad address'), { code: 'EFAULT', errno: 14 });
    },
    cmaRead(pid: number, remote: bigint, into: ArrayBufferView): number {
      this.reads++;
      if (this.gone) throw Object.assign(new Error('no such process'), { code: 'ESRCH', errno: 3 });
      if (this.refuse) throw Object.assign(new Error('operation not permitted'), { code: 'EPERM', errno: 1 });
      expect(pid).toBe(PRODUCER_PID);
      for (const [base, view] of memory) {
        if (remote >= base && remote < base + BigInt(view.byteLength)) {
          const from = Number(remote - base);
          const n = Math.min(into.byteLength, view.byteLength - from);
          new Uint8Array(into.buffer, into.byteOffset, n).set(view.subarray(from, from + n));
          return n;
        }
      }
      throw Object.assign(new Error('bad address'), { code: 'EFAULT', errno: 14 });
    },
  };
  const lost: Error[] = [];
  const pending = new Set<ShmChannel>();
  const channel = new ShmChannel({
    ring: { peer: 1, self: 0, ring: region, descriptor: new Uint8Array([1]), peerInbox: new InboxSender(inboxRegion), wake: () => {} },
    control,
    cma: {
      pid: PRODUCER_PID,
      minBytes: MIN,
      addressOf,
      readerPid: CONSUMER_PID,
      write: (pid, remote, from) => kernel.cmaWrite(pid, remote, from),
    },
    needsFlush: (c) => pending.add(c),
    lost: (_peer, error) => lost.push(error),
    readerAlive: options.readerAlive ?? (() => true),
    livenessCheckMs: 5,
    now: () => performance.now(),
  });
  const delivered: { kind: number; data: Uint8Array }[] = [];
  let current: { kind: number; data: Uint8Array } | undefined;
  const inner: FrameSink = {
    begin: (_peer, header) => {
      current = { kind: header[1], data: new Uint8Array(frameLength(header)) };
      return current.data;
    },
    commit: () => delivered.push(current!),
    lost: (_peer, error) => lost.push(error),
  };
  const failed: Error[] = [];
  const sink = new CmaSink(inner, kernel, {
    pidOf: () => options.pidOf ?? PRODUCER_PID,
    allowed: () => true,
    control: () => control,
    wakeProducer: () => {},
    fail: (_peer, error) => failed.push(error),
  });
  const consumer = new RingConsumer(region);
  /** Runs both sides until nothing moves. */
  const run = (rounds = 200): void => {
    for (let i = 0; i < rounds; i++) {
      consumer.poll(sink, 0, 16);
      sink.pump(CMA_PIECE_BYTES);
      for (const c of pending) if (c.flush() >= 0 && !c.pending) pending.delete(c);
    }
  };
  const send = (payload: Uint8Array, kind: number = FrameKind.DATA) => {
    const header = encodeHeader({ ...emptyHeader(), kind: kind as never, payloadBytes: payload.byteLength, messageBytes: payload.byteLength, recvId: 1 }, new Uint8Array(48));
    const state = { done: false, error: undefined as Error | undefined };
    channel.send(header, payload, (error) => {
      state.done = true;
      state.error = error;
    });
    return state;
  };
  return { channel, sink, kernel, delivered, lost, failed, run, send, consumer };
}

describe('single copy, the protocol', () => {
  it('reads a large payload from the sender, holds later frames back until then, and frees the sender’s buffer only after the read', () => {
    const h = harness();
    const small = pattern(100, 1);
    const big = pattern(MIN * 5, 2);
    const s1 = h.send(small);
    const s2 = h.send(big);
    const s3 = h.send(pattern(10, 3), FrameKind.EAGER);
    expect(s1.done).toBe(true);
    expect(s2.done).toBe(false); // borrowed until the reader has it
    expect(s3.done).toBe(false); // behind the gate
    h.run();
    expect(s2).toEqual({ done: true, error: undefined });
    expect(s3.done).toBe(true);
    expect(h.delivered.map((d) => d.data.byteLength)).toEqual([100, MIN * 5, 10]);
    expect(same(h.delivered[1].data, big)).toBe(true);
    expect(h.delivered[2].kind).toBe(FrameKind.EAGER);
    expect(h.channel.counts).toEqual({ singleCopies: 1, fallbacks: 0 });
    expect(h.sink.counts).toMatchObject({ descriptors: 1, reads: 1, bytesRead: MIN * 5, refusals: 0 });
    expect(h.lost).toEqual([]);
  });

  it('after a refusal (EPERM) sends the payload through the ring, in order, and every later one too', () => {
    const h = harness({ refuse: true });
    const a = pattern(MIN * 3, 4);
    const b = pattern(MIN * 2, 5);
    const sends = [h.send(a), h.send(pattern(7, 6)), h.send(b)];
    h.run();
    expect(sends.every((s) => s.done && s.error === undefined)).toBe(true);
    expect(h.delivered.map((d) => d.data.byteLength)).toEqual([MIN * 3, 7, MIN * 2]);
    expect(same(h.delivered[0].data, a)).toBe(true);
    expect(same(h.delivered[2].data, b)).toBe(true);
    expect(h.kernel.reads).toBe(1); // one try, then never again
    expect(h.sink.refuses(0)).toBe(true);
    expect(h.channel.singleCopy).toBe(false);
    expect(h.channel.counts).toEqual({ singleCopies: 0, fallbacks: 1 });
    expect(h.lost).toEqual([]);
  });

  it('cooperative copy: for a large payload the sender writes the second half into the reader while it reads the first', () => {
    const h = harness();
    const big = pattern(HELP_MIN_BYTES * 3 + 12345, 9);
    const s = h.send(big);
    h.run();
    expect(s).toEqual({ done: true, error: undefined });
    expect(same(h.delivered[0].data, big)).toBe(true);
    expect(h.kernel.writes).toBeGreaterThan(0);
    expect(h.sink.counts).toMatchObject({ reads: 1, helped: 1 });
    expect(h.lost).toEqual([]);
  });

  it('cooperative copy: when the kernel refuses the sender’s write, the reader reads that half itself', () => {
    const h = harness({ refuseWrites: true });
    const big = pattern(HELP_MIN_BYTES * 2, 10);
    const s = h.send(big);
    h.run();
    expect(s).toEqual({ done: true, error: undefined });
    expect(same(h.delivered[0].data, big)).toBe(true);
    expect(h.kernel.writes).toBe(1);
    expect(h.sink.counts).toMatchObject({ reads: 1, helped: 0 });
    expect(h.lost).toEqual([]);
  });

  it('reads a payload larger than one piece over several polls', () => {
    // Writes refused, so the reader copies all of it (the cooperative case is checked below).
    const h = harness({ refuseWrites: true });
    const huge = pattern(CMA_PIECE_BYTES * 2 + 3, 7);
    const s = h.send(huge);
    h.consumer.poll(h.sink, 0, 16); // the descriptor and the first piece
    expect(h.sink.active).toBe(1);
    expect(s.done).toBe(false);
    h.run();
    expect(s.done).toBe(true);
    expect(same(h.delivered[0].data, huge)).toBe(true);
    expect(h.kernel.reads).toBe(3);
  });

  it('cooperative copy of a payload of several pieces: each side copies its half piece by piece', () => {
    const h = harness();
    const huge = pattern(CMA_PIECE_BYTES * 4 + 3, 8);
    const s = h.send(huge);
    h.run();
    expect(s).toEqual({ done: true, error: undefined });
    expect(same(h.delivered[0].data, huge)).toBe(true);
    expect(h.kernel.reads).toBe(2); // the first half: 4 MiB in 2 MiB pieces
    expect(h.kernel.writes).toBe(3); // the second half: 4 MiB + 3 bytes
  });

  it('refuses a descriptor that names another process: CORRUPT', () => {
    const h = harness({ pidOf: 1 });
    h.send(pattern(MIN, 8));
    expect(() => h.run()).toThrow(expect.objectContaining({ name: 'VmcommError', code: 'CORRUPT', message: expect.stringMatching(/pid 4242/) }));
  });

  it('a sender that is gone (ESRCH) is PEER_LOST at the reader', () => {
    const h = harness();
    h.kernel.gone = true;
    h.send(pattern(MIN, 9));
    expect(() => h.run()).toThrow(expect.objectContaining({ code: 'PEER_LOST' }));
  });

  it('a reader that died while the sender waits fails the send with PEER_LOST and reports the loss, once', async () => {
    let alive = true;
    const h = harness({ readerAlive: () => alive });
    const s = h.send(pattern(MIN * 2, 10));
    const later = h.send(pattern(5, 11));
    alive = false;
    // Nobody reads: the sender checks its reader after livenessCheckMs of waiting.
    const until = Date.now() + 5_000;
    while (!s.done && Date.now() < until) {
      h.channel.flush();
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    expect(s.error).toMatchObject({ name: 'VmcommError', code: 'PEER_LOST' });
    expect(later.error).toMatchObject({ code: 'PEER_LOST' });
    expect(h.lost).toHaveLength(1);
    const after = h.send(pattern(3, 12));
    await Promise.resolve();
    expect(after.error).toMatchObject({ code: 'PEER_LOST' });
  });
});

describe.skipIf(addon === undefined)('single copy between ranks', () => {
  beforeAll(ensureDist, 120_000);

  it('moves large payloads by single copy between worlds of one process; cma: false keeps them in the ring', async () => {
    for (const cma of [true, false]) {
      const job = await startJob(2, { cma, cmaMinBytes: 64 * 1024 });
      try {
        const data = pattern(3 * 1024 * 1024 + 1, 13);
        const into = new Uint8Array(data.byteLength);
        const r = job.comms[1].irecvBuffer(into, 0, 1);
        await job.comms[0].sendBuffer(data, 1, 1);
        await r;
        expect(same(into, data)).toBe(true);
        const sent = job.transports[0].singleCopyCounts.sent;
        const reads = job.transports[1].singleCopyCounts.reads;
        if (cma && addon!.capability.cma) {
          expect(sent).toBe(1);
          expect(reads).toBe(1);
        } else {
          expect(sent).toBe(0);
          expect(reads).toBe(0);
        }
      } finally {
        await finalizeAll(job);
      }
    }
  });

  it('between processes: single copy by default, none under VMCOMM_CMA=0; the data arrives either way', async () => {
    const fixture = 'tests/fixtures/shm/cma-pair.mjs';
    const on = await vmcomm(['run', '-n', '2', fixture]);
    expect(on.stderr).toBe('');
    expect(on.code).toBe(0);
    const off = await vmcomm(['run', '-n', '2', fixture], { ...process.env, VMCOMM_CMA: '0' });
    expect(off.stderr).toBe('');
    expect(off.code).toBe(0);
    for (const line of lines(on.stdout)) expect(line).toMatch(/shm ok, .*"sent":3,"fallbacks":0,"reads":3,"refusals":0/);
    for (const line of lines(off.stdout)) expect(line).toMatch(/shm ok, .*"sent":0,"fallbacks":0,"reads":0,"refusals":0/);
    expect(lines(on.stdout)).toHaveLength(2);
    expect(lines(off.stdout)).toHaveLength(2);
  }, 60_000);

  describe('a reader the kernel refuses (non-root users via setpriv)', () => {
    const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
    const reason =
      process.getuid?.() !== 0 ? 'not root (setpriv needs root to switch users)' : setpriv === undefined ? 'setpriv is not installed' : undefined;
    if (reason !== undefined) {
      it.skip(`skipped: ${reason}`, () => {});
      return;
    }

    it('gets EPERM, falls back to the ring for that peer, and every message still arrives in order', async () => {
      // Both ranks run as uid 65534 for files (so each can open the other's 0600 files), but rank 1's
      // real uid is 65533: process_vm_readv checks real ids, so each side is refused reading the other.
      const rendezvous = spawn(process.execPath, ['bin/vmcomm.js', 'rendezvous', '-n', '2'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      const env = await new Promise<Record<string, string>>((resolve) => {
        let text = '';
        rendezvous.stdout!.on('data', (b: Buffer) => {
          text += b.toString();
          const vars = Object.fromEntries(lines(text).map((l) => l.split('=', 2) as [string, string]));
          if (Object.keys(vars).length >= 4) resolve(vars);
        });
      });
      const ids = [
        ['--reuid=65534', '--regid=65534'],
        ['--ruid=65533', '--euid=65534', '--rgid=65534', '--egid=65534'],
      ];
      const outs = await Promise.all(
        [0, 1].map(
          (rank) =>
            new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
              const child = spawn(setpriv!, [...ids[rank], '--clear-groups', process.execPath, 'tests/fixtures/shm/cma-pair.mjs'], {
                cwd: ROOT,
                env: { ...process.env, ...env, VMCOMM_RANK: String(rank) },
                stdio: ['ignore', 'pipe', 'pipe'],
              });
              let stdout = '';
              let stderr = '';
              child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
              child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
              const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
              child.once('close', (code) => {
                clearTimeout(timer);
                resolve({ code, stdout, stderr });
              });
            }),
        ),
      );
      rendezvous.kill();
      for (const [rank, out] of outs.entries()) {
        expect(out.stderr, `rank ${rank}`).toBe('');
        expect(out.code, `rank ${rank}`).toBe(0);
        expect(out.stdout).toMatch(new RegExp(`^rank ${rank}: shm ok, uid ${rank === 0 ? 65534 : 65533}/65534, single copy \\{"sent":0,"fallbacks":1,"reads":0,"refusals":1\\}`));
      }
    }, 60_000);
  });
});
