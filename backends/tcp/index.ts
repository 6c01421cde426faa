/**
 * @packageDocumentation
 *
 * The `tcp` transport: ranks that share nothing but a network talk over one authenticated TCP
 * connection per pair. It is the fallback every rank can use (priority 0, role `'network'`).
 *
 * - Each rank listens on the address it published (the one that reached the launcher; never an
 *   address from `os.networkInterfaces()`) and adds `{ host, port }` to its locality card.
 * - A channel opens on first use, from either side; when both dial at once the lower rank's
 *   connection is kept (see `tcp-transport.ts`).
 * - Both ends prove the job secret by HMAC-SHA256 challenge–response; the secret never travels.
 *   A stranger is refused and logged, never mistaken for a peer.
 * - Frames keep their order. Small ones leave in a single write from reused memory; large payloads
 *   are written by reference and read straight into the buffer the core provides.
 *
 * @example
 * Two ranks in one process with hand-made components (the core normally builds all of this):
 *
 * ```ts
 * import { tcp } from './backends/tcp/index.js';
 * import { emptyHeader, encodeHeader } from './lib/protocol.js';
 *
 * let arrived!: () => void;
 * const delivered = new Promise<void>((resolve) => (arrived = resolve));
 * const sink = (rank: number) => ({
 *   begin: (peer: number) => (console.log(`rank ${rank}: frame from rank ${peer}`), new Uint8Array(5)),
 *   commit: () => arrived(),
 *   lost: () => {},
 * });
 * const secret = new Uint8Array(32).fill(7);
 * const [a, b] = [0, 1].map((rank) =>
 *   tcp()({ rank, size: 2, jobId: 'demo', jobSecret: secret, processNonce: `n${rank}`, address: '127.0.0.1', sink: sink(rank) }),
 * );
 * const fields = await Promise.all([a.start(), b.start()]);
 * const card = (rank: number) =>
 *   ({ rank, processNonce: `n${rank}`, hostname: 'h', pid: 0, address: '127.0.0.1', backends: { tcp: fields[rank]! }, priorities: { tcp: 0 } });
 * a.probe(card(1));
 * b.probe(card(0));
 * a.addPeers([1]);
 * b.addPeers([0]);
 *
 * const channel = await a.connect(1);
 * const header = encodeHeader({ ...emptyHeader(), payloadBytes: 5, messageBytes: 5 }, new Uint8Array(48));
 * channel.send(header, new TextEncoder().encode('hello'));
 * await delivered;
 * await Promise.all([a.stop(), b.stop()]);
 * console.log('stopped');
 * ```
 *
 * Output:
 *
 * ```
 * rank 1: frame from rank 0
 * stopped
 * ```
 *
 * @module
 */

import type { BackendComponents, BackendFactory } from '../../lib/backend.js';
import { VmcommError, invalidArgument } from '../../lib/errors.js';
import { FRAME_HEADER_BYTES } from '../../lib/protocol.js';
import { TcpTransport } from './tcp-transport.js';

export { TcpTransport } from './tcp-transport.js';

/** Options of the tcp transport. Every field is optional; units are in the names. */
export interface TcpInit {
  /** Port to listen on; 0 lets the system pick a free one. Default {@link DEFAULT_PORT}. */
  port?: number;
  /** Largest payload sent eagerly, in bytes; larger messages use rendezvous. Default {@link DEFAULT_EAGER_LIMIT_BYTES}. */
  eagerLimitBytes?: number;
  /** Eager messages one sender may have outstanding at one receiver. Default {@link DEFAULT_EAGER_CREDITS}. */
  eagerCredits?: number;
  /**
   * How long, in ms, a connection may take to authenticate: an inbound one is dropped after it, a
   * dial (connect + handshake, or waiting for the peer's dial after a simultaneous-dial LOSE) fails.
   * Default {@link DEFAULT_HANDSHAKE_TIMEOUT_MS}.
   */
  handshakeTimeoutMs?: number;
  /** How long, in ms, `close()` waits for the peer to close its end before destroying the socket. Default {@link DEFAULT_CLOSE_TIMEOUT_MS}. */
  closeTimeoutMs?: number;
  /**
   * Frames up to this many bytes (48-byte header + payload) are copied into one write; larger payloads
   * are written by reference. Default {@link DEFAULT_COALESCE_LIMIT_BYTES}.
   */
  coalesceLimitBytes?: number;
  /** Size in bytes of the buffer inbound reads land in while headers are parsed (one per transport). Default {@link DEFAULT_READ_BUFFER_BYTES}. */
  readBufferBytes?: number;
}

