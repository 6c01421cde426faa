// The pieces of the launcher that need no processes: the environment a rank reads, addresses, the
// line framing on both sides, option parsing and the ts-node settings.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseArgs, UsageError, type OptionSpec } from '../../lib/launch/args.js';
import {
  bootstrapFromEnvironment,
  deriveJobId,
  formatRendezvousAddress,
  jobEnvironment,
  parseRendezvousAddress,
  readVmcommEnvironment,
} from '../../lib/launch/environment.js';
import { LineForwarder } from '../../lib/launch/line-forwarder.js';
import { RendezvousServer } from '../../lib/launch/rendezvous-server.js';
import { LineDecoder, MEMBER_REQUEST_PARSERS, decodeMessage, encodeMessage } from '../../lib/launch/rendezvous-protocol.js';
import { DEFAULT_COMPILER_OPTIONS, tsNodeSettings } from '../../lib/launch/typescript.js';

const SECRET_HEX = 'ab'.repeat(32);

describe('rendezvous addresses', () => {
  it('parses IPv4, host names and bracketed IPv6, and formats them back', () => {
    expect(parseRendezvousAddress('127.0.0.1:4000')).toEqual({ host: '127.0.0.1', port: 4000 });
    expect(parseRendezvousAddress('node-7.cluster:65535')).toEqual({ host: 'node-7.cluster', port: 65535 });
    expect(parseRendezvousAddress('[::1]:4000')).toEqual({ host: '::1', port: 4000 });
    expect(formatRendezvousAddress({ host: '::1', port: 4000 })).toBe('[::1]:4000');
    expect(formatRendezvousAddress({ host: '10.0.0.1', port: 1 })).toBe('10.0.0.1:1');
    expect(parseRendezvousAddress('0.0.0.0:0', '--bind', true)).toEqual({ host: '0.0.0.0', port: 0 });
  });

  it.each(['127.0.0.1', '::1:4000', '[::1]4000', '[nope]:1', 'host:0', 'host:70000', 'host:12ab', ':4000', 'a b:1'])(
    'rejects %j with INVALID_ARGUMENT naming the variable',
    (text) => {
      expect(() => parseRendezvousAddress(text)).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/^VMCOMM_RENDEZVOUS must be host:port/) }));
    },
  );
});

