/**
 * Test fixtures for the tcp transport: recording sinks, hand-made components and cards, and a world of
 * transports in one process. Waits are event-driven (no sleeps, no timed assertions).
 */

import { randomBytes } from 'node:crypto';
import net from 'node:net';
import type { Channel, FrameSink, LocalityCard, Logger, Transport } from '../../../lib/backend.js';
import { FrameKind, decodeHeader, emptyHeader, encodeHeader, frameLength, type FrameHeader } from '../../../lib/protocol.js';
import { tcp, type TcpInit } from '../index.js';

/** One frame as the sink saw it. */
export interface Received {
  readonly peer: number;
  readonly header: FrameHeader;
  /** The target `begin` returned (the sink's own memory), or undefined when discarded. */
  readonly target: Uint8Array | undefined;
}

/**
 * A sink that validates headers as the core does (`decodeHeader` throws `CORRUPT`), gives each frame a
 * fresh target of the announced length unless {@link targetFor} says otherwise, and records everything.
 */
export class RecordingSink implements FrameSink {
  readonly frames: Received[] = [];
  readonly losses: { peer: number; error: Error }[] = [];
  /** Override where payloads go; `undefined` discards. */
  targetFor: ((peer: number, header: FrameHeader, length: number) => Uint8Array | undefined) | undefined;
  private readonly open = new Map<number, { header: FrameHeader; target: Uint8Array | undefined }>();
  private readonly waiters = new Set<() => boolean>();
  /** Protocol violations seen (begin while a frame is open, commit without begin). */
  readonly violations: string[] = [];

  begin(peer: number, header: Uint8Array): Uint8Array | undefined {
    if (this.open.has(peer)) this.violations.push(`begin while a frame from ${peer} is open`);
    if (header.byteLength !== 48) this.violations.push(`header of ${header.byteLength} bytes`);
    const h = decodeHeader(header, emptyHeader());
    const length = frameLength(header);
    const target = this.targetFor ? this.targetFor(peer, h, length) : new Uint8Array(length);
    this.open.set(peer, { header: h, target });
    return target;
  }

  commit(peer: number): void {
    const f = this.open.get(peer);
    if (f === undefined) {
      this.violations.push(`commit without begin from ${peer}`);
      return;
    }
    this.open.delete(peer);
    this.frames.push({ peer, header: f.header, target: f.target });
    this.notify();
  }

  lost(peer: number, error: Error): void {
    this.open.delete(peer);
    this.losses.push({ peer, error });
    this.notify();
  }

  /** Frames received from `peer`. */
  from(peer: number): Received[] {
    return this.frames.filter((f) => f.peer === peer);
  }

  /** Resolves once `predicate()` holds (checked now and after every sink event). */
  until(predicate: () => boolean): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = (): boolean => {
        if (!predicate()) return false;
        this.waiters.delete(check);
        resolve();
        return true;
      };
      this.waiters.add(check);
    });
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }
}

/** A logger that keeps what it is told. */
export class RecordingLogger implements Logger {
  readonly warnings: string[] = [];
  readonly debugs: string[] = [];
  warn(message: string): void {
    this.warnings.push(message);
  }
  debug(message: string): void {
    this.debugs.push(message);
  }
}

/** The core reuses one header buffer; so do the tests, to prove the transport copies it. */
const sharedHeader = new Uint8Array(48);

/** Encodes an EAGER header for `length` payload bytes into the shared buffer. */
export function header(length: number, tag = 0, seq = 0): Uint8Array {
  return encodeHeader({ ...emptyHeader(), kind: FrameKind.EAGER, tag, seq, payloadBytes: length, messageBytes: length }, sharedHeader);
}

/** Sends one frame; resolves on `done()`, rejects on `done(error)`. Scribbles over the header afterwards. */
export function send(channel: Channel, payload: Uint8Array | undefined, tag = 0, seq = 0): Promise<void> {
  return new Promise((resolve, reject) => {
    channel.send(header(payload?.byteLength ?? 0, tag, seq), payload, (err) => (err ? reject(err) : resolve()));
    sharedHeader.fill(0xee); // the transport must have copied it already
  });
}

