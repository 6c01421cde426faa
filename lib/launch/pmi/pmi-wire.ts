/**
 * The two PMI wire formats, as pure functions and byte-stream decoders (no I/O):
 *
 * - **PMI-1** (MPICH's "simple" PMI, what Hydra speaks on `PMI_FD`): one command per line,
 *   space-separated `key=value` tokens, the first being `cmd=…` — `cmd=put kvsname=k key=a value=b\n`.
 *   Values may not contain spaces (newer MPICH escapes them with `\`; we never send any and accept
 *   escapes in replies).
 * - **PMI-2** (Slurm's `--mpi=pmi2`, also served by Hydra): a 6-character decimal length, space
 *   padded (Slurm and MPICH's client write `"%-6d"`, Hydra's replies `"%6d"`), then that many bytes of
 *   `cmd=…;key=value;…;`. Values may not contain `;` (Slurm does not unescape).
 *
 * A PMI-2 conversation begins with one PMI-1 line (`cmd=init pmi_version=2 pmi_subversion=0`), so a
 * decoder switches format between messages ({@link PmiDecoder.format}).
 *
 * Malformed input from the process manager is a `CORRUPT` {@link VmcommError}; a value this side
 * cannot put on the wire is `INVALID_ARGUMENT`.
 *
 * @module
 */

import { VmcommError } from '../../errors.js';

/** One command or reply: its `cmd` and its other attributes. */
export interface PmiMessage {
  readonly cmd: string;
  readonly attrs: ReadonlyMap<string, string>;
}

/** Which framing a message uses. */
export type PmiWire = 1 | 2;

/** Longest message accepted from the process manager (a reply carries at most one value of ~1 KiB). */
export const MAX_PMI_MESSAGE_BYTES = 64 * 1024;

/** Keys and `cmd` names: what every PMI server accepts. */
const TOKEN_KEY = /^[A-Za-z0-9_.-]+$/;

/** A PMI-1 command line (with its newline). Throws `INVALID_ARGUMENT` for what PMI-1 cannot carry. */
export function formatPmi1(cmd: string, attrs: readonly (readonly [string, string])[] = []): string {
  checkKey(cmd, 'cmd');
  let line = `cmd=${cmd}`;
  for (const [key, value] of attrs) {
    checkKey(key, 'key');
    if (/[\s\\]/.test(value)) throw new VmcommError('INVALID_ARGUMENT', `PMI-1 value for ${key} must not contain white space or backslashes, got ${JSON.stringify(value)}`);
    line += ` ${key}=${value}`;
  }
  return `${line}\n`;
}

/** A PMI-2 command with its length prefix. Throws `INVALID_ARGUMENT` for what PMI-2 cannot carry. */
export function formatPmi2(cmd: string, attrs: readonly (readonly [string, string])[] = []): string {
  checkKey(cmd, 'cmd');
  let body = `cmd=${cmd};`;
  for (const [key, value] of attrs) {
    checkKey(key, 'key');
    if (/[;\n\0]/.test(value)) throw new VmcommError('INVALID_ARGUMENT', `PMI-2 value for ${key} must not contain ';', newlines or NUL, got ${JSON.stringify(value)}`);
    body += `${key}=${value};`;
  }
  const length = Buffer.byteLength(body, 'utf8');
  if (length > 999_999) throw new VmcommError('INVALID_ARGUMENT', `a PMI-2 command is at most 999999 bytes, this one is ${length}`);
  return String(length).padEnd(6, ' ') + body;
}

/** Parses one PMI-1 line (without its newline). Throws `CORRUPT`. */
export function parsePmi1(line: string): PmiMessage {
  const tokens = splitUnescaped(line.replace(/\r$/, ''));
  const attrs = new Map<string, string>();
  for (const token of tokens) {
    const eq = token.indexOf('=');
    if (eq <= 0) throw corrupt(`PMI-1 token ${JSON.stringify(token)} is not key=value`, line);
    attrs.set(token.slice(0, eq), token.slice(eq + 1));
  }
  return withCmd(attrs, line, tokens[0]?.startsWith('cmd=') === true);
}

/** Parses one PMI-2 body (after its length prefix). Throws `CORRUPT`. */
export function parsePmi2(body: string): PmiMessage {
  if (!body.startsWith('cmd=')) throw corrupt('a PMI-2 message must begin with cmd=', body);
  const attrs = new Map<string, string>();
  for (const part of body.split(';')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw corrupt(`PMI-2 field ${JSON.stringify(part)} is not key=value`, body);
    attrs.set(part.slice(0, eq), part.slice(eq + 1));
  }
  return withCmd(attrs, body, true);
}

