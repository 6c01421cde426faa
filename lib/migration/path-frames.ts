/**
 * PATH frames: what two ranks say to each other about the path of their pair (DESIGN section 2,
 * `transportOf`, `stats().switches`, the `'transport'` event). A PATH frame is a frame of kind
 * `FrameKind.PATH`; its `aux` is the {@link PathStep}, `seq` the outbound epoch a marker opens, and
 * its small JSON body names the transport and, for the negotiation, the sender's current card fields
 * of that transport.
 *
 * - `SWITCH` (the marker): "what I send you next comes through `to`". It is the last frame of an
 *   epoch on the old channel, or — flagged {@link PATH_EMPTY} — the first on the new one when
 *   nothing was sent in the epoch it ends.
 * - `NUDGE`, `OFFER`, `ACCEPT`, `CONFIRM`, `REJECT`: the negotiation that moves a pair *up* to a
 *   transport that became usable (a region restored or attached): both ends must prove it, as at
 *   start-up (DESIGN section 4), before either moves.
 *
 * @module
 */

import type { CardFields } from '../backend.js';
import { VmcommError } from '../errors.js';
import { emptyHeader, encodeHeader, FRAME_HEADER_BYTES, FrameKind, type FrameHeader } from '../protocol.js';

/** What a PATH frame says (its header's `aux`). */
export const PathStep = {
  SWITCH: 1,
  /** The higher rank's transport became usable: the lower rank, which leads, should offer. */
  NUDGE: 2,
  /** The lower rank proposes a transport, with its card fields for it. */
  OFFER: 3,
  /** The higher rank proved the offer, reserved its side, and answers with its own fields. */
  ACCEPT: 4,
  /** The lower rank proved the answer and moved; the higher rank moves too. */
  CONFIRM: 5,
  /** Either end cannot (or no longer wants to): both undo what they reserved. */
  REJECT: 6,
} as const;
/** One of {@link PathStep}'s values. */
export type PathStep = (typeof PathStep)[keyof typeof PathStep];

/** Header flag of a `SWITCH` marker sent on the new channel: nothing was sent in the epoch it ends. */
export const PATH_EMPTY = 1;
/** The longest PATH body accepted (bytes): card fields are small. */
export const MAX_PATH_BODY_BYTES = 64 * 1024;

/** The body of a PATH frame. */
export interface PathBody {
  /** The transport the step is about. */
  readonly to: string;
  /** OFFER and ACCEPT: the sender's card fields of that transport now. */
  readonly card?: CardFields;
  /** REJECT: why (for logs). */
  readonly why?: string;
}

/** A decoded PATH frame. */
export interface PathFrame {
  readonly step: PathStep;
  readonly epoch: number;
  readonly empty: boolean;
  readonly body: PathBody;
}

/** Encodes a PATH frame; the header is a fresh buffer (the caller may keep it). */
export function encodePath(step: PathStep, epoch: number, body: PathBody, empty = false): { header: Uint8Array; payload: Uint8Array } {
  const payload = new TextEncoder().encode(JSON.stringify(body));
  if (payload.byteLength > MAX_PATH_BODY_BYTES) throw new VmcommError('INVALID_ARGUMENT', `a PATH frame body of ${payload.byteLength} bytes is over the ${MAX_PATH_BODY_BYTES}-byte limit (card fields too large)`);
  const h: FrameHeader = emptyHeader();
  h.kind = FrameKind.PATH;
  h.flags = empty ? PATH_EMPTY : 0;
  h.seq = epoch;
  h.aux = step;
  h.payloadBytes = payload.byteLength;
  h.messageBytes = payload.byteLength;
  return { header: encodeHeader(h, new Uint8Array(FRAME_HEADER_BYTES)), payload };
}

/** Decodes a PATH frame from its header and body; `CORRUPT` for anything malformed. */
export function decodePath(peer: number, h: FrameHeader, body: Uint8Array | undefined): PathFrame {
  const step = h.aux;
  if (step < PathStep.SWITCH || step > PathStep.REJECT) throw corruptPath(peer, `an unknown step ${step}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(body ?? new Uint8Array(0)));
  } catch {
    throw corruptPath(peer, 'a body that is not JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw corruptPath(peer, 'a body that is not an object');
  const { to, card, why } = parsed as Record<string, unknown>;
  if (typeof to !== 'string' || to === '' || to.length > 256) throw corruptPath(peer, 'no transport name');
  if (card !== undefined && (card === null || typeof card !== 'object' || Array.isArray(card))) throw corruptPath(peer, 'card fields that are not an object');
  return {
    step: step as PathStep,
    epoch: h.seq,
    empty: (h.flags & PATH_EMPTY) !== 0,
    body: { to, ...(card === undefined ? {} : { card: card as CardFields }), ...(typeof why === 'string' ? { why: why.slice(0, 1024) } : {}) },
  };
}

function corruptPath(peer: number, what: string): VmcommError {
  return new VmcommError('CORRUPT', `rank ${peer} sent a PATH frame with ${what}`, { peer });
}
