/**
 * The tcp handshake: who is on the other end, and does it hold the job secret? Wire format and MACs
 * only; the dialer and listener drive it (`dialer.ts`, `listener.ts`).
 *
 * ```
 * listener → dialer   HELLO    version, listener challenge (32 random bytes)
 * dialer → listener   AUTH     dialer rank, listener rank, SHA-256(jobId), dialer challenge,
 *                              HMAC-SHA256(secret, "vmcomm tcp dialer v1" | both challenges | ranks | job)
 * listener → dialer   VERDICT  ACCEPT or LOSE,
 *                              HMAC-SHA256(secret, "vmcomm tcp listener v1" | both challenges | ranks | job | verdict)
 *                or   REFUSE   a reason byte, then the listener closes
 * ```
 *
 * Each side proves the secret by a MAC over a challenge the other side just drew, so the secret never
 * travels and a recorded exchange cannot be replayed. The two labels differ, so a MAC cannot be
 * reflected back at its author. The job id travels as its hash, which keeps every message fixed-size
 * and small: anything longer than {@link MAX_MESSAGE_BYTES} is refused unread.
 *
 * Every message is a little-endian u16 body length, then the body; the body's first byte is its type.
 *
 * @module
 */

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Handshake wire version, in HELLO. */
export const HANDSHAKE_VERSION = 1;
/** Random bytes per challenge. */
export const CHALLENGE_BYTES = 32;
const MAC_BYTES = 32;
const JOB_HASH_BYTES = 32;
/** Bytes of the length prefix before every message body. */
const LENGTH_PREFIX_BYTES = 2;

const HELLO = 1;
const AUTH = 2;
const VERDICT = 3;
const REFUSE = 4;

const HELLO_BODY_BYTES = 1 + 1 + CHALLENGE_BYTES;
const AUTH_BODY_BYTES = 1 + 4 + 4 + JOB_HASH_BYTES + CHALLENGE_BYTES + MAC_BYTES;
const VERDICT_BODY_BYTES = 1 + 1 + MAC_BYTES;
const REFUSE_BODY_BYTES = 1 + 1;
/** The largest handshake message body; anything longer is not a vmcomm peer. */
export const MAX_MESSAGE_BYTES = AUTH_BODY_BYTES;

const DIALER_LABEL = Buffer.from('vmcomm tcp dialer v1\0');
const LISTENER_LABEL = Buffer.from('vmcomm tcp listener v1\0');

/** The listener's answer to an authenticated dialer (see the simultaneous-dial rule in `tcp-transport.ts`). */
export type Verdict = 'accept' | 'lose';
const VERDICT_CODES: Record<Verdict, number> = { accept: 1, lose: 2 };

/** Why a listener refused a dialer. */
export type Refusal = 'malformed' | 'job' | 'rank' | 'auth' | 'stopping';
const REFUSAL_CODES: Record<Refusal, number> = { malformed: 1, job: 2, rank: 3, auth: 4, stopping: 5 };

/** What both ends of one connection know: the job, and who dials whom. */
export interface HandshakeContext {
  readonly secret: Uint8Array;
  /** SHA-256 of the job id ({@link jobHash}). */
  readonly jobHash: Buffer;
  readonly dialerRank: number;
  readonly listenerRank: number;
  readonly listenerChallenge: Uint8Array;
  readonly dialerChallenge: Uint8Array;
}

/** The job id as it travels: its SHA-256. */
export function jobHash(jobId: string): Buffer {
  return createHash('sha256').update(jobId, 'utf8').digest();
}

/** A fresh random challenge. */
export function newChallenge(): Buffer {
  return randomBytes(CHALLENGE_BYTES);
}

// ---------------------------------------------------------------------------------------------------
// Messages

/** HELLO, listener → dialer. */
export function helloMessage(listenerChallenge: Uint8Array): Buffer {
  const m = message(HELLO, HELLO_BODY_BYTES);
  m[3] = HANDSHAKE_VERSION;
  m.set(listenerChallenge, 4);
  return m;
}

