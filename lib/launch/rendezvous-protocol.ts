/**
 * The rendezvous wire protocol: what the launcher's {@link RendezvousServer} and each rank's
 * {@link RendezvousClient} say to each other. Pure: encoding, decoding, validation and the
 * authentication proofs; no sockets (those are in `json-line-socket.ts`).
 *
 * ## Framing
 *
 * One JSON object per line (`\n`-terminated UTF-8). A line may be at most {@link MAX_LINE_BYTES}
 * long once a client is authenticated, and {@link MAX_HANDSHAKE_LINE_BYTES} before, so an
 * unauthenticated peer cannot make the launcher buffer much. A longer line is a protocol violation
 * (`CORRUPT`) and closes the connection.
 *
 * ## Handshake (mutual HMAC-SHA256 challenge–response; the secret never travels)
 *
 * ```text
 * server → client  hello    { protocol, challenge: Cs }
 * client → server  auth     { protocol, rank, size, jobId, challenge: Cc,
 *                             proof: HMAC(secret, "vmcomm-rendezvous-client-v1|Cs|rank|jobId") }
 * server → client  welcome  { proof: HMAC(secret, "vmcomm-rendezvous-server-v1|Cc|rank|jobId") }
 *               or refused  { code, message }   (then the server closes the connection)
 * ```
 *
 * Both challenges are {@link CHALLENGE_BYTES} random bytes, so a recorded proof is useless later;
 * the two labels differ, so one side's proof can never be replayed as the other's. The server checks
 * the proof before anything else, so a client without the secret learns nothing about the job.
 *
 * ## After the handshake
 *
 * Client requests ({@link MemberRequest}): `allgather`, `abort`, `finalize`. Server messages
 * ({@link ServerNotice}): `allgather-result`, `allgather-failed`, `abort`, `peer-lost`, `attach`,
 * `finalize-ack`. An *operator* — a tool holding the secret, authenticated as rank
 * {@link OPERATOR_RANK} (`vmcomm ivshmem attach`) — may send one `attach`; the server forwards it to
 * every rank and answers `attach-sent`, then closes. Each message type has one entry in {@link MEMBER_REQUEST_PARSERS} or
 * {@link SERVER_MESSAGE_PARSERS}; a new type (the attach events of a later issue) is one union
 * member, one parser and one handler on each side — the handler tables are typed so that a missing
 * handler is a compile error.
 *
 * @module
 */

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { CardValue } from '../backend.js';
import { VMCOMM_ERROR_CODES, VmcommError, type VmcommErrorCode } from '../errors.js';

/** Bumped on any incompatible change; both ends must speak the same version. */
export const RENDEZVOUS_PROTOCOL_VERSION = 1;
/** Longest line (bytes, newline excluded) accepted from an authenticated peer: 16 MiB. */
export const MAX_LINE_BYTES = 16 * 1024 * 1024;
/** Longest line accepted during the handshake. */
export const MAX_HANDSHAKE_LINE_BYTES = 4096;
/** Random bytes per challenge. */
export const CHALLENGE_BYTES = 32;
/** The shortest job secret accepted (bytes). */
export const MIN_SECRET_BYTES = 16;
/** Longest `jobId` accepted (characters). */
export const MAX_JOB_ID_LENGTH = 256;
/** Longest allgather round name (characters). */
export const MAX_ROUND_LENGTH = 256;
/** The rank an operator tool authenticates as: it holds the secret but is no rank of the job. */
export const OPERATOR_RANK = -1;
/** Longest resource (path) an attach may name (characters). */
export const MAX_RESOURCE_LENGTH = 4096;
/** Longest abort or peer-lost reason kept (characters); longer ones are cut, never refused. */
export const MAX_REASON_LENGTH = 4096;

const CLIENT_LABEL = 'vmcomm-rendezvous-client-v1';
const SERVER_LABEL = 'vmcomm-rendezvous-server-v1';
const HMAC_BYTES = 32;

// ---------------------------------------------------------------------------------------------------
// Messages

