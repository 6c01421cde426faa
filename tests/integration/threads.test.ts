// Thread-ranks across real processes: `vmcomm run --threads` and `--threads-per-process`, the
// transport matrix they give (threads inside a process, tcp across), the semantics fixture on them,
// how the launcher learns that a thread-rank ended, and runThreadRanks (a job inside this process).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { lines, ROOT, vmcomm } from '../helpers/processes.js';

const SEMANTICS = 'tests/fixtures/core/p2p-semantics.ts';
const RANK_JS = path.join(ROOT, 'tests/fixtures/launch/rank.mjs');

/** `hello from rank R of N on H (pid P) — 0:t 1:t …` → rank, pid and the transport to each peer. */
function parseHello(line: string): { rank: number; pid: number; transports: string[] } {
  const m = /^(?:\[\d+\] )?hello from rank (\d+) of \d+ on .+ \(pid (\d+)\) — (.*)$/.exec(line);
  if (m === null) throw new Error(`not a hello line: ${line}`);
  return { rank: Number(m[1]), pid: Number(m[2]), transports: m[3].split(' ').map((p) => p.split(':')[1]) };
}

describe('thread-ranks (vmcomm run --threads, --threads-per-process)', () => {
  it('--threads -n 4: one process, every pair over threads', async () => {
    const out = await vmcomm(['run', '--threads', '-n', '4', 'examples/hello.ts']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const hellos = lines(out.stdout).map(parseHello).sort((a, b) => a.rank - b.rank);
    expect(hellos.map((h) => h.rank)).toEqual([0, 1, 2, 3]);
    expect(new Set(hellos.map((h) => h.pid)).size).toBe(1);
    for (const h of hellos) expect(h.transports).toEqual([0, 1, 2, 3].map((p) => (p === h.rank ? 'self' : 'threads')));
  });

  it('--threads-per-process 2 -n 4 with VMCOMM_BACKENDS=threads,tcp: two processes; threads inside each, tcp across', async () => {
    const out = await vmcomm(['run', '--threads-per-process', '2', '-n', '4', '--tag-output', 'examples/hello.ts'], { ...process.env, VMCOMM_BACKENDS: 'threads,tcp' });
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const got = lines(out.stdout);
    for (const line of got) expect(line).toMatch(/^\[(\d)\] hello from rank \1 /);
    const hellos = got.map(parseHello).sort((a, b) => a.rank - b.rank);
    expect(hellos.map((h) => h.rank)).toEqual([0, 1, 2, 3]);
    expect(hellos[0].pid).toBe(hellos[1].pid);
    expect(hellos[2].pid).toBe(hellos[3].pid);
    expect(hellos[0].pid).not.toBe(hellos[2].pid);
    const host = (r: number) => r >> 1;
    for (const h of hellos) expect(h.transports).toEqual([0, 1, 2, 3].map((p) => (p === h.rank ? 'self' : host(p) === host(h.rank) ? 'threads' : 'tcp')));
  });

  for (const args of [
    ['--threads', '-n', '4'],
    ['--threads-per-process', '2', '-n', '4'],
    // 8 thread-ranks on a 2-core machine: they must yield, not spin each other out.
    ['--threads', '-n', '8'],
  ]) {
    it(`point-to-point semantics hold with ${args.join(' ')}`, async () => {
      const n = Number(args.at(-1));
      const out = await vmcomm(['run', ...args, SEMANTICS], process.env, 120_000);
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      const ok = lines(out.stdout).filter((l) => / OK \(/.test(l));
      expect(ok).toHaveLength(n);
      if (args[0] === '--threads') for (const l of ok) expect(l).not.toMatch(/tcp/);
    }, 130_000);
  }

  it('a thread-rank that exits before finalize is named; the others are told and finish; its code is the status', async () => {
    const out = await vmcomm(['run', '--threads-per-process', '2', '-n', '4', RANK_JS, 'exit', '1', '3']);
    expect(out.code).toBe(3);
    expect(out.stderr).toMatch(/rank 1 \(a thread of pid \d+\) exited with code 3 before finalize/);
    expect(lines(out.stdout).filter((l) => / gathered 0,1,2,3$/.test(l))).toHaveLength(4);
  });

  it('an uncaught exception in a thread-rank is printed and named; its peers get PEER_LOST and finish', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'vmcomm-threads-'));
    const app = path.join(dir, 'throws.mjs');
    writeFileSync(
      app,
      [
        `import { init } from ${JSON.stringify(pathToFileURL(path.join(ROOT, 'dist/lib/index.js')).href)};`,
        'const comm = await init();',
        "if (comm.rank === 1) throw new Error('boom in rank 1');",
        'const err = await comm.recv(1, 1).then(() => undefined, (e) => e);',
        'console.log(`rank ${comm.rank}: ${err?.code} from ${err?.peer}`);',
        'await comm.finalize();',
      ].join('\n'),
    );
    try {
      const out = await vmcomm(['run', '--threads', '-n', '3', app]);
      expect(out.code).toBe(1);
      expect(out.stderr).toMatch(/Error: boom in rank 1/);
      expect(out.stderr).toMatch(/rank 1 \(a thread of pid \d+\) exited with code 1 before finalize/);
      expect(lines(out.stdout).sort()).toEqual(['rank 0: PEER_LOST from 1', 'rank 2: PEER_LOST from 1']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a SIGKILLed thread host: its ranks are named, the other processes\' ranks get PEER_LOST and finalize', async () => {
    const out = await vmcomm(['run', '--threads-per-process', '1', '-n', '3', 'tests/fixtures/core/peer-loss.ts']);
    expect(out.stdout).toContain('rank 0: PEER_LOST from rank 1');
    expect(out.stdout).toContain('rank 2: got "still here"');
    expect(out.stdout).toContain('rank 0: finalized');
    expect(out.stderr).toMatch(/rank 1 \(a thread of pid \d+\) was killed by SIGKILL/);
    expect(out.code).not.toBe(0);
  });

  it('comm.abort(7) in a thread-rank ends the job with status 7', async () => {
    const out = await vmcomm(['run', '--threads', '-n', '3', 'tests/fixtures/core/abort.ts']);
    expect(out.stdout).toContain('rank 1: aborting');
    expect(out.stdout).not.toContain('not reached');
    expect(out.code).toBe(7);
  });

  it('refuses --threads together with --threads-per-process, and a bad K', async () => {
    for (const args of [
      ['run', '--threads', '--threads-per-process', '2', '-n', '2', RANK_JS],
      ['run', '--threads-per-process', '0', '-n', '2', RANK_JS],
    ]) {
      const out = await vmcomm(args);
      expect(out.code, args.join(' ')).toBe(2);
      expect(lines(out.stderr)).toHaveLength(1);
    }
  });
});

describe('runThreadRanks (a job of thread-ranks inside this process)', () => {
  it('runs examples/hello.ts as 3 thread-ranks and resolves with their exit codes', async () => {
    const { runThreadRanks } = await import(pathToFileURL(path.join(ROOT, 'dist/lib/launch/thread-host.js')).href);
    const stdout: string[] = [];
    const stderr: string[] = [];
    const sink = (into: string[]) => ({ write: (b: Buffer) => into.push(b.toString('utf8')) });
    const codes = await runThreadRanks(path.join(ROOT, 'examples/hello.ts'), 3, { output: { stdout: sink(stdout), stderr: sink(stderr) }, tagOutput: true });
    expect(codes).toEqual([0, 0, 0]);
    expect(stderr.join('')).toBe('');
    const hellos = stdout.join('').split('\n').filter((l) => l !== '').map(parseHello).sort((a, b) => a.rank - b.rank);
    expect(hellos.map((h) => h.pid)).toEqual([process.pid, process.pid, process.pid]);
    for (const h of hellos) expect(h.transports).toEqual([0, 1, 2].map((p) => (p === h.rank ? 'self' : 'threads')));
  });

  it('a rank that throws: its code is 1, the error is printed, the others are told and still end', async () => {
    const { runThreadRanks } = await import(pathToFileURL(path.join(ROOT, 'dist/lib/launch/thread-host.js')).href);
    const stdout: string[] = [];
    const stderr: string[] = [];
    const sink = (into: string[]) => ({ write: (b: Buffer) => into.push(b.toString('utf8')) });
    const codes = await runThreadRanks(RANK_JS, 3, { args: ['exit', '2', '9'], output: { stdout: sink(stdout), stderr: sink(stderr) }, killGraceMs: 1000 });
    expect(codes).toEqual([0, 0, 9]);
  });
});

describe('VMCOMM_RANKS without VMCOMM_RANK', () => {
  it('init() in a process that was meant to host thread-ranks refuses with UNSUPPORTED, naming the thread host', async () => {
    const { readVmcommEnvironment } = await import(pathToFileURL(path.join(ROOT, 'dist/lib/launch/environment.js')).href);
    const env = { VMCOMM_RENDEZVOUS: '127.0.0.1:9', VMCOMM_RANKS: '0,1', VMCOMM_SIZE: '2', VMCOMM_JOB_SECRET: 'ab'.repeat(32) };
    expect(() => readVmcommEnvironment(env)).toThrow(expect.objectContaining({ code: 'UNSUPPORTED', message: expect.stringMatching(/thread-host/) }));
    expect(readVmcommEnvironment({ ...env, VMCOMM_RANK: '1' })).toMatchObject({ rank: 1, size: 2 });
    expect(() => readVmcommEnvironment({ ...env, VMCOMM_RANK: '1', VMCOMM_RANKS: '0,2' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
    expect(() => readVmcommEnvironment({ ...env, VMCOMM_RANK: '0', VMCOMM_RANKS: '0,0' })).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT' }));
  });
});
