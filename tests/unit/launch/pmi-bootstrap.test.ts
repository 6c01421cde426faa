// The PMI-1 and PMI-2 clients and the PMI bootstrap against an in-process fake process manager
// (tests/helpers/fake-pmi.ts): several ranks' bootstraps in one process, values chunked at
// vallen_max, malformed replies as typed errors, abort, a fence that never completes, and a process
// manager that goes away.
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { CardValue } from '../../../lib/backend.js';
import type { Bootstrap } from '../../../lib/bootstrap.js';
import { bootstrapFromEnvironment } from '../../../lib/launch/environment.js';
import { PmiBootstrap } from '../../../lib/launch/pmi/pmi-bootstrap.js';
import { connectPmi } from '../../../lib/launch/pmi/pmi-environment.js';
import { FakePmiServer, type FakePmiOptions } from '../../helpers/fake-pmi.js';

let server: FakePmiServer | undefined;
const opened: Bootstrap[] = [];

afterEach(async () => {
  for (const b of opened.splice(0)) await b.finalize().catch(() => undefined);
  await server?.close();
  server = undefined;
});

async function fake(options: FakePmiOptions): Promise<FakePmiServer> {
  server = await FakePmiServer.start(options);
  return server;
}

/** Joins `size` ranks through the fake server at once (a fence needs them all). */
async function join(s: FakePmiServer, version: 1 | 2, env: NodeJS.ProcessEnv = {}): Promise<PmiBootstrap[]> {
  const all = await Promise.all(Array.from({ length: s.options.size }, (_, id) => connectPmi(s.env(id, env), version, 'fake')));
  opened.push(...all);
  return all as PmiBootstrap[];
}

/** Every rank's allgather at once. */
function gather(boots: Bootstrap[], round: string, value: (rank: number) => CardValue): Promise<CardValue[][]> {
  return Promise.all(boots.map((b) => b.allgather(round, value(b.rank))));
}