/** Server → client, first line: the server's challenge. */
export interface HelloMessage {
  readonly type: 'hello';
  readonly protocol: number;
  /** Hex. */
  readonly challenge: string;
}
/** Client → server: who the client is, its proof and its own challenge. */
export interface AuthMessage {
  readonly type: 'auth';
  readonly protocol: number;
  readonly rank: number;
  readonly size: number;
  readonly jobId: string;
  /** Hex HMAC, see {@link clientProof}. */
  readonly proof: string;
  /** Hex. */
  readonly challenge: string;
}
/** Server → client: accepted; the server's proof over the client's challenge. */
export interface WelcomeMessage {
  readonly type: 'welcome';
  /** Hex HMAC, see {@link serverProof}. */
  readonly proof: string;
}
/** Server → client: not accepted (the server closes the connection after it). */
export interface RefusedMessage {
  readonly type: 'refused';
  readonly code: VmcommErrorCode;
  readonly message: string;
}

/** Member → server: contribute `value` to the allgather named `round`. */
export interface AllgatherRequest {
  readonly type: 'allgather';
  readonly round: string;
  readonly value: CardValue;
}
/** Member → server: end the whole job with `code`. */
export interface AbortRequest {
  readonly type: 'abort';
  readonly code: number;
  readonly reason: string;
}
/** Member → server: this rank finished cleanly; its disconnect is no longer a failure. */
export interface FinalizeRequest {
  readonly type: 'finalize';
}
/** What an authenticated client may send. */
export type MemberRequest = AllgatherRequest | AbortRequest | FinalizeRequest;
/**
 * Operator → server (a tool that authenticated as {@link OPERATOR_RANK}, e.g. `vmcomm ivshmem
 * attach`): offer `resource` to every rank of the running job.
 */
export interface AttachRequest {
  readonly type: 'attach';
  readonly resource: string;
}

/** Server → member: every rank's value for `round`, indexed by rank. */
export interface AllgatherResultNotice {
  readonly type: 'allgather-result';
  readonly round: string;
  readonly values: CardValue[];
}
/** Server → member: `round` can never complete. */
export interface AllgatherFailedNotice {
  readonly type: 'allgather-failed';
  readonly round: string;
  readonly code: VmcommErrorCode;
  readonly message: string;
  /** For `PEER_LOST`: the rank that will never contribute. */
  readonly rank?: number;
}
/** Server → member: rank `fromRank` aborted the job with `code`. */
export interface AbortNotice {
  readonly type: 'abort';
  readonly code: number;
  readonly fromRank: number;
  readonly reason: string;
}
/** Server → member: `rank` ended (or its connection broke) before it finalized. */
export interface PeerLostNotice {
  readonly type: 'peer-lost';
  readonly rank: number;
  readonly reason: string;
}
/** Server → member: an operator offers `resource` (an ivshmem region path) to the running job. */
export interface AttachNotice {
  readonly type: 'attach';
  readonly resource: string;
}
/** Server → operator: the attach went to `ranks` ranks (those joined and not finalized). */
export interface AttachSentNotice {
  readonly type: 'attach-sent';
  readonly ranks: number;
}
/** Server → member: the finalize was recorded; the member may close. */
export interface FinalizeAckNotice {
  readonly type: 'finalize-ack';
}
/** What the server sends an authenticated member. */
export type ServerNotice =
  | AllgatherResultNotice
  | AllgatherFailedNotice
  | AbortNotice
  | PeerLostNotice
  | AttachNotice
  | FinalizeAckNotice;

/** Everything a server may send. */
export type ServerMessage = HelloMessage | WelcomeMessage | RefusedMessage | ServerNotice | AttachSentNotice;
/** Everything a client may send. */
export type ClientMessage = AuthMessage | MemberRequest | AttachRequest;

// ---------------------------------------------------------------------------------------------------
// Encoding