/** Bytes with a pattern that depends on `seed`, so misplaced or stale data shows. */
export function pattern(length: number, seed = 1): Uint8Array {
  const b = new Uint8Array(length);
  let x = seed * 2654435761;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/**
 * Byte equality as a boolean: a failed `toEqual` on megabytes makes vitest compute a diff for minutes,
 * so big buffers are compared here and asserted with `toBe(true)`.
 */
export function same(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return a !== undefined && a.byteLength === b.byteLength && Buffer.compare(a, b) === 0;
}

/** A hand-made world of tcp transports over loopback. */
export interface World {
  readonly transports: Transport[];
  readonly sinks: RecordingSink[];
  readonly loggers: RecordingLogger[];
  readonly cards: LocalityCard[];
  readonly secret: Uint8Array;
  readonly jobId: string;
}

const made: Transport[] = [];

/** Stops every transport the helpers built (call from afterEach). */
export async function stopAll(): Promise<void> {
  const all = made.splice(0);
  await Promise.all(all.map((t) => t.stop()));
}

/** Builds one transport with hand-made components; remembered for {@link stopAll}. */
export function makeTransport(
  rank: number,
  size: number,
  o: { secret: Uint8Array; jobId: string; sink?: RecordingSink; logger?: RecordingLogger; init?: TcpInit },
): { transport: Transport; sink: RecordingSink; logger: RecordingLogger } {
  const sink = o.sink ?? new RecordingSink();
  const logger = o.logger ?? new RecordingLogger();
  const transport = tcp(o.init)({
    rank,
    size,
    jobId: o.jobId,
    jobSecret: o.secret,
    processNonce: `nonce-${rank}`,
    address: '127.0.0.1',
    sink,
    logger,
  });
  made.push(transport);
  return { transport, sink, logger };
}

/** The card a rank publishes, given its tcp fields. */
export function cardOf(rank: number, fields: Record<string, unknown> | undefined): LocalityCard {
  return {
    rank,
    processNonce: `nonce-${rank}`,
    hostname: 'test',
    pid: 0,
    address: '127.0.0.1',
    backends: fields === undefined ? {} : { tcp: fields as never },
    priorities: fields === undefined ? {} : { tcp: 0 },
  };
}

/**
 * `size` transports, started, every card probed by every rank, every other rank added. Pass
 * `addPeers: false` to leave out phase 3.
 */
export async function makeWorld(size: number, o: { init?: TcpInit; addPeers?: boolean } = {}): Promise<World> {
  const secret = randomBytes(32);
  const jobId = `job-${randomBytes(4).toString('hex')}`;
  const built = Array.from({ length: size }, (_, rank) => makeTransport(rank, size, { secret, jobId, init: o.init }));
  const fields = await Promise.all(built.map((b) => b.transport.start()));
  const cards = fields.map((f, rank) => cardOf(rank, f));
  for (const b of built) {
    for (const card of cards) b.transport.probe(card);
  }
  if (o.addPeers !== false) {
    built.forEach((b, rank) => b.transport.addPeers(cards.map((c) => c.rank).filter((r) => r !== rank)));
  }
  return {
    transports: built.map((b) => b.transport),
    sinks: built.map((b) => b.sink),
    loggers: built.map((b) => b.logger),
    cards,
    secret,
    jobId,
  };
}

/** A promise's outcome, without throwing. */
export async function settle<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: Error }> {
  try {
    return { ok: true, value: await p };
  } catch (error) {
    return { ok: false, error: error as Error };
  }
}

/**
 * A TCP relay to `127.0.0.1:port` that holds every connection until {@link GatedProxy.open}: lets a
 * test freeze one rank's dial mid-way and so force an interleaving of a simultaneous dial.
 */
export interface GatedProxy {
  readonly port: number;
  /** Connections accepted so far. */
  readonly accepted: () => number;
  open(): void;
  close(): Promise<void>;
}

export async function gatedProxy(port: number): Promise<GatedProxy> {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    accepted++;
    sockets.add(client);
    client.on('error', () => client.destroy());
    void gate.then(() => {
      if (client.destroyed) return;
      const upstream = net.connect({ host: '127.0.0.1', port });
      sockets.add(upstream);
      upstream.on('error', () => client.destroy());
      upstream.on('close', () => client.destroy());
      client.on('close', () => upstream.destroy());
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    open: release,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Resolves once `predicate()` holds, checking after each turn of the event loop (no timers). */
export async function waitFor(predicate: () => boolean): Promise<void> {
  while (!predicate()) await new Promise<void>((resolve) => setImmediate(resolve));
}