describe('the vmcomm environment', () => {
  const good = { VMCOMM_RENDEZVOUS: '127.0.0.1:4000', VMCOMM_RANK: '2', VMCOMM_SIZE: '4', VMCOMM_JOB_SECRET: SECRET_HEX };

  it('reads the four documented variables; the job id defaults to one derived from the secret', () => {
    const read = readVmcommEnvironment(good);
    expect(read).toMatchObject({ host: '127.0.0.1', port: 4000, rank: 2, size: 4, jobId: deriveJobId(Buffer.from(SECRET_HEX, 'hex')) });
    expect(Buffer.from(read.secret).toString('hex')).toBe(SECRET_HEX);
    expect(readVmcommEnvironment({ ...good, VMCOMM_JOB_ID: 'job-42' }).jobId).toBe('job-42');
  });

  it('round-trips what a launcher sets with jobEnvironment', () => {
    const secret = Buffer.from(SECRET_HEX, 'hex');
    const env = jobEnvironment({ rendezvous: { host: '::1', port: 9 }, rank: 1, size: 3, secret, backends: 'shm,tcp' });
    expect(env).toEqual({
      VMCOMM_RENDEZVOUS: '[::1]:9',
      VMCOMM_RANK: '1',
      VMCOMM_SIZE: '3',
      VMCOMM_JOB_SECRET: SECRET_HEX,
      VMCOMM_JOB_ID: deriveJobId(secret),
      VMCOMM_BACKENDS: 'shm,tcp',
    });
    expect(readVmcommEnvironment(env)).toMatchObject({ host: '::1', port: 9, rank: 1, size: 3 });
  });

  it.each([
    [{ VMCOMM_RANK: undefined }, /^VMCOMM_RANK is not set/],
    [{ VMCOMM_RANK: '4' }, /^VMCOMM_RANK must be this rank, an integer in 0…3/],
    [{ VMCOMM_RANK: '-1' }, /^VMCOMM_RANK must be/],
    [{ VMCOMM_SIZE: '0' }, /^VMCOMM_SIZE must be/],
    [{ VMCOMM_SIZE: 'four' }, /^VMCOMM_SIZE must be/],
    [{ VMCOMM_JOB_SECRET: undefined }, /^VMCOMM_JOB_SECRET is not set/],
    [{ VMCOMM_JOB_SECRET: 'abcd' }, /^VMCOMM_JOB_SECRET must be .* at least 32/],
    [{ VMCOMM_JOB_SECRET: 'zz'.repeat(32) }, /not all hex/],
    [{ VMCOMM_JOB_ID: 'has space' }, /^VMCOMM_JOB_ID must be/],
    [{ VMCOMM_RENDEZVOUS: 'localhost' }, /^VMCOMM_RENDEZVOUS must be host:port/],
  ])('rejects %j with INVALID_ARGUMENT naming the variable', (change, message) => {
    const env: NodeJS.ProcessEnv = { ...good, ...change };
    for (const key of Object.keys(change)) if (env[key] === undefined) delete env[key];
    expect(() => readVmcommEnvironment(env)).toThrow(expect.objectContaining({ name: 'VmcommError', code: 'INVALID_ARGUMENT', message: expect.stringMatching(message) }));
  });

  it('bootstrapFromEnvironment: undefined without VMCOMM_RENDEZVOUS, a rejection for a broken environment', async () => {
    expect(await bootstrapFromEnvironment({ PATH: '/bin' })).toBeUndefined();
    await expect(bootstrapFromEnvironment({ ...good, VMCOMM_SIZE: undefined })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('bootstrapFromEnvironment joins the rendezvous the environment names', async () => {
    const secret = Buffer.from(SECRET_HEX, 'hex');
    const server = new RendezvousServer({ size: 1, jobId: deriveJobId(secret), secret });
    const address = await server.listen();
    try {
      const env = jobEnvironment({ rendezvous: address, rank: 0, size: 1, secret });
      delete env.VMCOMM_JOB_ID; // a hand-started rank needs only the four documented variables
      const boot = await bootstrapFromEnvironment(env);
      expect(boot).toMatchObject({ rank: 0, size: 1, address: '127.0.0.1' });
      expect(await boot?.allgather('r', 'v')).toEqual(['v']);
      await boot?.finalize();
      expect(server.stateOf(0)).toBe('finalized');
    } finally {
      await server.close();
    }
  });
});

describe('rendezvous framing', () => {
  it('reassembles lines split across chunks and refuses a line over the limit', () => {
    const decoder = new LineDecoder(10);
    expect(decoder.push(Buffer.from('{"a"'))).toEqual([]);
    expect(decoder.push(Buffer.from(':1}\n{}\n{'))).toEqual(['{"a":1}', '{}']);
    expect(decoder.pendingBytes).toBe(1);
    expect(() => decoder.push(Buffer.from('0123456789'))).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
  });

  it('validates messages by type and refuses the rest with CORRUPT', () => {
    expect(decodeMessage(encodeMessage({ type: 'allgather', round: 'r', value: [1, { x: null }] }).trim(), MEMBER_REQUEST_PARSERS)).toEqual({
      type: 'allgather',
      round: 'r',
      value: [1, { x: null }],
    });
    for (const line of ['nope', '[]', '{"type":"auth"}', '{"type":"abort","code":1.5,"reason":""}', '{"type":"allgather","round":"r"}']) {
      expect(() => decodeMessage(line, MEMBER_REQUEST_PARSERS)).toThrow(expect.objectContaining({ code: 'CORRUPT' }));
    }
  });
});

describe('output forwarding', () => {
  function collect(prefix = '', max?: number): { forwarder: LineForwarder; writes: string[] } {
    const writes: string[] = [];
    const forwarder = new LineForwarder({ write: (data) => writes.push(data.toString('utf8')) }, prefix, max);
    return { forwarder, writes };
  }

  it('writes whole lines only, prefixed, and keeps split UTF-8 intact', () => {
    const { forwarder, writes } = collect('[3] ');
    const text = Buffer.from('héllo\nwör');
    forwarder.push(text.subarray(0, 2)); // splits the 'é'
    forwarder.push(text.subarray(2));
    forwarder.push(Buffer.from('ld\n\n'));
    forwarder.push(Buffer.from('no newline'));
    forwarder.end();
    expect(writes).toEqual(['[3] héllo\n', '[3] wörld\n', '[3] \n', '[3] no newline\n']);
  });

  it('splits a line longer than the limit instead of buffering it all', () => {
    const { forwarder, writes } = collect('', 4);
    forwarder.push(Buffer.from('abcdefghij\n'));
    expect(writes).toEqual(['abcd\n', 'efgh\n', 'ij\n']);
  });
});

describe('command-line options', () => {
  const options: OptionSpec[] = [
    { key: 'size', flags: ['-n', '-np'], value: 'N', help: '' },
    { key: 'tag', flags: ['--tag-output'], help: '' },
    { key: 'later', flags: ['--threads'], help: '', unavailable: 'not yet' },
  ];

  it('stops at the app: everything after it belongs to the app', () => {
    const parsed = parseArgs('vmcomm run', ['-n', '3', '--tag-output', 'app.js', '-n', '--tag-output'], options);
    expect(parsed.values.get('size')).toBe('3');
    expect(parsed.values.get('tag')).toBe(true);
    expect(parsed.rest).toEqual(['app.js', '-n', '--tag-output']);
    expect(parseArgs('x', ['-n4', '--', '-app.js'], options)).toMatchObject({ rest: ['-app.js'] });
    expect(parseArgs('x', ['-np', '2', 'a'], options).values.get('size')).toBe('2');
  });

  it('refuses unknown, valueless and unavailable options with one-line usage errors', () => {
    expect(() => parseArgs('vmcomm run', ['--nope'], options)).toThrow(new UsageError("vmcomm run: unknown option --nope (see 'vmcomm run --help')"));
    expect(() => parseArgs('vmcomm run', ['-n'], options)).toThrow(/needs a value/);
    expect(() => parseArgs('vmcomm run', ['--threads'], options)).toThrow(/--threads is not available yet: not yet/);
  });
});

describe('ts-node settings', () => {
  const root = mkdtempSync(path.join(tmpdir(), 'vmcomm-ts-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('uses the tsconfig nearest the app, not the one of the current directory', () => {
    mkdirSync(path.join(root, 'proj', 'src'), { recursive: true });
    writeFileSync(path.join(root, 'proj', 'tsconfig.json'), '{}');
    writeFileSync(path.join(root, 'proj', 'package.json'), '{"type":"module"}');
    const settings = tsNodeSettings(path.join(root, 'proj', 'src', 'app.ts'), {});
    expect(settings.env).toEqual({ TS_NODE_PROJECT: path.join(root, 'proj', 'tsconfig.json'), TS_NODE_TRANSPILE_ONLY: 'true' });
    expect(settings.commonJs).toBe(false);
  });

  it('without a tsconfig: our compiler options, no project search; CommonJS where Node says so', () => {
    mkdirSync(path.join(root, 'bare'), { recursive: true });
    const settings = tsNodeSettings(path.join(root, 'bare', 'app.ts'), {}, { typecheck: true });
    expect(settings.env).toEqual({
      TS_NODE_SKIP_PROJECT: 'true',
      TS_NODE_COMPILER_OPTIONS: JSON.stringify(DEFAULT_COMPILER_OPTIONS),
      TS_NODE_TRANSPILE_ONLY: 'false',
      TS_NODE_TYPE_CHECK: 'true',
    });
    expect(settings.commonJs).toBe(true);
    expect(tsNodeSettings(path.join(root, 'bare', 'app.mts'), {}).commonJs).toBe(false);
  });

  it("keeps the user's own TS_NODE_* choices", () => {
    const settings = tsNodeSettings(path.join(root, 'bare', 'app.ts'), { TS_NODE_PROJECT: '/x/tsconfig.json', TS_NODE_TYPE_CHECK: 'true' });
    expect(settings.env).toEqual({});
  });
});
