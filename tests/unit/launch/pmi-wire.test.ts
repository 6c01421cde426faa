// The PMI pieces that need no server: both wire formats, the chunked card encoding, the process
// mapping, the address choice and the environment a PMI rank reads.
import { closeSync, openSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CHUNK_HEADER_ROOM, MAX_CARD_KEY_LENGTH, chunkKey, decodeCard, encodeCard, parseCardHeader, roundId } from '../../../lib/launch/pmi/kvs-cards.js';
import { choosePmiAddress, routeSource, singleNode } from '../../../lib/launch/pmi/pmi-address.js';
import { PmiConnection } from '../../../lib/launch/pmi/pmi-connection.js';
import { DEFAULT_PMI_TIMEOUT_S, pmi1Environment, readPmiEnvironment, slurmPmi2Environment, slurmWithoutPmiEnvironment } from '../../../lib/launch/pmi/pmi-environment.js';
import { PmiDecoder, formatPmi1, formatPmi2, parsePmi1, parsePmi2 } from '../../../lib/launch/pmi/pmi-wire.js';
import { LAUNCH_ENVIRONMENTS, vmcommEnvironment } from '../../../lib/launch/environment.js';

const corrupt = expect.objectContaining({ code: 'CORRUPT' });
const invalid = (variable: string) => expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining(variable) });

