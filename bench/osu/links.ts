// The two ends of a pair as the benchmark patterns see them, for vmcomm and for each baseline. Every
// implementation delivers the bytes into the receiver's buffer (MPI_Recv semantics), and the sizes
// are known to both ends, as in OSU. A method returns undefined when it completed synchronously (the
// bare ring spins), so the patterns await only real promises and the ring pays for no microtask.
import net from 'node:net';
import { once } from 'node:events';
import type { MessagePort } from 'node:worker_threads';
import { waitAll, type Communicator, type Request } from 'vmcomm';
import { SAB_RING_BYTES, SAB_RING_HEADER_BYTES } from '../../dist/lib/launch/bench-protocol.js';

export interface PairLink {
  readonly name: string;
  /** Sends `data`; resolves when `data` may be reused. */
  send(data: Uint8Array): Promise<unknown> | undefined;
  /** Receives the next message (of exactly `into.byteLength` bytes) into `into`. */
  recv(into: Uint8Array): Promise<unknown> | undefined;
  /** Sends every one of `sends` and receives every one of `recvs`, all at once (nonblocking calls, then wait). */
  exchange(sends: readonly Uint8Array[], recvs: readonly Uint8Array[]): Promise<unknown> | undefined;
  close(): void;
}

/** vmcomm point-to-point with `peer` (`sendBuffer`/`recvBuffer`, `isendBuffer`/`irecvBuffer` + `waitAll`). */
export function vmcommLink(comm: Communicator, peer: number, name: string, tag = 100): PairLink {
  return {
    name,
    send: (data) => comm.sendBuffer(data, peer, tag),
    recv: (into) => comm.recvBuffer(into, peer, tag),
    exchange: (sends, recvs) => {
      const requests: Request<unknown>[] = [];
      // Receives first, as osu_bw and osu_bibw post them.
      for (const r of recvs) requests.push(comm.irecvBuffer(r, peer, tag));
      for (const s of sends) requests.push(comm.isendBuffer(s, peer, tag));
      return waitAll(requests);
    },
    close: () => undefined,
  };
}

// ---------------------------------------------------------------------------------------------------
// The bare SharedArrayBuffer spin ring

/**
 * Bytes moved between two updates of the ring's head or tail: a careful user's choice, so that the
 * reader copies one piece out while the writer copies the next one in (whole-ring steps would take
 * turns, not overlap).
 */
const SAB_RING_STEP_BYTES = 64 * 1024;

/** A single-producer single-consumer byte ring that spins: the floor for shared memory in JavaScript. */
export class BareRing {
  private readonly ctl: Int32Array;
  private readonly data: Uint8Array;
  private readonly size: number;
  private head = 0;
  private tail = 0;

  constructor(sab: SharedArrayBuffer, offset: number, size: number) {
    this.ctl = new Int32Array(sab, offset, SAB_RING_HEADER_BYTES / 4);
    this.data = new Uint8Array(sab, offset + SAB_RING_HEADER_BYTES, size);
    this.size = size;
  }

  /** Writes what fits of `src` from `from`; returns the new offset. */
  tryWrite(src: Uint8Array, from: number): number {
    let done = from;
    const n = src.byteLength;
    while (done < n) {
      const free = this.size - ((this.head - (Atomics.load(this.ctl, 16) >>> 0)) >>> 0);
      if (free === 0) break;
      const at = this.head & (this.size - 1);
      const k = Math.min(n - done, free, this.size - at, SAB_RING_STEP_BYTES);
      if (k <= 64) for (let i = 0; i < k; i++) this.data[at + i] = src[done + i];
      else this.data.set(done === 0 && k === n ? src : src.subarray(done, done + k), at);
      this.head = (this.head + k) >>> 0;
      done += k;
      Atomics.store(this.ctl, 0, this.head | 0);
    }
    return done;
  }

  /** Reads what is there into `dst` from `from`; returns the new offset. */
  tryRead(dst: Uint8Array, from: number): number {
    let done = from;
    const n = dst.byteLength;
    while (done < n) {
      const avail = ((Atomics.load(this.ctl, 0) >>> 0) - this.tail) >>> 0;
      if (avail === 0) break;
      const at = this.tail & (this.size - 1);
      const k = Math.min(n - done, avail, this.size - at, SAB_RING_STEP_BYTES);
      if (k <= 64) for (let i = 0; i < k; i++) dst[done + i] = this.data[at + i];
      else dst.set(this.data.subarray(at, at + k), done);
      this.tail = (this.tail + k) >>> 0;
      done += k;
      Atomics.store(this.ctl, 16, this.tail | 0);
    }
    return done;
  }

  write(src: Uint8Array): void {
    for (let done = 0; done < src.byteLength; ) done = this.tryWrite(src, done);
  }

  read(dst: Uint8Array): void {
    for (let done = 0; done < dst.byteLength; ) done = this.tryRead(dst, done);
  }
}

/** Bytes of the SharedArrayBuffer that holds both directions' rings. */
export const SAB_RINGS_BYTES = 2 * (SAB_RING_HEADER_BYTES + SAB_RING_BYTES);

/** Rank `rank`'s two bare rings over `sab` (ring r carries rank r → the other): the one it writes, the one it reads. */
export function sabRingsOf(sab: SharedArrayBuffer, rank: number): { out: BareRing; inn: BareRing } {
  const ringOf = (from: number) => new BareRing(sab, from * (SAB_RING_HEADER_BYTES + SAB_RING_BYTES), SAB_RING_BYTES);
  return { out: ringOf(rank), inn: ringOf(1 - rank) };
}