/** {@link TcpInit} with every default applied, as {@link parseTcpInit} returns it. */
export type TcpOptions = Readonly<Required<TcpInit>>;

/** Default {@link TcpInit.port}: any free port. */
export const DEFAULT_PORT = 0;
/** Default {@link TcpInit.eagerLimitBytes}: 64 KiB. */
export const DEFAULT_EAGER_LIMIT_BYTES = 64 * 1024;
/** Default {@link TcpInit.eagerCredits}. */
export const DEFAULT_EAGER_CREDITS = 64;
/** Default {@link TcpInit.handshakeTimeoutMs}: 10 s. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Default {@link TcpInit.closeTimeoutMs}: 5 s. */
export const DEFAULT_CLOSE_TIMEOUT_MS = 5_000;
/** Default {@link TcpInit.coalesceLimitBytes}: 16 KiB. */
export const DEFAULT_COALESCE_LIMIT_BYTES = 16 * 1024;
/** Default {@link TcpInit.readBufferBytes}: 64 KiB, what one socket read returns at most on Linux by default. */
export const DEFAULT_READ_BUFFER_BYTES = 64 * 1024;

/** Longest timer Node accepts (2^31 − 1 ms). */
const MAX_TIMER_MS = 0x7fff_ffff;

/** Per field: the accepted integer range. */
const LIMITS: { readonly [K in keyof TcpInit]-?: readonly [min: number, max: number] } = {
  port: [0, 65_535],
  eagerLimitBytes: [0, 1024 * 1024 * 1024],
  eagerCredits: [1, 65_535],
  handshakeTimeoutMs: [1, MAX_TIMER_MS],
  closeTimeoutMs: [0, MAX_TIMER_MS],
  coalesceLimitBytes: [FRAME_HEADER_BYTES, 1024 * 1024],
  readBufferBytes: [1024, 64 * 1024 * 1024],
};

const DEFAULTS: TcpOptions = {
  port: DEFAULT_PORT,
  eagerLimitBytes: DEFAULT_EAGER_LIMIT_BYTES,
  eagerCredits: DEFAULT_EAGER_CREDITS,
  handshakeTimeoutMs: DEFAULT_HANDSHAKE_TIMEOUT_MS,
  closeTimeoutMs: DEFAULT_CLOSE_TIMEOUT_MS,
  coalesceLimitBytes: DEFAULT_COALESCE_LIMIT_BYTES,
  readBufferBytes: DEFAULT_READ_BUFFER_BYTES,
};

/**
 * Applies defaults and checks every field: each must be an integer in its range, and unknown fields
 * (a typo from JavaScript) are rejected too. Throws `VmcommError('INVALID_ARGUMENT')`.
 */
export function parseTcpInit(init: TcpInit = {}): TcpOptions {
  if (init === null || typeof init !== 'object') throw invalidArgument('tcp init', 'an object', init);
  for (const key of Object.keys(init)) {
    if (!(key in LIMITS)) {
      throw new VmcommError('INVALID_ARGUMENT', `unknown tcp option ${JSON.stringify(key)}; known options: ${Object.keys(LIMITS).join(', ')}`);
    }
  }
  const options: Record<string, number> = { ...DEFAULTS };
  for (const [key, [min, max]] of Object.entries(LIMITS)) {
    const value = (init as Record<string, unknown>)[key];
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      throw invalidArgument(`tcp option ${key}`, `an integer from ${min} to ${max}`, value);
    }
    options[key] = value;
  }
  return options as unknown as TcpOptions;
}

/**
 * The tcp backend factory. Options are checked here, so a bad one fails before any rank starts.
 *
 * @throws `VmcommError('INVALID_ARGUMENT')` for a bad {@link TcpInit}.
 */
export function tcp(init?: TcpInit): BackendFactory {
  const options = parseTcpInit(init);
  return Object.assign((components: BackendComponents) => new TcpTransport(components, options), {
    transportName: 'tcp' as const,
  });
}