/**
 * One message as a line (JSON and `\n`). Throws `INVALID_ARGUMENT` when it is not JSON data (a
 * bigint, a cycle) or would exceed `maxLineBytes` (the far end would refuse it), naming the message
 * type and the limit.
 */
export function encodeMessage(message: ClientMessage | ServerMessage, maxLineBytes = MAX_LINE_BYTES): string {
  let json: string;
  try {
    json = JSON.stringify(message);
  } catch (error) {
    // A bigint or a cycle in a card value: not JSON, so it cannot travel through the launcher.
    throw new VmcommError('INVALID_ARGUMENT', `a rendezvous '${message.type}' message is not JSON data: ${(error as Error).message}`, { cause: error });
  }
  const bytes = Buffer.byteLength(json, 'utf8');
  if (bytes > maxLineBytes) {
    throw new VmcommError(
      'INVALID_ARGUMENT',
      `a rendezvous '${message.type}' message would be ${bytes} bytes, over the ${maxLineBytes}-byte limit ` +
        `of the launcher protocol; publish less data through the launcher`,
    );
  }
  return json + '\n';
}

/**
 * Splits a byte stream into lines, refusing any line longer than {@link LineDecoder.maxLineBytes}.
 * Chunks are kept as a list until a newline arrives, so a long line costs one copy, not one per chunk.
 */
export class LineDecoder {
  /** The current limit (bytes, newline excluded). May be raised after the handshake. */
  maxLineBytes: number;
  private parts: Buffer[] = [];
  private partBytes = 0;

  constructor(maxLineBytes: number) {
    this.maxLineBytes = maxLineBytes;
  }

