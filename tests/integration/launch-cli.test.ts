// `vmcomm run` and `vmcomm rendezvous` as a user runs them: real processes, the built dist/.
// Assertions are on output and exit status; timeouts are only "must finish" safety nets.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { allowedCpus } from '../../lib/launch/binding.js';
import { expectGone, finish, lines, pidsOf, ROOT, start, vmcomm, type Outcome } from '../helpers/processes.js';

const FIXTURES = path.join(ROOT, 'tests', 'fixtures', 'launch');
const RANK_JS = path.join(FIXTURES, 'rank.mjs');
const AFFINITY_JS = path.join(FIXTURES, 'affinity.mjs');
const RANK_TS = path.join(FIXTURES, 'typed-rank.ts');

/** Builds dist/ when a launcher source is newer than its compiled file (`npm test` builds first). */
beforeAll(() => {
  const sources = path.join(ROOT, 'lib', 'launch');
  const stale = readdirSync(sources)
    .filter((f) => f.endsWith('.ts'))
    .some((f) => {
      const compiled = path.join(ROOT, 'dist', 'lib', 'launch', f.replace(/\.ts$/, '.js'));
      return !existsSync(compiled) || statSync(compiled).mtimeMs < statSync(path.join(sources, f)).mtimeMs;
    });
  if (stale) {
    spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  }
  expect(existsSync(path.join(ROOT, 'dist', 'lib', 'launch', 'cli.js')), 'dist/ must be built: run `npm run build`').toBe(true);
}, 120_000);