/** The bare ring between thread-ranks 0 and 1 over `sab`. */
export function sabRingLink(sab: SharedArrayBuffer, rank: number): PairLink {
  const { out, inn } = sabRingsOf(sab, rank);
  return {
    name: 'sab-ring',
    send: (data) => {
      out.write(data);
      return undefined;
    },
    recv: (into) => {
      inn.read(into);
      return undefined;
    },
    exchange: (sends, recvs) => {
      // Both directions progress together: writing a whole window first would deadlock once both
      // rings are full.
      let s = 0;
      let sOff = 0;
      let r = 0;
      let rOff = 0;
      while (s < sends.length || r < recvs.length) {
        if (s < sends.length) {
          sOff = out.tryWrite(sends[s], sOff);
          if (sOff === sends[s].byteLength) {
            s++;
            sOff = 0;
          }
        }
        if (r < recvs.length) {
          rOff = inn.tryRead(recvs[r], rOff);
          if (rOff === recvs[r].byteLength) {
            r++;
            rOff = 0;
          }
        }
      }
      return undefined;
    },
    close: () => undefined,
  };
}

/** The one promise every call of {@link awaitedLink} returns: settled, so an await costs one microtask. */
const SETTLED: Promise<unknown> = Promise.resolve();

/**
 * `link` (a bare ring) behind calls that return a promise, as vmcomm's do, and nothing else: the
 * patterns await each send and each receive, and a window waits for one promise per message (as
 * vmcomm's nonblocking calls and `waitAll`). What vmcomm costs beyond this is its own work, not the
 * price of a promise-based API.
 */
export function awaitedLink(link: PairLink, name: string): PairLink {
  return {
    name,
    send: (data) => link.send(data) ?? SETTLED,
    recv: (into) => link.recv(into) ?? SETTLED,
    exchange: (sends, recvs) => {
      const moved = link.exchange(sends, recvs);
      const each: Promise<unknown>[] = new Array(sends.length + recvs.length).fill(SETTLED);
      return moved === undefined ? Promise.all(each) : moved.then(() => Promise.all(each));
    },
    close: () => undefined, // the ring's own link closes it
  };
}

// ---------------------------------------------------------------------------------------------------
// MessagePort

/**
 * A `MessagePort` to the other worker: `postMessage(view)` (a structured-clone copy; the sender keeps
 * its buffer), and the receiver copies the message into its buffer.
 */
export function messagePortLink(port: MessagePort): PairLink {
  const inbox: Uint8Array[] = [];
  let waiter: (() => void) | undefined;
  port.on('message', (m: Uint8Array) => {
    inbox.push(m);
    const w = waiter;
    waiter = undefined;
    w?.();
  });
  const next = async (): Promise<Uint8Array> => {
    while (inbox.length === 0) await new Promise<void>((r) => (waiter = r));
    return inbox.shift()!;
  };
  const recv = async (into: Uint8Array): Promise<void> => {
    into.set(await next());
  };
  return {
    name: 'message-port',
    send: (data) => {
      port.postMessage(data);
      return undefined;
    },
    recv,
    exchange: (sends, recvs) => {
      for (const s of sends) port.postMessage(s);
      if (recvs.length === 0) return undefined;
      return (async () => {
        for (const r of recvs) await recv(r);
      })();
    },
    close: () => port.close(),
  };
}

// ---------------------------------------------------------------------------------------------------
// Bare Node TCP

/**
 * A bare `net` socket between ranks 0 and 1 (no Nagle, a 4-byte length prefix as any framed
 * protocol needs; each received chunk is copied once, straight to its place). Rank 0 listens on
 * 127.0.0.1 and tells rank 1 the port through `comm`.
 */
export async function nodeTcpLink(comm: Communicator, peer: number): Promise<PairLink> {
  let socket: net.Socket;
  if (comm.rank === 0) {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    await comm.send((server.address() as net.AddressInfo).port, peer, 1);
    [socket] = (await once(server, 'connection')) as [net.Socket];
    server.close();
  } else {
    const port = await comm.recv<number>(peer, 1);
    socket = net.connect(port, '127.0.0.1');
    await once(socket, 'connect');
  }
  socket.setNoDelay(true);

  const chunks: Buffer[] = [];
  let waiter: (() => void) | undefined;
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk);
    const w = waiter;
    waiter = undefined;
    w?.();
  });
  async function take(into: Uint8Array, n: number): Promise<void> {
    let got = 0;
    while (got < n) {
      if (chunks.length === 0) {
        await new Promise<void>((r) => (waiter = r));
        continue;
      }
      const c = chunks[0];
      const k = Math.min(c.length, n - got);
      into.set(k === c.length ? c : c.subarray(0, k), got);
      got += k;
      if (k === c.length) chunks.shift();
      else chunks[0] = c.subarray(k);
    }
  }
  const head = new Uint8Array(4);
  const headView = new DataView(head.buffer);
  const recv = async (into: Uint8Array): Promise<void> => {
    await take(head, 4);
    const n = headView.getUint32(0, true);
    if (n !== into.byteLength) throw new Error(`node-tcp: a ${n}-byte message where ${into.byteLength} were expected`);
    await take(into, n);
  };
  const send = (data: Uint8Array): Promise<void> => {
    const h = Buffer.allocUnsafe(4);
    h.writeUInt32LE(data.byteLength, 0);
    socket.cork();
    socket.write(h);
    const done = new Promise<void>((r) => socket.write(data, () => r()));
    socket.uncork();
    return done;
  };
  return {
    name: 'node-tcp',
    send,
    recv,
    exchange: async (sends, recvs) => {
      const sent = Promise.all(sends.map(send));
      for (const r of recvs) await recv(r);
      await sent;
    },
    close: () => socket.destroy(),
  };
}
