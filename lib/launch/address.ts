/**
 * `host:port` as vmcomm writes it: `127.0.0.1:4000`, `[::1]:4000` (brackets around an IPv6 literal,
 * as in URLs), or `name:4000`.
 *
 * @module
 */

import { isIP } from 'node:net';
import { VmcommError } from '../errors.js';

/** Where the rendezvous listens. */
export interface RendezvousAddress {
  /** An IPv4 or IPv6 literal (without brackets) or a host name. */
  readonly host: string;
  /** 0 only when asking to listen on a random port. */
  readonly port: number;
}

const HOST_NAME = /^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/;

/**
 * Parses `host:port` or `[v6]:port`. Throws `INVALID_ARGUMENT` naming `what` (the variable or
 * option it came from) and the expected form.
 *
 * @param allowPortZero accept port 0 (only meaningful for a listening address)
 */
export function parseRendezvousAddress(text: string, what = 'VMCOMM_RENDEZVOUS', allowPortZero = false): RendezvousAddress {
  const expected = `host:port, e.g. 127.0.0.1:4000 or [::1]:4000`;
  const fail = (why: string): VmcommError =>
    new VmcommError('INVALID_ARGUMENT', `${what} must be ${expected}; got ${JSON.stringify(text)} (${why})`);
  const trimmed = text.trim();
  let host: string;
  let portText: string;
  if (trimmed.startsWith('[')) {
    const close = trimmed.indexOf(']');
    if (close === -1 || trimmed[close + 1] !== ':') throw fail('an IPv6 address needs the form [addr]:port');
    host = trimmed.slice(1, close);
    portText = trimmed.slice(close + 2);
    if (isIP(host) !== 6) throw fail(`${JSON.stringify(host)} is not an IPv6 address`);
  } else {
    const colon = trimmed.lastIndexOf(':');
    if (colon === -1) throw fail('no port');
    host = trimmed.slice(0, colon);
    portText = trimmed.slice(colon + 1);
    if (host.includes(':')) throw fail('write an IPv6 address in brackets: [addr]:port');
    if (isIP(host) !== 4 && !HOST_NAME.test(host)) throw fail(`${JSON.stringify(host)} is not an IPv4 address or host name`);
  }
  if (!/^\d{1,5}$/.test(portText)) throw fail(`${JSON.stringify(portText)} is not a port number`);
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !allowPortZero)) throw fail(`port must be ${allowPortZero ? 0 : 1}…65535`);
  return { host, port };
}

/** The inverse of {@link parseRendezvousAddress}. */
export function formatRendezvousAddress(address: RendezvousAddress): string {
  return isIP(address.host) === 6 ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