describe('vmcomm run', () => {
  it('runs 3 ranks of a JS app that gather their ranks, and exits 0', async () => {
    const out = await vmcomm(['run', '-n', '3', RANK_JS]);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const got = lines(out.stdout).sort();
    expect(got).toHaveLength(3);
    got.forEach((line, rank) => expect(line).toMatch(new RegExp(`^rank ${rank} of 3 pid \\d+ address 127\\.0\\.0\\.1 gathered 0,1,2$`)));
    expectGone(pidsOf(out.stdout));
  });

  it('runs a TypeScript app (types, a decorator) through ts-node', async () => {
    const out = await vmcomm(['run', '-n', '2', RANK_TS]);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(lines(out.stdout).sort()).toEqual([
      'rank 0: typed hello from 0; typed hello from 1',
      'rank 1: typed hello from 0; typed hello from 1',
    ]);
  });

  it('--tag-output prefixes every line with [rank]', async () => {
    const out = await vmcomm(['run', '-n', '3', '--tag-output', RANK_JS]);
    expect(out.code).toBe(0);
    const got = lines(out.stdout);
    expect(got).toHaveLength(3);
    for (const line of got) {
      const match = /^\[(\d)\] rank (\d) of 3 /.exec(line);
      expect(match, line).not.toBeNull();
      expect(match?.[1]).toBe(match?.[2]);
    }
  });

  it('exits with the status of a rank that fails, and names it', async () => {
    const out = await vmcomm(['run', '-n', '3', RANK_JS, 'exit', '1', '3']);
    expect(out.code).toBe(3);
    expect(lines(out.stderr)).toEqual([expect.stringMatching(/^vmcomm run: rank 1 \(pid \d+\) exited with code 3 before finalize$/)]);
    expectGone(pidsOf(out.stdout));
  });

  it('a rank killed by SIGKILL: survivors get peer-lost, the launcher names it and exits 137', async () => {
    const out = await vmcomm(['run', '-n', '3', RANK_JS, 'sigkill', '2']);
    expect(out.code).toBe(137);
    const [line] = lines(out.stderr);
    expect(lines(out.stderr)).toHaveLength(1);
    const pid = /^vmcomm run: rank 2 \(pid (\d+)\) was killed by SIGKILL before finalize$/.exec(line)?.[1];
    expect(pid, out.stderr).toBeDefined();
    const peerLost = lines(out.stdout).filter((l) => l.includes('peer-lost'));
    expect(peerLost.sort()).toEqual([
      `rank 0: peer-lost 2: rank 2 (pid ${pid}) was killed by SIGKILL before finalize`,
      `rank 1: peer-lost 2: rank 2 (pid ${pid}) was killed by SIGKILL before finalize`,
    ]);
    expectGone(pidsOf(out.stdout));
  });

  it('abort(7) from a rank: the others are told and the launcher exits 7', async () => {
    const out = await vmcomm(['run', '-n', '3', RANK_JS, 'abort', '1', '7']);
    expect(out.code).toBe(7);
    expect(lines(out.stderr)).toEqual(['vmcomm run: rank 1 aborted the job with code 7: the fixture aborts']);
    expect(lines(out.stdout).filter((l) => l.includes('abort')).sort()).toEqual([
      'rank 0: abort 7 from 1: the fixture aborts',
      'rank 2: abort 7 from 1: the fixture aborts',
    ]);
    expectGone(pidsOf(out.stdout));
  });

  it('ranks that ignore an abort are ended after --kill-grace', async () => {
    const out = await vmcomm(['run', '-n', '3', '--kill-grace', '0.2', RANK_JS, 'abort-ignore', '1', '7']);
    expect(out.code).toBe(7);
    expect(out.stderr).toMatch(/^vmcomm run: sending SIGTERM to ranks 0, 2 0\.2 s after the failure$/m);
    expectGone(pidsOf(out.stdout));
  });

  it('SIGTERM to the launcher ends every rank and exits 143', async () => {
    const child = start(['run', '-n', '3', RANK_JS, 'hang']);
    let signalled = false;
    const out = await finish(child, (stdout) => {
      if (!signalled && lines(stdout).filter((l) => l.endsWith('ready')).length === 3) {
        signalled = true;
        child.kill('SIGTERM');
      }
    });
    expect(out.code).toBe(143);
    expect(out.stderr).toMatch(/sending SIGTERM to ranks 0, 1, 2 on SIGTERM/);
    expectGone(pidsOf(out.stdout));
  });

  it('ranks that ignore SIGTERM get SIGKILL after the grace period', async () => {
    const child = start(['run', '-n', '2', '--kill-grace', '0.2', RANK_JS, 'stubborn']);
    let signalled = false;
    const out = await finish(child, (stdout) => {
      if (!signalled && lines(stdout).filter((l) => l.endsWith('ready')).length === 2) {
        signalled = true;
        child.kill('SIGTERM');
      }
    });
    expect(out.code).toBe(143);
    expect(out.stderr).toMatch(/sending SIGKILL to ranks 0, 1 0\.2 s after SIGTERM/);
    expectGone(pidsOf(out.stdout));
  });

  it('--backends reaches the ranks as VMCOMM_BACKENDS', async () => {
    const out = await vmcomm(['run', '-n', '2', '--backends', 'shm,tcp', RANK_JS, 'env']);
    expect(out.code).toBe(0);
    expect(lines(out.stdout).filter((l) => l.includes('backends')).sort()).toEqual(['rank 0 backends shm,tcp', 'rank 1 backends shm,tcp']);
  });

  it('ranks that exit 0 without finalize make the job fail', async () => {
    const out = await vmcomm(['run', '-n', '2', RANK_JS, 'no-finalize']);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/rank \d \(pid \d+\) exited with code 0 before finalize/);
  });

  it('refuses bad command lines with exit status 2 and one line', async () => {
    for (const args of [
      ['run', '-n', '2', '--frobnicate', RANK_JS],
      ['run', RANK_JS],
      ['run', '-n', 'two', RANK_JS],
      ['run', '-n', '2', '--threads', '--threads-per-process', '2', RANK_JS],
      ['run', '-n', '2', '--bind-to', 'socket', RANK_JS],
      ['run', '-n', '2', path.join(FIXTURES, 'missing.mjs')],
      ['teleport'],
      ['rendezvous', '-n', '2', '--bind', 'localhost'],
    ]) {
      const out = await vmcomm(args);
      expect(out.code, args.join(' ')).toBe(2);
      expect(lines(out.stderr), args.join(' ')).toHaveLength(1);
      expect(out.stdout).toBe('');
    }
    const bind = await vmcomm(['run', '-n', '2', '--bind-to', 'socket', RANK_JS]);
    expect(bind.stderr).toMatch(/--bind-to takes core or none/);
  });

  it('--bind-to core pins each rank (process or thread) to a CPU of its own, or says why not', async () => {
    const cpus = allowedCpus();
    const n = Math.min(2, cpus.length);
    for (const mode of [[], ['--threads']]) {
      const out = await vmcomm(['run', '-n', String(n), '--bind-to', 'core', ...mode, AFFINITY_JS]);
      expect(out.stderr, mode.join(' ')).toBe('');
      expect(out.code).toBe(0);
      expect(lines(out.stdout).sort(), mode.join(' ')).toEqual(Array.from({ length: n }, (_, r) => `rank ${r} cpus ${cpus[r]} bind ${cpus.join(',')}`));
    }
    // More ranks than CPUs: unbound (each rank keeps every CPU), and the launcher says so.
    const over = await vmcomm(['run', '-n', String(cpus.length + 1), '--bind-to', 'core', AFFINITY_JS]);
    expect(over.code).toBe(0);
    expect(over.stderr).toMatch(new RegExp(`--bind-to core: ${cpus.length + 1} ranks on ${cpus.length} CPUs; the ranks run unbound`));
    expect(lines(over.stdout).every((l) => l.endsWith(` cpus ${cpus.join(',')} bind -`))).toBe(true);
    // A launcher started from a bound rank inherits its CPU list: without --bind-to its ranks must not
    // get it (the transports would count those CPUs as theirs: hostCores()).
    const nested = await vmcomm(['run', '-n', '1', AFFINITY_JS], { ...process.env, VMCOMM_BIND_CPUS: cpus.join(',') });
    expect(nested.code).toBe(0);
    expect(lines(nested.stdout)).toEqual([`rank 0 cpus ${cpus.join(',')} bind -`]);
  });

  it('prints help', async () => {
    const top = await vmcomm(['--help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toMatch(/^usage: vmcomm <command>/);
    expect(top.stdout).toMatch(/^ {2}run /m);
    expect(top.stdout).toMatch(/^ {2}rendezvous /m);
    const run = await vmcomm(['run', '--help']);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^usage: vmcomm run -n N/);
    expect(run.stdout).toMatch(/--kill-grace SECONDS/);
  });
});