describe('PMI wire formats', () => {
  it('PMI-1: one line of key=value tokens; replies may escape spaces', () => {
    expect(formatPmi1('put', [['kvsname', 'k'], ['key', 'a'], ['value', 'b']])).toBe('cmd=put kvsname=k key=a value=b\n');
    const m = parsePmi1('cmd=get_result rc=0 msg=all\\ good value=x=y');
    expect(m.cmd).toBe('get_result');
    expect(Object.fromEntries(m.attrs)).toEqual({ rc: '0', msg: 'all good', value: 'x=y' });
    expect(() => formatPmi1('put', [['value', 'a b']])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => formatPmi1('bad cmd')).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('PMI-2: a 6-character length (left or right padded), then cmd=…;key=value;…', () => {
    expect(formatPmi2('kvs-get', [['key', 'a'], ['srcid', '-1']])).toBe('27    cmd=kvs-get;key=a;srcid=-1;');
    expect(Object.fromEntries(parsePmi2('cmd=kvs-get-response;rc=0;found=TRUE;value=v;').attrs)).toEqual({ rc: '0', found: 'TRUE', value: 'v' });
    expect(() => formatPmi2('kvs-put', [['value', 'a;b']])).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    const d = new PmiDecoder();
    d.format = 2;
    const body = 'cmd=kvs-fence-response;rc=0;';
    // Slurm pads on the right, Hydra on the left; split anywhere, several per chunk.
    const stream = Buffer.from(`${String(body.length).padEnd(6)}${body}${String(body.length).padStart(6)}${body}`);
    const got = [...d.push(stream.subarray(0, 3)), ...d.push(stream.subarray(3, 40)), ...d.push(stream.subarray(40))];
    expect(got.map((x) => x.cmd)).toEqual(['kvs-fence-response', 'kvs-fence-response']);
  });

  it('switches framing between messages; keeps partial input', () => {
    const d = new PmiDecoder();
    expect(d.push(Buffer.from('cmd=response_to_init pmi_version=2 rc=0'))).toEqual([]);
    expect(d.push(Buffer.from('\n')).map((m) => m.cmd)).toEqual(['response_to_init']);
    d.format = 2;
    expect(d.push(Buffer.from(formatPmi2('fullinit-response', [['rc', '0']]))).map((m) => m.cmd)).toEqual(['fullinit-response']);
  });

  it.each([
    ['PMI-1 without cmd', 1, 'rc=0 cmd=x\n'],
    ['PMI-1 token without =', 1, 'cmd=x oops\n'],
    ['PMI-2 bad length', 2, 'abcdefcmd=x;'],
    ['PMI-2 without cmd', 2, '5     rc=0;'],
    ['PMI-2 too long', 2, '999999'],
  ] as const)('malformed input (%s) is CORRUPT', (_what, format, text) => {
    const d = new PmiDecoder();
    d.format = format;
    expect(() => d.push(Buffer.from(text))).toThrow(corrupt);
  });

  it('a PMI-1 line that never ends is CORRUPT past 64 KiB', () => {
    expect(() => new PmiDecoder().push(Buffer.alloc(70_000, 0x61))).toThrow(corrupt);
  });
});

describe('cards through the PMI key/value space', () => {
  const value = { rank: 3, text: 'é'.repeat(700), nested: [1, null, true, { a: 'b' }] };

  it.each([64, 100, 1023])('chunks of at most %i characters round-trip', (chunkChars) => {
    const chunks = encodeCard(value, chunkChars);
    expect(chunks.length).toBeGreaterThan(1);
    for (const c of chunks) {
      expect(c.length).toBeLessThanOrEqual(chunkChars);
      expect(c).toMatch(/^[0-9A-Za-z._-]+$/);
    }
    const header = parseCardHeader(chunks[0]!, 'v');
    expect(header.chunks).toBe(chunks.length);
    expect(decodeCard(header, chunks.slice(1), 'v')).toEqual(value);
  });

  it('splits exactly at the boundaries', () => {
    const chunkChars = 100;
    const first = chunkChars - CHUNK_HEADER_ROOM;
    for (const dataChars of [first - 4, first, first + 4, first + chunkChars, first + chunkChars + 4]) {
      // A string of n characters encodes to JSON of n+2 bytes; pick n so the base64url is dataChars long.
      const s = 'x'.repeat(Math.floor((dataChars * 3) / 4) - 2);
      const chunks = encodeCard(s, chunkChars);
      const data = Buffer.from(JSON.stringify(s)).toString('base64url');
      expect(chunks.length).toBe(data.length <= first ? 1 : 1 + Math.ceil((data.length - first) / chunkChars));
      expect(decodeCard(parseCardHeader(chunks[0]!, 'v'), chunks.slice(1), 'v')).toBe(s);
    }
  });

  it('a cut, missing or garbled chunk is CORRUPT; a value that is not JSON data is INVALID_ARGUMENT', () => {
    const chunks = encodeCard(value, 100);
    const header = parseCardHeader(chunks[0]!, 'v');
    expect(() => decodeCard(header, chunks.slice(1, -1), "rank 1's value")).toThrow(expect.objectContaining({ code: 'CORRUPT', message: expect.stringContaining("rank 1's value") }));
    expect(() => decodeCard(header, [...chunks.slice(1, -1), chunks.at(-1)!.slice(0, -1)], 'v')).toThrow(corrupt);
    expect(() => parseCardHeader('hello', 'v')).toThrow(corrupt);
    expect(() => parseCardHeader('1.4.a b!', 'v')).toThrow(corrupt);
    expect(() => decodeCard(parseCardHeader('1.4.AAAA', 'v'), [], 'v')).toThrow(corrupt);
    expect(() => encodeCard(undefined as never, 100)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => encodeCard({ big: 1n } as never, 100)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => encodeCard(1, 10)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });

  it('keys: readable for short round names, hashed otherwise, always within PMI key limits', () => {
    expect(roundId('cards')).toBe('ncards');
    expect(roundId('a round with spaces')).toMatch(/^h[0-9a-f]{15}$/);
    expect(roundId('x'.repeat(200))).not.toBe(roundId('x'.repeat(201)));
    expect(chunkKey(roundId('x'.repeat(200)), 0x7ffffffe, 9_999_999).length).toBeLessThanOrEqual(MAX_CARD_KEY_LENGTH);
  });
});

describe('PMI_process_mapping and the address', () => {
  it.each([
    ['(vector,(0,1,4))', 4, true],
    ['(vector,(0,1,1))', 4, true], // Hydra on one host: the block repeats
    ['(vector, (0,1,2), (0,1,2))', 4, true],
    ['(vector,[(0,1,2)]x2)', 4, true],
    ['(vector,(0,2,2))', 4, false],
    ['(vector,(0,1,2),(1,1,2))', 4, false],
    ['(vector,(1,1,4))', 4, false],
    ['', 4, false],
    ['garbage', 4, false],
  ])('%j for %i ranks: one node = %s', (mapping, size, one) => {
    expect(singleNode(mapping, size)).toBe(one);
  });

  it('VMCOMM_ADDRESS wins; one node gives 127.0.0.1; several nodes with nothing routable is UNSUPPORTED', async () => {
    const base = { size: 4, pmiLocalAddress: undefined };
    expect(await choosePmiAddress({ ...base, env: { VMCOMM_ADDRESS: '[fd00::7]' }, processMapping: '(vector,(0,1,4))' })).toMatchObject({ address: 'fd00::7' });
    await expect(choosePmiAddress({ ...base, env: { VMCOMM_ADDRESS: 'node7' }, processMapping: undefined })).rejects.toThrow(invalid('VMCOMM_ADDRESS'));
    expect(await choosePmiAddress({ ...base, env: {}, processMapping: '(vector,(0,1,4))' })).toMatchObject({ address: '127.0.0.1' });
    // Loopback answers are no use between hosts (Debian maps the host name to 127.0.1.1).
    const env = { SLURM_SRUN_COMM_HOST: '127.0.0.1', MPIR_CVAR_CH3_INTERFACE_HOSTNAME: 'localhost', PMI_HOSTNAME: '127.0.1.1' };
    await expect(choosePmiAddress({ ...base, env, processMapping: '(vector,(0,2,2))' })).rejects.toThrow(expect.objectContaining({ code: 'UNSUPPORTED', message: expect.stringContaining('VMCOMM_ADDRESS') }));
    expect(await routeSource('127.0.0.1')).toBe('127.0.0.1');
  });
});

describe('the PMI environment', () => {
  it('PMI_FD with PMI_JOBID is Slurm (PMI-2), PMI_FD or PMI_PORT alone PMI-1; vmcomm’s own comes first', () => {
    expect(LAUNCH_ENVIRONMENTS).toEqual([vmcommEnvironment, slurmPmi2Environment, pmi1Environment, slurmWithoutPmiEnvironment]);
    const slurm = { PMI_FD: '11', PMI_JOBID: '1.0', PMI_RANK: '0', PMI_SIZE: '2' };
    expect(LAUNCH_ENVIRONMENTS.find((l) => l.detect(slurm))).toBe(slurmPmi2Environment);
    expect(LAUNCH_ENVIRONMENTS.find((l) => l.detect({ PMI_FD: '6', PMI_RANK: '0', PMI_SIZE: '2' }))).toBe(pmi1Environment);
    expect(LAUNCH_ENVIRONMENTS.find((l) => l.detect({ PMI_PORT: 'vm:4000', PMI_ID: '1' }))).toBe(pmi1Environment);
    expect(LAUNCH_ENVIRONMENTS.find((l) => l.detect({ ...slurm, VMCOMM_RENDEZVOUS: '127.0.0.1:9' }))).toBe(vmcommEnvironment);
    expect(LAUNCH_ENVIRONMENTS.find((l) => l.detect({ PMI_RANK: '0' }))).toBeUndefined();
  });

  it('a task of a Slurm step of several tasks without a PMI fails with UNSUPPORTED instead of running alone', async () => {
    const task = { SLURM_JOB_ID: '5', SLURM_STEP_ID: '0', SLURM_PROCID: '1', SLURM_STEP_NUM_TASKS: '4' };
    expect(LAUNCH_ENVIRONMENTS.find((l) => l.detect(task))).toBe(slurmWithoutPmiEnvironment);
    await expect(slurmWithoutPmiEnvironment.connect(task)).rejects.toThrow(expect.objectContaining({ code: 'UNSUPPORTED', message: expect.stringContaining('srun --mpi=pmi2') }));
    await expect(slurmWithoutPmiEnvironment.connect({ ...task, PMIX_RANK: '1' })).rejects.toThrow(expect.objectContaining({ message: expect.stringContaining('PMIx') }));
    // One task (srun -n 1), or a batch script (SLURM_NTASKS but no step), is a world of one, as without Slurm.
    expect(LAUNCH_ENVIRONMENTS.find((l) => l.detect({ ...task, SLURM_STEP_NUM_TASKS: '1' }))).toBeUndefined();
    expect(LAUNCH_ENVIRONMENTS.find((l) => l.detect({ SLURM_JOB_ID: '5', SLURM_NTASKS: '4', SLURM_PROCID: '0' }))).toBeUndefined();
  });

  it('reads PMI_FD, PMI_PORT, VMCOMM_PMI and VMCOMM_PMI_TIMEOUT', () => {
    expect(readPmiEnvironment({ PMI_FD: '6', PMI_RANK: '1', PMI_SIZE: '4' }, 1)).toEqual({
      endpoint: { kind: 'fd', fd: 6 },
      version: 1,
      rank: 1,
      size: 4,
      pmiId: undefined,
      jobId: undefined,
      timeoutMs: DEFAULT_PMI_TIMEOUT_S * 1000,
    });
    expect(readPmiEnvironment({ PMI_PORT: '[::1]:40', PMI_ID: '3', VMCOMM_PMI: '2', VMCOMM_PMI_TIMEOUT: '0', PMI_JOBID: '7.0' }, 1)).toMatchObject({
      endpoint: { kind: 'port', host: '::1', port: 40 },
      version: 2,
      pmiId: 3,
      jobId: '7.0',
      timeoutMs: undefined,
    });
    expect(readPmiEnvironment({ PMI_FD: '6', PMI_RANK: '0', PMI_SIZE: '1', VMCOMM_PMI_TIMEOUT: '1.5' }, 2).timeoutMs).toBe(1500);
  });

  it.each([
    [{ PMI_FD: 'six', PMI_RANK: '0', PMI_SIZE: '1' }, 'PMI_FD'],
    [{ PMI_FD: '6', PMI_SIZE: '2' }, 'PMI_RANK'],
    [{ PMI_FD: '6', PMI_RANK: '2', PMI_SIZE: '2' }, 'PMI_RANK'],
    [{ PMI_FD: '6', PMI_RANK: '0', PMI_SIZE: '0' }, 'PMI_SIZE'],
    [{ PMI_PORT: 'nohostport', PMI_ID: '0' }, 'PMI_PORT'],
    [{ PMI_PORT: 'h:1' }, 'PMI_ID'],
    [{ PMI_FD: '6', PMI_RANK: '0', PMI_SIZE: '1', VMCOMM_PMI: '3' }, 'VMCOMM_PMI'],
    [{ PMI_FD: '6', PMI_RANK: '0', PMI_SIZE: '1', VMCOMM_PMI_TIMEOUT: '-1' }, 'VMCOMM_PMI_TIMEOUT'],
    [{ PMI_FD: '6', PMI_RANK: '0', PMI_SIZE: '1', PMI_JOBID: 'a;b' }, 'PMI_JOBID'],
  ])('%j is INVALID_ARGUMENT naming %s', (env, variable) => {
    expect(() => readPmiEnvironment(env, 1)).toThrow(invalid(variable));
  });

  it('a PMI_FD that is not an open socket is INVALID_ARGUMENT naming PMI_FD', async () => {
    await expect(PmiConnection.open({ kind: 'fd', fd: 987_654 }, 1000)).rejects.toThrow(invalid('PMI_FD=987654'));
    const file = path.join(tmpdir(), `vmcomm-pmi-test-${process.pid}`);
    const fd = openSync(file, 'w');
    try {
      await expect(PmiConnection.open({ kind: 'fd', fd }, 1000)).rejects.toThrow(invalid('PMI_FD'));
    } finally {
      closeSync(fd);
      unlinkSync(file);
    }
  });
});