/** AUTH, dialer → listener. */
export function authMessage(c: HandshakeContext): Buffer {
  const m = message(AUTH, AUTH_BODY_BYTES);
  let at = 3;
  m.writeUInt32LE(c.dialerRank, at);
  m.writeUInt32LE(c.listenerRank, (at += 4));
  m.set(c.jobHash, (at += 4));
  m.set(c.dialerChallenge, (at += JOB_HASH_BYTES));
  m.set(dialerMac(c), at + CHALLENGE_BYTES);
  return m;
}

/** VERDICT, listener → dialer. */
export function verdictMessage(c: HandshakeContext, verdict: Verdict): Buffer {
  const m = message(VERDICT, VERDICT_BODY_BYTES);
  m[3] = VERDICT_CODES[verdict];
  m.set(listenerMac(c, verdict), 4);
  return m;
}

/** REFUSE, listener → dialer. */
export function refusalMessage(reason: Refusal): Buffer {
  const m = message(REFUSE, REFUSE_BODY_BYTES);
  m[3] = REFUSAL_CODES[reason];
  return m;
}

function message(type: number, bodyBytes: number): Buffer {
  const m = Buffer.alloc(LENGTH_PREFIX_BYTES + bodyBytes);
  m.writeUInt16LE(bodyBytes, 0);
  m[2] = type;
  return m;
}

// ---------------------------------------------------------------------------------------------------
// Checks

/** A parsed HELLO. */
export interface Hello {
  readonly listenerChallenge: Buffer;
}

/** Reads a HELLO body, or returns a sentence saying what is wrong. */
export function parseHello(body: Buffer): Hello | string {
  if (body[0] !== HELLO || body.byteLength !== HELLO_BODY_BYTES) return 'expected a vmcomm tcp HELLO';
  if (body[1] !== HANDSHAKE_VERSION) return `tcp handshake version ${body[1]}, expected ${HANDSHAKE_VERSION}`;
  return { listenerChallenge: Buffer.from(body.subarray(2, 2 + CHALLENGE_BYTES)) };
}

/** What the listener expects of an AUTH. */
export interface AuthExpectation {
  readonly secret: Uint8Array;
  readonly jobHash: Buffer;
  readonly listenerRank: number;
  readonly size: number;
  readonly listenerChallenge: Uint8Array;
}

/** A checked AUTH: the dialer proved the secret. */
export interface AuthenticatedDialer {
  readonly context: HandshakeContext;
}

/** Checks an AUTH body; on failure returns the refusal and a sentence for the log. */
export function checkAuth(
  body: Buffer,
  expect: AuthExpectation,
): AuthenticatedDialer | { readonly refusal: Refusal; readonly why: string } {
  if (body[0] !== AUTH || body.byteLength !== AUTH_BODY_BYTES) {
    return { refusal: 'malformed', why: 'it did not send a vmcomm tcp AUTH message' };
  }
  let at = 1;
  const dialerRank = body.readUInt32LE(at);
  const listenerRank = body.readUInt32LE((at += 4));
  const hash = body.subarray((at += 4), at + JOB_HASH_BYTES);
  const dialerChallenge = Buffer.from(body.subarray((at += JOB_HASH_BYTES), at + CHALLENGE_BYTES));
  const mac = body.subarray((at += CHALLENGE_BYTES), at + MAC_BYTES);
  if (!hash.equals(expect.jobHash)) return { refusal: 'job', why: 'it belongs to another job' };
  if (listenerRank !== expect.listenerRank) {
    return { refusal: 'rank', why: `it meant to reach rank ${listenerRank}, this is rank ${expect.listenerRank}` };
  }
  if (dialerRank >= expect.size || dialerRank === expect.listenerRank) {
    return { refusal: 'rank', why: `it claims rank ${dialerRank}, not a peer in a world of ${expect.size}` };
  }
  const context: HandshakeContext = {
    secret: expect.secret,
    jobHash: expect.jobHash,
    dialerRank,
    listenerRank,
    listenerChallenge: expect.listenerChallenge,
    dialerChallenge,
  };
  if (!timingSafeEqual(mac, dialerMac(context))) {
    return { refusal: 'auth', why: `it claims rank ${dialerRank} but could not prove the job secret` };
  }
  return { context };
}

