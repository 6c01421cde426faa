/**
 * What `vmcomm info` prints: from every rank's {@link RankInfo} (gathered to rank 0 by `info-app.ts`),
 * the versions, whether the native addon loaded (and why not), each rank's locality card, the
 * attached ivshmem regions, the rank × rank transport matrix with why each pair got its transport,
 * and the collective algorithm table in force. Pure functions of the data.
 *
 * @module
 */

import type { Communicator } from '../communicator.js';
import { ALGORITHMS, selectionTableMarkdown, type TunableCollective } from '../collectives/select.js';

/** What `comm.describe()` returns. */
export type Description = ReturnType<Communicator['describe']>;

/** Whether a rank could load the native addon. */
export type AddonStatus =
  | { readonly loaded: true; readonly capability: { readonly [feature: string]: boolean }; readonly affinity?: readonly number[] }
  | { readonly loaded: false; readonly reason: string };

/** What one rank reports to `vmcomm info`. JSON-safe. */
export interface RankInfo {
  readonly rank: number;
  readonly pid: number;
  /** 0 for a process's main thread, else the worker's `threadId` (a thread-rank). */
  readonly threadId: number;
  readonly description: Description;
  readonly addon: AddonStatus;
  readonly versions: { readonly vmcomm: string; readonly node: string; readonly v8: string; readonly platform: string; readonly arch: string; readonly kernel: string };
  /** The rank's `VMCOMM_*` variables, secrets left out. */
  readonly environment: { readonly [name: string]: string };
}

/** Variables never printed. */
const SECRET = /SECRET|TOKEN|PASSWORD/i;