describe.each([1, 2] as const)('PMI-%i through the fake process manager', (version) => {
  it('4 ranks join: same secret and job id, 127.0.0.1 on one node, values in rank order, finalize', async () => {
    const s = await fake({ size: 4, kvsName: 'kvs_4711_0' });
    const boots = await join(s, version);
    expect(boots.map((b) => b.rank)).toEqual([0, 1, 2, 3]);
    for (const b of boots) {
      expect(b.size).toBe(4);
      expect(Buffer.from(b.secret).toString('hex')).toBe(Buffer.from(boots[0]!.secret).toString('hex'));
      expect(b.secret.byteLength).toBe(32);
      expect(b.jobId).toBe(boots[0]!.jobId);
      expect(b.jobId).toMatch(/^kvs_4711_0-[0-9a-f]{16}$/);
      expect(b.address).toBe('127.0.0.1');
    }
    const got = await gather(boots, 'cards', (r) => ({ rank: r, list: [r, 'x'] }));
    for (const values of got) expect(values).toEqual([0, 1, 2, 3].map((r) => ({ rank: r, list: [r, 'x'] })));
    // A second round, with a name too long for a readable key.
    const long = 'a round name with spaces and more than fifteen characters';
    expect((await gather(boots, long, (r) => r * 10))[3]).toEqual([0, 10, 20, 30]);
    await Promise.all(boots.map((b) => b.finalize()));
    expect([...s.finalized].sort()).toEqual([0, 1, 2, 3]);
    await expect(boots[0]!.allgather('late', 1)).rejects.toThrow(expect.objectContaining({ code: 'FINALIZED' }));
  });

  it('values longer than vallen_max travel in chunks that fit (the server cuts longer values silently)', async () => {
    const s = await fake({ size: 3, vallenMax: 100 });
    const boots = await join(s, version);
    const big = (r: number) => ({ rank: r, blob: `${r}`.repeat(5_000), unicode: 'ü€😀'.repeat(50) });
    const got = await gather(boots, 'cards', big);
    for (const values of got) expect(values).toEqual([0, 1, 2].map(big));
    // PMI-1 uses what get_maxes said (100 → 99); PMI-2 has a fixed 1024-byte limit.
    expect(s.longestPut).toBe(version === 1 ? 99 : 1023);
    expect(s.requests.filter((r) => r.cmd === 'put' || r.cmd === 'kvs-put').length).toBeGreaterThan(version === 1 ? 3 * 50 : 3 * 5);
  });

  it('a server that cuts values shorter than it said is CORRUPT, naming the rank and round', async () => {
    const s = await fake({ size: 2, cutAt: 500 });
    const boots = await join(s, version);
    const results = await Promise.allSettled(boots.map((b) => b.allgather('cards', 'y'.repeat(3_000 + b.rank))));
    expect(results[0]).toMatchObject({ status: 'rejected', reason: { code: 'CORRUPT', message: expect.stringMatching(/rank 1's value in allgather round 'cards'.*cut or lost/) } });
  });

  it('rounds are used once; a value that is not JSON data is INVALID_ARGUMENT and uses no round', async () => {
    const s = await fake({ size: 1 });
    const [b] = await join(s, version);
    await expect(b!.allgather('r', undefined as never)).rejects.toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    await expect(b!.allgather('r', { n: 1n } as never)).rejects.toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(await b!.allgather('r', 1)).toEqual([1]);
    await expect(b!.allgather('r', 1)).rejects.toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('already used') }));
    await expect(b!.allgather('', 1)).rejects.toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('calls on one rank are queued, never interleaved on the wire', async () => {
    const s = await fake({ size: 2 });
    const boots = await join(s, version);
    const [a, b] = await Promise.all([gather(boots, 'one', (r) => r), gather(boots, 'two', (r) => -r)]);
    expect(a[1]).toEqual([0, 1]);
    expect(b[0]).toEqual([0, -1]);
  });

  it('abort sends a PMI abort with the code and a message the wire can carry', async () => {
    const s = await fake({ size: 1 });
    const [b] = await join(s, version);
    await b!.abort(7, 'rank 0 gave up; see why = here');
    await vi.waitFor(() => expect(s.aborts).toHaveLength(1));
    const { attrs } = s.aborts[0]!;
    expect(attrs.exitcode).toBe('7');
    if (version === 2) expect(attrs.isworld).toBe('TRUE');
    expect(attrs.message).toMatch(/^rank.0.gave.up.*here$/);
    expect(attrs.message).not.toMatch(version === 1 ? /[\s=]/ : /;/);
  });

  it('a fence that never completes rejects with TIMEOUT after VMCOMM_PMI_TIMEOUT; later calls too', async () => {
    const s = await fake({ size: 2, holdFence: true });
    const started = Date.now();
    const results = await Promise.allSettled(Array.from({ length: 2 }, (_, id) => connectPmi(s.env(id, { VMCOMM_PMI_TIMEOUT: '0.3' }), version, 'fake')));
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    for (const r of results) {
      expect(r).toMatchObject({ status: 'rejected', reason: { code: 'TIMEOUT', message: expect.stringMatching(/did not answer (barrier_in|kvs-fence).*VMCOMM_PMI_TIMEOUT/) } });
    }
  });

  it('losing the process manager: pending rounds reject with PEER_LOST and the listener hears abort(1, -1)', async () => {
    const s = await fake({ size: 2 });
    const boots = await join(s, version);
    const aborts: [number, number, string][] = [];
    boots[0]!.listen({ peerLost: () => undefined, abort: (code, from, reason) => aborts.push([code, from, reason]) });
    const pending = boots[0]!.allgather('cards', 0);
    await vi.waitFor(() => expect(s.requests.some((r) => r.cmd === 'barrier_in' || r.cmd === 'kvs-fence')).toBe(true));
    s.dropAll();
    await expect(pending).rejects.toThrow(expect.objectContaining({ code: 'PEER_LOST' }));
    await vi.waitFor(() => expect(aborts).toEqual([[1, -1, expect.stringContaining('lost the connection to the process manager')]]));
    await expect(boots[0]!.finalize()).rejects.toThrow(expect.objectContaining({ code: 'PEER_LOST' }));
  });

  it('rank 0 that puts no secret (not a vmcomm program) is CORRUPT on the others', async () => {
    const s = await fake({ size: 2 });
    // Rank 0 joins through PMI by hand and only fences; rank 1 is a vmcomm rank.
    const { Pmi1Client } = await import('../../../lib/launch/pmi/pmi1-client.js');
    const plain = Pmi1Client.connect({ endpoint: { kind: 'port', host: '127.0.0.1', port: s.port }, pmiId: 0, timeoutMs: 5_000 }).then(async (c) => {
      await c.fence();
      return c;
    });
    const vm = connectPmi(s.env(1), version, 'fake');
    await expect(vm).rejects.toThrow(expect.objectContaining({ code: 'CORRUPT', message: expect.stringContaining('rank 0 put no job secret') }));
    (await plain).connection.close();
  });
});

describe('malformed or refusing process managers give typed errors', () => {
  const tampered = async (version: 1 | 2, tamper: FakePmiOptions['tamper'], extra: Partial<FakePmiOptions> = {}) => {
    const s = await fake({ size: 1, tamper, ...extra });
    return connectPmi(s.env(0, { VMCOMM_PMI_TIMEOUT: '2' }), version, 'fake');
  };

  it.each([
    ['get_maxes without numbers', 1, (_q: unknown, r: string) => (r.startsWith('cmd=maxes') ? 'cmd=maxes keylen_max=abc vallen_max=1024' : r), 'CORRUPT'],
    ['a reply to another command', 1, (_q: unknown, r: string) => (r.startsWith('cmd=my_kvsname') ? 'cmd=barrier_out' : r), 'CORRUPT'],
    ['a line that is not key=value', 1, (_q: unknown, r: string) => (r.startsWith('cmd=maxes') ? 'cmd=maxes ??' : r), 'CORRUPT'],
    ['init refused', 1, (_q: unknown, r: string) => (r.startsWith('cmd=response_to_init') ? 'cmd=response_to_init pmi_version=1 pmi_subversion=1 rc=-1' : r), 'UNSUPPORTED'],
    ['PMI-2 refused', 2, (_q: unknown, r: string) => (r.startsWith('cmd=response_to_init') ? 'cmd=response_to_init pmi_version=1 pmi_subversion=1 rc=0' : r), 'UNSUPPORTED'],
    ['fullinit for another rank', 2, (_q: unknown, r: string) => r.replace(/rank=0;/, 'rank=5;'), 'CORRUPT'],
    ['a put refused', 2, (_q: unknown, r: string) => (r.startsWith('cmd=kvs-put-response') ? 'cmd=kvs-put-response;rc=-1;errmsg=full;' : r), 'CORRUPT'],
    ['keys too short for vmcomm', 1, (_q: unknown, r: string) => (r.startsWith('cmd=maxes') ? 'cmd=maxes kvsname_max=256 keylen_max=16 vallen_max=1024' : r), 'UNSUPPORTED'],
    ['no reply at all', 1, (_q: unknown, r: string) => (r.startsWith('cmd=my_kvsname') ? null : r), 'TIMEOUT'],
  ] as const)('%s → %s', async (_what, version, tamper, code) => {
    await expect(tampered(version, tamper)).rejects.toThrow(expect.objectContaining({ code }));
  });

  it('PMI-2 fullinit needs pmijobid on Slurm: it is sent from PMI_JOBID', async () => {
    const s = await fake({ size: 1, requireJobId: true });
    await expect(connectPmi(s.env(0), 2, 'fake')).rejects.toThrow(expect.objectContaining({ code: 'UNSUPPORTED', message: expect.stringContaining('rc=3') }));
    const b = await connectPmi(s.env(0, { PMI_JOBID: '42.0' }), 2, 'fake');
    opened.push(b);
    expect(s.requests.find((r) => r.cmd === 'fullinit' && r.attrs.pmijobid === '42.0')).toBeDefined();
  });

  it('an unsolicited message ends the connection as CORRUPT', async () => {
    const s = await fake({ size: 1, tamper: (_q, r) => (r.startsWith('cmd=my_kvsname') ? `${r}\ncmd=barrier_out` : r) });
    await expect(connectPmi(s.env(0), 1, 'fake')).rejects.toThrow(expect.objectContaining({ code: 'CORRUPT', message: expect.stringContaining('no reply was expected') }));
  });
});

describe('bootstrapFromEnvironment with PMI variables', () => {
  it('PMI_PORT + PMI_ID joins through PMI-1 (Hydra with -pmi-port); VMCOMM_PMI=2 switches', async () => {
    const s = await fake({ size: 2 });
    const boots = (await Promise.all([bootstrapFromEnvironment(s.env(0)), bootstrapFromEnvironment(s.env(1, { VMCOMM_PMI: '1' }))])) as Bootstrap[];
    opened.push(...boots);
    expect(boots.map((b) => b.rank)).toEqual([0, 1]);
    expect(s.requests.some((r) => r.cmd === 'initack')).toBe(true);
    expect((await gather(boots, 'x', (r) => r))[0]).toEqual([0, 1]);
  });
});
