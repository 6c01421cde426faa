/**
 * Card values through a PMI key/value space, whose values are short (Hydra: 1023 characters, longer
 * ones silently cut) and may contain no spaces (PMI-1) or `;` (PMI-2).
 *
 * ## Encoding
 *
 * A value is JSON (cards are JSON data: `CardValue`), as UTF-8, in base64url without padding
 * (`A–Z a–z 0–9 - _`: safe on both wires), split into chunks. Chunk 0 starts with a header
 * `<chunks>.<characters>.` so a reader knows how many keys to fetch and can tell a cut or missing
 * chunk (`CORRUPT`) from a whole value.
 *
 * ## Keys
 *
 * `vmcomm-<round id>-<rank>-<chunk>`. The round id is `n<round>` for a short name of letters, digits
 * and `_` (readable in a PMI trace), else `h` + 15 hex digits of SHA-256(round) — either way short
 * enough for PMI's 64-character keys and the same on every rank without talking. Rounds are used once
 * each, so no key is ever put twice.
 *
 * @module
 */

import { createHash } from 'node:crypto';
import type { CardValue } from '../../backend.js';
import { VmcommError } from '../../errors.js';

/** Room kept in chunk 0 for its header (`<chunks>.<characters>.`). */
export const CHUNK_HEADER_ROOM = 32;
/** The smallest value length a server must keep for cards to travel at all. */
export const MIN_CHUNK_CHARS = 2 * CHUNK_HEADER_ROOM;
/** The longest encoded card accepted from another rank (a guard against a corrupt header). */
export const MAX_CARD_CHARS = 64 * 1024 * 1024;
/** The longest key this module makes: `vmcomm-` + 16 + `-` + 10 + `-` + 7. */
export const MAX_CARD_KEY_LENGTH = 42;

const BASE64URL = /^[A-Za-z0-9_-]*$/;

/** The id a round's keys use (see the module comment). */
export function roundId(round: string): string {
  return /^[A-Za-z0-9_]{1,15}$/.test(round) ? `n${round}` : `h${createHash('sha256').update(round, 'utf8').digest('hex').slice(0, 15)}`;
}

/** The key of chunk `index` of `rank`'s value in the round with id `id`. */
export function chunkKey(id: string, rank: number, index: number): string {
  return `vmcomm-${id}-${rank}-${index}`;
}

/**
 * Encodes `value` into chunks of at most `chunkChars` characters. Throws `INVALID_ARGUMENT` when
 * `value` is not JSON data, or `chunkChars` is below {@link MIN_CHUNK_CHARS}.
 */
export function encodeCard(value: CardValue, chunkChars: number): string[] {
  if (!Number.isSafeInteger(chunkChars) || chunkChars < MIN_CHUNK_CHARS) {
    throw new VmcommError('INVALID_ARGUMENT', `PMI values must hold at least ${MIN_CHUNK_CHARS} characters to carry cards, this process manager keeps ${chunkChars}`);
  }
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (cause) {
    throw new VmcommError('INVALID_ARGUMENT', `a card value must be JSON data (${(cause as Error).message})`, { cause });
  }
  if (json === undefined) throw new VmcommError('INVALID_ARGUMENT', `a card value must be JSON data, got ${typeof value}`);
  const data = Buffer.from(json, 'utf8').toString('base64url');
  const first = chunkChars - CHUNK_HEADER_ROOM;
  const count = data.length <= first ? 1 : 1 + Math.ceil((data.length - first) / chunkChars);
  const chunks = [`${count}.${data.length}.${data.slice(0, first)}`];
  for (let at = first; at < data.length; at += chunkChars) chunks.push(data.slice(at, at + chunkChars));
  return chunks;
}

/** What chunk 0's header says: how many chunks, how many characters in all, and chunk 0's data. */
export interface CardHeader {
  readonly chunks: number;
  readonly characters: number;
  readonly data: string;
}

/** Reads chunk 0's header. Throws `CORRUPT` (naming `whose`, e.g. "rank 3's value in round 'cards'"). */
export function parseCardHeader(chunk0: string, whose: string): CardHeader {
  const match = /^(\d{1,7})\.(\d{1,9})\.(.*)$/s.exec(chunk0);
  const chunks = match ? Number(match[1]) : Number.NaN;
  const characters = match ? Number(match[2]) : Number.NaN;
  if (!match || chunks < 1 || characters > MAX_CARD_CHARS || !BASE64URL.test(match[3]!)) {
    throw new VmcommError('CORRUPT', `${whose} in the PMI key/value space is not a vmcomm value (${JSON.stringify(chunk0.slice(0, 40))}…)`);
  }
  return { chunks, characters, data: match[3]! };
}

/**
 * Joins chunk 0's data and chunks 1… and decodes the value. Throws `CORRUPT` when the length does
 * not match the header (a chunk was cut or is missing) or the data is not base64url JSON.
 */
export function decodeCard(header: CardHeader, rest: readonly string[], whose: string): CardValue {
  const data = header.data + rest.join('');
  if (rest.length !== header.chunks - 1 || data.length !== header.characters || !BASE64URL.test(data)) {
    throw new VmcommError(
      'CORRUPT',
      `${whose} arrived with ${data.length} of ${header.characters} characters in ${rest.length + 1} of ${header.chunks} chunks; ` +
        `the PMI process manager cut or lost part of it`,
    );
  }
  try {
    return JSON.parse(Buffer.from(data, 'base64url').toString('utf8')) as CardValue;
  } catch (cause) {
    throw new VmcommError('CORRUPT', `${whose} is not valid JSON after decoding (${(cause as Error).message})`, { cause });
  }
}