/** Reads a VERDICT (checking the listener's MAC) or a REFUSE body. */
export function parseAnswer(
  body: Buffer,
  c: HandshakeContext,
): { readonly verdict: Verdict } | { readonly refusal: Refusal | 'unknown' } | string {
  if (body[0] === REFUSE && body.byteLength === REFUSE_BODY_BYTES) {
    const code = body[1];
    const refusal = (Object.keys(REFUSAL_CODES) as Refusal[]).find((r) => REFUSAL_CODES[r] === code);
    return { refusal: refusal ?? 'unknown' };
  }
  if (body[0] !== VERDICT || body.byteLength !== VERDICT_BODY_BYTES) return 'expected a vmcomm tcp VERDICT';
  const verdict = (Object.keys(VERDICT_CODES) as Verdict[]).find((v) => VERDICT_CODES[v] === body[1]);
  if (verdict === undefined) return `unknown tcp verdict ${body[1]}`;
  if (!timingSafeEqual(body.subarray(2, 2 + MAC_BYTES), listenerMac(c, verdict))) {
    return 'the listener could not prove the job secret';
  }
  return { verdict };
}

function dialerMac(c: HandshakeContext): Buffer {
  return createHmac('sha256', c.secret)
    .update(DIALER_LABEL)
    .update(c.listenerChallenge)
    .update(c.dialerChallenge)
    .update(ranks(c.dialerRank, c.listenerRank))
    .update(c.jobHash)
    .digest();
}

function listenerMac(c: HandshakeContext, verdict: Verdict): Buffer {
  return createHmac('sha256', c.secret)
    .update(LISTENER_LABEL)
    .update(c.dialerChallenge)
    .update(c.listenerChallenge)
    .update(ranks(c.listenerRank, c.dialerRank))
    .update(c.jobHash)
    .update(Uint8Array.of(VERDICT_CODES[verdict]))
    .digest();
}

function ranks(first: number, second: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(first, 0);
  b.writeUInt32LE(second, 4);
  return b;
}

// ---------------------------------------------------------------------------------------------------
// Reassembly

/**
 * Collects length-prefixed handshake messages from a byte stream, holding at most one message. A
 * declared length above {@link MAX_MESSAGE_BYTES} (or zero) makes {@link push} return an error
 * sentence, so a stranger cannot make the listener buffer more than that.
 */
export class MessageAssembler {
  private readonly bytes = Buffer.alloc(LENGTH_PREFIX_BYTES + MAX_MESSAGE_BYTES);
  private filled = 0;

  /**
   * Takes bytes from `src[at, end)` until one message is complete. Returns the number of bytes
   * taken; the complete message, if any, is then in {@link message} (valid until the next push).
   */
  push(src: Uint8Array, at: number, end: number): number | string {
    const start = at;
    this.message = undefined;
    while (at < end) {
      const want = this.filled < LENGTH_PREFIX_BYTES ? LENGTH_PREFIX_BYTES : LENGTH_PREFIX_BYTES + this.bodyLength();
      const n = Math.min(want - this.filled, end - at);
      this.bytes.set(src.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === LENGTH_PREFIX_BYTES) {
        const length = this.bodyLength();
        if (length === 0 || length > MAX_MESSAGE_BYTES) return `a handshake message of ${length} bytes`;
      } else if (this.filled === want) {
        this.message = this.bytes.subarray(LENGTH_PREFIX_BYTES, want);
        this.filled = 0;
        break;
      }
    }
    return at - start;
  }

  /** The message completed by the last {@link push}, if any. */
  message: Buffer | undefined = undefined;

  private bodyLength(): number {
    return this.bytes.readUInt16LE(0);
  }
}