describe('vmcomm rendezvous', () => {
  /** Starts `vmcomm rendezvous`, resolves with its printed variables once all four are there. */
  function serve(args: string[]): { child: ChildProcess; vars: Promise<{ [name: string]: string }>; done: Promise<Outcome> } {
    const child = start(['rendezvous', ...args]);
    let resolveVars!: (vars: { [name: string]: string }) => void;
    const vars = new Promise<{ [name: string]: string }>((resolve) => (resolveVars = resolve));
    const done = finish(child, (stdout) => {
      const found = Object.fromEntries(lines(stdout).map((l) => l.split('=', 2) as [string, string]));
      if (Object.keys(found).length === 4) resolveVars(found);
    });
    return { child, vars: Promise.race([vars, done.then((o) => Promise.reject(new Error(`rendezvous ended: ${o.stderr}`)))]), done };
  }

  function rank(vars: { [name: string]: string }, rank: number, args: string[] = []): Promise<Outcome> {
    const env = { ...process.env, ...vars, VMCOMM_RANK: String(rank) };
    return finish(spawn(process.execPath, [RANK_JS, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  it('prints the variables; two hand-started ranks form a job; exits 0 when both finalized', async () => {
    const { vars, done } = serve(['-n', '2']);
    const v = await vars;
    expect(Object.keys(v).sort()).toEqual(['VMCOMM_JOB_ID', 'VMCOMM_JOB_SECRET', 'VMCOMM_RENDEZVOUS', 'VMCOMM_SIZE']);
    expect(v.VMCOMM_RENDEZVOUS).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(v.VMCOMM_JOB_SECRET).toMatch(/^[0-9a-f]{64}$/);
    expect(v.VMCOMM_SIZE).toBe('2');
    const ranks = await Promise.all([rank(v, 0), rank(v, 1)]);
    for (const [r, out] of ranks.entries()) {
      expect(out.code, out.stderr).toBe(0);
      expect(out.stdout).toMatch(new RegExp(`^rank ${r} of 2 pid \\d+ address 127\\.0\\.0\\.1 gathered 0,1$`, 'm'));
    }
    const server = await done;
    expect(server.code).toBe(0);
    expect(server.stderr).toMatch(/all 2 ranks finalized/);
  });

  it('a rank that dies before finalize: the other is told, and the rendezvous exits non-zero', async () => {
    const { vars, done } = serve(['-n', '2', '--grace', '0.2']);
    const v = await vars;
    const [r0, r1] = await Promise.all([rank(v, 0, ['sigkill', '1']), rank(v, 1, ['sigkill', '1'])]);
    expect(r1.signal).toBe('SIGKILL');
    expect(r0.code).toBe(0);
    expect(r0.stdout).toMatch(/rank 0: peer-lost 1: rank 1 closed its connection/);
    const server = await done;
    expect(server.code).toBe(1);
    expect(server.stderr).toMatch(/lost: rank 1/);
  });
});