/**
 * Splits a byte stream from the process manager into messages, in whichever {@link format} is
 * current. Keeps incomplete input until the rest arrives; bytes left over when the format changes
 * are parsed in the new format.
 */
export class PmiDecoder {
  /** The framing of the next message. */
  format: PmiWire = 1;
  private pending: Buffer = Buffer.alloc(0);

  /** Adds bytes; returns every complete message, in order. Throws `CORRUPT`. */
  push(chunk: Buffer): PmiMessage[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: PmiMessage[] = [];
    for (;;) {
      const message = this.next();
      if (message === undefined) break;
      out.push(message);
    }
    return out;
  }

  private next(): PmiMessage | undefined {
    const buf = this.pending;
    if (this.format === 1) {
      const nl = buf.indexOf(0x0a);
      if (nl === -1) {
        if (buf.length > MAX_PMI_MESSAGE_BYTES) throw corrupt(`a PMI-1 line longer than ${MAX_PMI_MESSAGE_BYTES} bytes`, buf.subarray(0, 80).toString('latin1'));
        return undefined;
      }
      this.pending = buf.subarray(nl + 1);
      return parsePmi1(buf.subarray(0, nl).toString('utf8'));
    }
    if (buf.length < 6) return undefined;
    const prefix = buf.subarray(0, 6).toString('latin1');
    // Slurm pads on the right ("%-6d"), Hydra on the left ("%6d"); both read it with atoi().
    if (!/^ *\d+ *$/.test(prefix)) throw corrupt('a PMI-2 message must begin with its length in 6 characters', prefix);
    const length = Number(prefix.trim());
    if (length > MAX_PMI_MESSAGE_BYTES) throw corrupt(`a PMI-2 message of ${length} bytes (the limit is ${MAX_PMI_MESSAGE_BYTES})`, prefix);
    if (buf.length < 6 + length) return undefined;
    this.pending = buf.subarray(6 + length);
    return parsePmi2(buf.subarray(6, 6 + length).toString('utf8'));
  }
}

/** An integer attribute of `message`; `CORRUPT` when missing or not an integer. */
export function intAttr(message: PmiMessage, key: string): number {
  const text = message.attrs.get(key);
  const value = text !== undefined && /^-?\d{1,10}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value)) {
    throw new VmcommError('CORRUPT', `the process manager's ${message.cmd} reply has ${text === undefined ? `no ${key}` : `${key}=${JSON.stringify(text)}, not an integer`}`);
  }
  return value;
}

/** A string attribute of `message`; `CORRUPT` when missing. */
export function stringAttr(message: PmiMessage, key: string): string {
  const text = message.attrs.get(key);
  if (text === undefined) throw new VmcommError('CORRUPT', `the process manager's ${message.cmd} reply has no ${key}`);
  return text;
}

function withCmd(attrs: Map<string, string>, text: string, cmdFirst: boolean): PmiMessage {
  const cmd = attrs.get('cmd');
  if (!cmdFirst || cmd === undefined || cmd === '') throw corrupt('a PMI message must begin with cmd=<name>', text);
  attrs.delete('cmd');
  return { cmd, attrs };
}

/** Splits on unescaped white space and removes `\` escapes (newer MPICH escapes spaces in values). */
function splitUnescaped(line: string): string[] {
  const tokens: string[] = [];
  let current = '';
  let inToken = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === '\\' && i + 1 < line.length) {
      current += line[++i];
      inToken = true;
    } else if (c === ' ' || c === '\t') {
      if (inToken) tokens.push(current);
      current = '';
      inToken = false;
    } else {
      current += c;
      inToken = true;
    }
  }
  if (inToken) tokens.push(current);
  return tokens;
}

function checkKey(key: string, what: string): void {
  if (!TOKEN_KEY.test(key)) throw new VmcommError('INVALID_ARGUMENT', `a PMI ${what} must be letters, digits, '_', '.' or '-', got ${JSON.stringify(key)}`);
}

function corrupt(why: string, text: string): VmcommError {
  const shown = text.length > 120 ? `${text.slice(0, 120)}…` : text;
  return new VmcommError('CORRUPT', `malformed message from the PMI process manager: ${why} (${JSON.stringify(shown)})`);
}