  /** Feeds one chunk; returns the complete lines it finished (UTF-8 decoded, without `\n`). */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(0x0a, start);
      if (newline === -1) break;
      const piece = chunk.subarray(start, newline);
      this.check(this.partBytes + piece.length);
      if (this.parts.length === 0) {
        lines.push(piece.toString('utf8'));
      } else {
        this.parts.push(piece);
        lines.push(Buffer.concat(this.parts, this.partBytes + piece.length).toString('utf8'));
        this.parts = [];
        this.partBytes = 0;
      }
      start = newline + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      this.check(this.partBytes + rest.length);
      this.parts.push(rest);
      this.partBytes += rest.length;
    }
    return lines;
  }

  /** Bytes of an unfinished line held. */
  get pendingBytes(): number {
    return this.partBytes;
  }

  private check(bytes: number): void {
    if (bytes > this.maxLineBytes) {
      throw new VmcommError(
        'CORRUPT',
        `a rendezvous message exceeded ${this.maxLineBytes} bytes without a line end; the connection was closed`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Decoding and validation

type Fields = { readonly [key: string]: unknown };
type Parser<M> = (fields: Fields) => M;

function corrupt(message: string): VmcommError {
  return new VmcommError('CORRUPT', `invalid rendezvous message: ${message}`);
}

function field(o: Fields, type: string, key: string): unknown {
  if (!Object.prototype.hasOwnProperty.call(o, key)) throw corrupt(`'${type}' lacks '${key}'`);
  return o[key];
}

function intField(o: Fields, type: string, key: string, min: number, max: number): number {
  const v = field(o, type, key);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw corrupt(`'${type}'.${key} must be an integer in ${min}…${max}`);
  }
  return v;
}

function stringField(o: Fields, type: string, key: string, maxLength: number, minLength = 0): string {
  const v = field(o, type, key);
  if (typeof v !== 'string' || v.length > maxLength || v.length < minLength) {
    throw corrupt(`'${type}'.${key} must be a string of ${minLength}…${maxLength} characters`);
  }
  return v;
}

function hexField(o: Fields, type: string, key: string, bytes: number): string {
  const v = field(o, type, key);
  if (typeof v !== 'string' || v.length !== bytes * 2 || !/^[0-9a-f]*$/.test(v)) {
    throw corrupt(`'${type}'.${key} must be ${bytes} bytes of lowercase hex`);
  }
  return v;
}

function codeField(o: Fields, type: string, key: string): VmcommErrorCode {
  const v = field(o, type, key);
  if (typeof v !== 'string' || !(VMCOMM_ERROR_CODES as readonly string[]).includes(v)) {
    throw corrupt(`'${type}'.${key} must be a vmcomm error code`);
  }
  return v as VmcommErrorCode;
}

/** A rank fits in 32 bits; the bound keeps hostile numbers out of array indexing. */
const MAX_RANK = 0x7fffffff;
/** `abort` codes travel as the process exit status the launcher uses (after reduction to 0…255). */
const MAX_CODE = 0x7fffffff;

/** Validators of everything a client may send, by type. */
export const CLIENT_MESSAGE_PARSERS: { readonly [T in ClientMessage['type']]: Parser<Extract<ClientMessage, { type: T }>> } = {
  auth: (o) => ({
    type: 'auth',
    protocol: intField(o, 'auth', 'protocol', 0, MAX_RANK),
    rank: intField(o, 'auth', 'rank', OPERATOR_RANK, MAX_RANK),
    size: intField(o, 'auth', 'size', 1, MAX_RANK),
    jobId: stringField(o, 'auth', 'jobId', MAX_JOB_ID_LENGTH, 1),
    proof: hexField(o, 'auth', 'proof', HMAC_BYTES),
    challenge: hexField(o, 'auth', 'challenge', CHALLENGE_BYTES),
  }),
  allgather: (o) => ({
    type: 'allgather',
    round: stringField(o, 'allgather', 'round', MAX_ROUND_LENGTH, 1),
    // Any JSON value is a CardValue; JSON.parse produced it, so there is nothing else to check.
    value: field(o, 'allgather', 'value') as CardValue,
  }),
  abort: (o) => ({
    type: 'abort',
    code: intField(o, 'abort', 'code', -MAX_CODE, MAX_CODE),
    reason: stringField(o, 'abort', 'reason', MAX_REASON_LENGTH),
  }),
  finalize: () => ({ type: 'finalize' }),
  attach: (o) => ({ type: 'attach', resource: stringField(o, 'attach', 'resource', MAX_RESOURCE_LENGTH, 1) }),
};

/** What an operator may send once authenticated. */
export const OPERATOR_REQUEST_PARSERS = { attach: CLIENT_MESSAGE_PARSERS.attach } as const;

/** The subset a client may send once authenticated (an `auth` after the handshake is a violation). */
export const MEMBER_REQUEST_PARSERS: { readonly [T in MemberRequest['type']]: Parser<Extract<MemberRequest, { type: T }>> } = {
  allgather: CLIENT_MESSAGE_PARSERS.allgather,
  abort: CLIENT_MESSAGE_PARSERS.abort,
  finalize: CLIENT_MESSAGE_PARSERS.finalize,
};

/** Validators of everything a server may send, by type. */
export const SERVER_MESSAGE_PARSERS: { readonly [T in ServerMessage['type']]: Parser<Extract<ServerMessage, { type: T }>> } = {
  hello: (o) => ({
    type: 'hello',
    protocol: intField(o, 'hello', 'protocol', 0, MAX_RANK),
    challenge: hexField(o, 'hello', 'challenge', CHALLENGE_BYTES),
  }),
  welcome: (o) => ({ type: 'welcome', proof: hexField(o, 'welcome', 'proof', HMAC_BYTES) }),
  refused: (o) => ({
    type: 'refused',
    code: codeField(o, 'refused', 'code'),
    message: stringField(o, 'refused', 'message', MAX_REASON_LENGTH),
  }),
  'allgather-result': (o) => {
    const values = field(o, 'allgather-result', 'values');
    if (!Array.isArray(values)) throw corrupt(`'allgather-result'.values must be an array`);
    return {
      type: 'allgather-result',
      round: stringField(o, 'allgather-result', 'round', MAX_ROUND_LENGTH, 1),
      values: values as CardValue[],
    };
  },
  'allgather-failed': (o) => {
    const failed: AllgatherFailedNotice = {
      type: 'allgather-failed',
      round: stringField(o, 'allgather-failed', 'round', MAX_ROUND_LENGTH, 1),
      code: codeField(o, 'allgather-failed', 'code'),
      message: stringField(o, 'allgather-failed', 'message', MAX_REASON_LENGTH),
    };
    return o.rank === undefined ? failed : { ...failed, rank: intField(o, 'allgather-failed', 'rank', 0, MAX_RANK) };
  },
  abort: (o) => ({
    type: 'abort',
    code: intField(o, 'abort', 'code', -MAX_CODE, MAX_CODE),
    fromRank: intField(o, 'abort', 'fromRank', -1, MAX_RANK),
    reason: stringField(o, 'abort', 'reason', MAX_REASON_LENGTH),
  }),
  'peer-lost': (o) => ({
    type: 'peer-lost',
    rank: intField(o, 'peer-lost', 'rank', 0, MAX_RANK),
    reason: stringField(o, 'peer-lost', 'reason', MAX_REASON_LENGTH),
  }),
  attach: (o) => ({ type: 'attach', resource: stringField(o, 'attach', 'resource', MAX_RESOURCE_LENGTH, 1) }),
  'attach-sent': (o) => ({ type: 'attach-sent', ranks: intField(o, 'attach-sent', 'ranks', 0, MAX_RANK) }),
  'finalize-ack': () => ({ type: 'finalize-ack' }),
};

/**
 * Parses one line with the given parser table. Throws `CORRUPT` for anything else: not JSON, not an
 * object, an unknown `type` (for `parsers`), or a field of the wrong shape.
 */
export function decodeMessage<M extends { type: string }>(
  line: string,
  parsers: { readonly [T in M['type']]: Parser<Extract<M, { type: T }>> },
): M {
  let parsed: unknown;
  try {
    parsed = JSON.parse(line);
  } catch {
    throw corrupt('not JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw corrupt('not a JSON object');
  const type = (parsed as Fields).type;
  if (typeof type !== 'string' || !Object.prototype.hasOwnProperty.call(parsers, type)) {
    throw corrupt(`unexpected message type ${JSON.stringify(type)}`);
  }
  const parse = (parsers as unknown as { [type: string]: Parser<M> })[type];
  return parse(parsed as Fields);
}

// ---------------------------------------------------------------------------------------------------
// Authentication

/** A fresh random challenge (hex). */
export function newChallenge(): string {
  return randomBytes(CHALLENGE_BYTES).toString('hex');
}

function proof(label: string, secret: Uint8Array, challenge: string, rank: number, jobId: string): string {
  // Every part but the last has a fixed alphabet without '|', so the joined input is unambiguous.
  return createHmac('sha256', secret).update(`${label}|${challenge}|${rank}|${jobId}`, 'utf8').digest('hex');
}

/** The client's proof: HMAC over the server's challenge, the claimed rank and job id. */
export function clientProof(secret: Uint8Array, serverChallenge: string, rank: number, jobId: string): string {
  return proof(CLIENT_LABEL, secret, serverChallenge, rank, jobId);
}

/** The server's proof: HMAC over the client's challenge, the rank it accepted and the job id. */
export function serverProof(secret: Uint8Array, clientChallenge: string, rank: number, jobId: string): string {
  return proof(SERVER_LABEL, secret, clientChallenge, rank, jobId);
}

/** Compares two hex proofs in constant time (for equal lengths; lengths are not secret). */
export function proofsEqual(expected: string, received: string): boolean {
  const a = Buffer.from(expected, 'hex');
  const b = Buffer.from(received, 'hex');
  return a.length === HMAC_BYTES && a.length === b.length && timingSafeEqual(a, b);
}

/** Cuts a reason to {@link MAX_REASON_LENGTH} characters (a reason is never a reason to refuse). */
export function clipReason(reason: string): string {
  return reason.length <= MAX_REASON_LENGTH ? reason : reason.slice(0, MAX_REASON_LENGTH - 1) + '…';
}
