/**
 * The 128-bit ids a region stores, from the strings the rest of vmcomm uses: a job id (any string) and
 * a process nonce (32 hex digits, `lib/world.ts`). Both sides of a pair derive them the same way, so
 * comparing the stored bytes compares the strings.
 *
 * @module
 */

import { createHash } from 'node:crypto';
import { ID_BYTES, idFromHex } from './region-layout.js';

/** The first 16 bytes of SHA-256 of `text` (UTF-8). */
function digest16(text: string): Uint8Array {
  return new Uint8Array(createHash('sha256').update(text, 'utf8').digest().subarray(0, ID_BYTES));
}

/** The job id as stored in slots and ring entries: the first 16 bytes of SHA-256 of the job id string. */
export function jobKey(jobId: string): Uint8Array {
  return digest16(`vmcomm-job:${jobId}`);
}

/** A process nonce as stored in slots: its 16 bytes when it is 32 hex digits, else a SHA-256 digest. */
export function nonceKey(processNonce: string): Uint8Array {
  return /^[0-9a-fA-F]{32}$/.test(processNonce) ? idFromHex(processNonce, 'a process nonce') : digest16(`vmcomm-nonce:${processNonce}`);
}