/** The `VMCOMM_*` variables of `env` that are safe to print. */
export function vmcommEnvironment(env: NodeJS.ProcessEnv): { [name: string]: string } {
  const out: { [name: string]: string } = {};
  for (const [k, v] of Object.entries(env)) if (k.startsWith('VMCOMM_') && !SECRET.test(k) && v !== undefined) out[k] = v;
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** Why a transport a rank lacks is missing there, or how a probe failed, in words. */
const PROBE_HINT: { readonly [transport: string]: string } = {
  threads: 'not the same process',
  shm: "cannot open the peer's shm token with its nonce (another OS, or another /dev/shm)",
  ivshmem: 'no ivshmem region in common holding both',
  tcp: 'no connection',
};

/** Explains one pair's choice, from rank `a`'s view (both ends compute the same). */
export function explainPair(a: number, b: number, infos: readonly RankInfo[]): string {
  const pair = infos[a].description.pairs[b];
  const parts: string[] = [];
  for (const c of pair.considered) {
    // `self` is one rank talking to itself: never a candidate between two ranks worth explaining.
    if (c.name === 'self' && a !== b) continue;
    const name = `${c.name} (${Number.isFinite(c.priority) ? c.priority : '?'})`;
    if (c.listedByBoth && c.reachesPeer && c.peerReaches) {
      parts.push(`${name}: offered by both, proven both ways → chosen`);
      break;
    }
    if (!c.listedByBoth) {
      const missing = [a, b].filter((r) => !(c.name in infos[r].description.cards[r].backends));
      const why = missing.map((r) => `rank ${r}: ${infos[r].description.unavailable[c.name] ?? 'not offered'}`);
      parts.push(`${name}: not started on ${why.join('; ')}`);
    } else {
      const failed = !c.reachesPeer ? `rank ${a} could not prove it reaches rank ${b}` : `rank ${b} could not prove it reaches rank ${a}`;
      parts.push(`${name}: ${failed}${PROBE_HINT[c.name] === undefined ? '' : ` (${PROBE_HINT[c.name]})`}`);
    }
  }
  if (pair.transport === undefined) parts.push('no transport connects them');
  return parts.join('; ');
}

/** A card's fields for one transport, compactly: `key=value` (long hex strings shortened). */
function fields(v: unknown): string {
  if (v === null || typeof v !== 'object') return String(v);
  if (Array.isArray(v)) return `[${v.map(fields).join(', ')}]`;
  return Object.entries(v as Record<string, unknown>)
    .map(([k, x]) => `${k}=${typeof x === 'string' && /^[0-9a-f]{24,}$/i.test(x) ? `${x.slice(0, 12)}…` : typeof x === 'object' && x !== null ? `{${fields(x)}}` : String(x)}`)
    .join(' ');
}

function cpuList(cpus: readonly number[]): string {
  const sorted = [...cpus].sort((x, y) => x - y);
  const ranges: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    ranges.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return ranges.join(',');
}

/** The collective algorithm table, and the overrides the job's environment puts in force. */
export function renderCollectives(overrides: { readonly [collective: string]: string }): string {
  const out = [selectionTableMarkdown()];
  const entries = Object.entries(overrides);
  if (entries.length === 0) out.push('', 'overrides: none (VMCOMM_COLL_<NAME>=algorithm overrides a row for every call of the job)');
  else {
    out.push('', 'overrides in force:');
    for (const [collective, algorithm] of entries) {
      const env = `VMCOMM_COLL_${collective.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
      const known = (ALGORITHMS[collective as TunableCollective] ?? []) as readonly string[];
      const verdict = known.includes(algorithm)
        ? `${collective} uses ${algorithm} wherever it can do the call (else the table)`
        : `unknown algorithm, ignored (known: ${known.join(', ')})`;
      out.push(`  ${env}=${algorithm}: ${verdict}`);
    }
  }
  return out.join('\n');
}

/** The whole report, from every rank's info (indexed by rank). */
export function renderInfo(infos: readonly RankInfo[]): string {
  const n = infos.length;
  const out: string[] = [];
  const first = infos[0];
  const processes = new Set(infos.map((i) => i.pid)).size;
  const how = infos.some((i) => i.threadId !== 0) ? `thread-ranks in ${processes} process${processes === 1 ? '' : 'es'}` : n === 1 ? 'one process' : `${processes} processes`;
  out.push(`vmcomm info — a job of ${n} rank${n === 1 ? '' : 's'} (${how})`, '');

  // versions
  const v = first.versions;
  out.push('versions', `  vmcomm ${v.vmcomm}, Node ${v.node} (V8 ${v.v8}), ${v.platform} ${v.arch}, kernel ${v.kernel}`);
  const otherVersions = infos.filter((i) => JSON.stringify(i.versions) !== JSON.stringify(v)).map((i) => i.rank);
  if (otherVersions.length > 0) out.push(`  (ranks ${otherVersions.join(', ')} differ: see --json)`);
  out.push('');

  // addon
  out.push('native addon (shared-memory mapping, futex waits, single copy)');
  const statuses = new Map<string, number[]>();
  for (const i of infos) {
    const text = i.addon.loaded
      ? `loaded; ${Object.entries(i.addon.capability)
          .map(([k, ok]) => `${k} ${ok ? 'yes' : 'no'}`)
          .join(', ')}`
      : `NOT loaded: ${i.addon.reason}`;
    statuses.set(text, [...(statuses.get(text) ?? []), i.rank]);
  }
  for (const [text, ranks] of statuses) out.push(`  ${statuses.size === 1 ? (n === 1 ? 'rank 0' : 'every rank') : `rank${ranks.length === 1 ? '' : 's'} ${ranks.join(', ')}`}: ${text}`);
  out.push('');

  // cards
  out.push('ranks (locality cards)');
  for (const i of infos) {
    const card = i.description.cards[i.rank];
    const thread = i.threadId === 0 ? 'main thread' : `thread ${i.threadId}`;
    const cpus = i.addon.loaded && i.addon.affinity !== undefined ? `, CPUs ${cpuList(i.addon.affinity)}` : '';
    out.push(`  rank ${i.rank}: pid ${card.pid} (${thread}${cpus}), host ${card.hostname}, address ${card.address}, process nonce ${card.processNonce.slice(0, 12)}…`);
    for (const [name, f] of Object.entries(card.backends)) out.push(`    ${name.padEnd(8)} priority ${String(card.priorities[name]).padStart(3)}  ${fields(f)}`.trimEnd());
    for (const [name, why] of Object.entries(i.description.unavailable)) out.push(`    ${name.padEnd(8)} not started: ${why}`);
  }
  out.push('');

  // ivshmem regions
  out.push('ivshmem regions');
  const regions = new Map<string, string[]>();
  for (const i of infos) {
    const iv = i.description.cards[i.rank].backends.ivshmem as { regions?: { uuid: string; slot: number; generation: number }[] } | undefined;
    for (const r of iv?.regions ?? []) regions.set(r.uuid, [...(regions.get(r.uuid) ?? []), `rank ${i.rank} in slot ${r.slot} (generation ${r.generation})`]);
  }
  if (regions.size === 0) {
    const paths = first.environment.VMCOMM_IVSHMEM;
    out.push(`  none attached${paths === undefined ? ' (VMCOMM_IVSHMEM is not set and no ivshmem PCI device was usable)' : ` (VMCOMM_IVSHMEM=${paths})`}`);
  } else {
    for (const [uuid, members] of regions) out.push(`  region ${uuid}: ${members.join(', ')}`);
    // A pair authenticates its frames when either card asks for the MAC (backends/ivshmem/frame-mac.ts).
    const asks = (r: number) => (infos[r].description.cards[r].backends.ivshmem as { mac?: boolean } | undefined)?.mac === true;
    const signed: string[] = [];
    const plain: string[] = [];
    for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) if (infos[a].description.pairs[b]?.transport === 'ivshmem') (asks(a) || asks(b) ? signed : plain).push(`${a}↔${b}`);
    const list = (pairs: string[]) => (pairs.length > 8 ? `${pairs.slice(0, 8).join(', ')} and ${pairs.length - 8} more` : pairs.join(', '));
    if (signed.length > 0) out.push(`  frames authenticated (per-frame MAC): ${list(signed)}`);
    if (plain.length > 0) out.push(`  frames not authenticated: ${list(plain)} (a VM given the region could forge them; VMCOMM_IVSHMEM_MAC=1 adds a per-frame MAC)`);
  }
  out.push('');

  // matrix
  out.push('transport matrix (row: rank, column: peer)');
  const cell = (a: number, b: number) => infos[a].description.pairs[b]?.transport ?? 'none';
  const width = Math.max(4, ...infos.flatMap((_, a) => infos.map((__, b) => cell(a, b).length)), String(n - 1).length);
  const rankWidth = Math.max(4, String(n - 1).length);
  out.push(`  ${''.padEnd(rankWidth)}  ${infos.map((_, b) => String(b).padStart(width)).join('  ')}`);
  for (let a = 0; a < n; a++) out.push(`  ${String(a).padEnd(rankWidth)}  ${infos.map((_, b) => cell(a, b).padStart(width)).join('  ')}`);
  out.push('');

  // why
  if (n > 1) {
    out.push('why each pair uses its transport (candidates by priority, highest first)');
    const groups = new Map<string, string[]>();
    for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) {
      const text = explainPair(a, b, infos);
      groups.set(text, [...(groups.get(text) ?? []), `${a}↔${b}`]);
    }
    for (const [text, pairs] of groups) out.push(`  ${pairs.length > 6 ? `${pairs.slice(0, 6).join(', ')} and ${pairs.length - 6} more` : pairs.join(', ')}: ${text}`);
    out.push('');
  }

  // collectives
  out.push('collective algorithms (first row that applies)');
  out.push(renderCollectives(first.description.collectiveOverrides));
  out.push('');

  // environment
  const env = Object.entries(first.environment).filter(([k]) => !['VMCOMM_RANK', 'VMCOMM_RANKS', 'VMCOMM_SIZE', 'VMCOMM_RENDEZVOUS', 'VMCOMM_JOB_ID'].includes(k));
  out.push(`environment: ${env.length === 0 ? 'no VMCOMM_* settings' : env.map(([k, x]) => `${k}=${x}`).join(' ')}`);
  return out.join('\n');
}
