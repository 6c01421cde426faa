// The core across real processes: examples and semantics fixtures under `vmcomm run` and under a
// separately served `vmcomm rendezvous`.
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { finish, lines, MUST_FINISH_MS, ROOT, start, vmcomm } from '../helpers/processes.js';

const SEMANTICS = 'tests/fixtures/core/p2p-semantics.ts';

describe('vmcomm jobs with the core', () => {
  it('examples/hello.ts prints 4 ranks, each with its transport to every peer', async () => {
    for (const [env, between] of [
      [process.env, 'shm'],
      [{ ...process.env, VMCOMM_BACKENDS: 'tcp' }, 'tcp'],
    ] as const) {
      const out = await vmcomm(['run', '-n', '4', 'examples/hello.ts'], env);
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      const got = lines(out.stdout).sort();
      expect(got).toHaveLength(4);
      got.forEach((line, rank) => {
        const peers = Array.from({ length: 4 }, (_, p) => `${p}:${p === rank ? 'self' : between}`).join(' ');
        expect(line).toMatch(new RegExp(`^hello from rank ${rank} of 4 on .+ \\(pid \\d+\\) — ${peers}$`));
      });
    }
  });

  it('a blocking call nobody awaits reports its rejection as unhandled, a request nobody awaits does not', () => {
    // send/recv/… return their request's own promise (no async wrapper): it must still surface a
    // failure the program ignored, as an async function's promise does; a request may be test()ed only.
    const run = (call: string) =>
      spawnSync(process.execPath, ['--input-type=module', '-e', `import { init } from 'vmcomm'; const comm = await init(); ${call}; await new Promise((r) => setTimeout(r, 50)); await comm.finalize(); console.log('finished');`], {
        cwd: ROOT,
        encoding: 'utf8',
        timeout: MUST_FINISH_MS,
      });
    for (const call of ['comm.sendBuffer(new Uint8Array(1), 7)', 'comm.send(1, 7)', 'comm.recvBuffer(new Uint8Array(1), 0, -5)', 'comm.sendBuffer(new Uint8Array(1), 7, 0, { timeout: 1000 })']) {
      const out = run(call);
      expect(out.status, call).not.toBe(0);
      expect(out.stderr, call).toMatch(/INVALID_ARGUMENT|VmcommError/);
      expect(out.stdout, call).not.toMatch(/finished/);
    }
    for (const call of ['comm.isendBuffer(new Uint8Array(1), 7)', 'comm.irecv(0, -5)', 'comm.isendBuffer(new Uint8Array(1), 7).wait()']) {
      const out = run(call);
      expect([out.status, out.stderr], call).toEqual([0, '']);
      expect(out.stdout, call).toMatch(/finished/);
    }
  });

  it('examples/ring.ts passes a token round 3 ranks', async () => {
    const out = await vmcomm(['run', '-n', '3', 'examples/ring.ts', '4']);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain('ring OK (3 ranks, 4 laps)');
  });

  for (const n of [1, 2, 3, 8]) {
    it(`point-to-point semantics hold at ${n} rank(s) in ${n} processes`, async () => {
      const out = await vmcomm(['run', '-n', String(n), SEMANTICS], process.env, 120_000);
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      const ok = lines(out.stdout).filter((l) => / OK \(/.test(l));
      expect(ok).toHaveLength(n);
    }, 130_000);
  }

  it('moves a 256 MiB message each way round a ring of 2 processes', async () => {
    const out = await vmcomm(['run', '-n', '2', SEMANTICS, '--huge'], process.env, 120_000);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(lines(out.stdout).filter((l) => / OK \(/.test(l))).toHaveLength(2);
  }, 130_000);

  // Flow control: credits (and the rendezvous window, tests/unit/rendezvous-window.test.ts) bound what
  // a fast sender can pile up at a slow receiver.
  const FLOOD_RSS_BOUND_MIB = 100; // the eager quarter alone is 256 MiB: buffering it would break this
  for (const backend of ['shm', 'tcp']) {
    it(`1 GiB flooded at a slow receiver over ${backend}: every byte arrives, its memory grows < ${FLOOD_RSS_BOUND_MIB} MiB`, async () => {
      const out = await vmcomm(['run', '-n', '2', 'tests/fixtures/core/flood.ts'], { ...process.env, VMCOMM_BACKENDS: backend }, 120_000);
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      const m = /flood (\w+): (\d+) messages, (\d+) MiB in [\d.]+ s, (\d+) bad, receiver RSS grew ([\d.]+) MiB/.exec(out.stdout);
      expect(m, out.stdout).not.toBeNull();
      expect(m![1]).toBe(backend);
      expect(Number(m![3])).toBeGreaterThanOrEqual(1024);
      expect(Number(m![4])).toBe(0);
      expect(Number(m![5])).toBeLessThan(FLOOD_RSS_BOUND_MIB);
    }, 130_000);
  }

  it('a SIGKILLed rank: survivors get PEER_LOST, still talk and finalize; the launcher names the rank', async () => {
    const out = await vmcomm(['run', '-n', '3', 'tests/fixtures/core/peer-loss.ts']);
    expect(out.stdout).toContain('rank 0: PEER_LOST from rank 1');
    expect(out.stdout).toContain('rank 2: got "still here"');
    expect(out.stdout).toContain('rank 0: finalized');
    expect(out.stdout).toContain('rank 2: finalized');
    expect(out.stderr).toMatch(/rank 1 \(pid \d+\) was killed by SIGKILL/);
    expect(out.code).not.toBe(0);
  });

  it('comm.abort(7) ends every rank and the launcher exits 7', async () => {
    const out = await vmcomm(['run', '-n', '3', 'tests/fixtures/core/abort.ts']);
    expect(out.stdout).toContain('rank 1: aborting');
    expect(out.stdout).not.toContain('not reached');
    expect(out.code).toBe(7);
  });

  it('ranks started by hand join a job served by `vmcomm rendezvous`', async () => {
    const server = start(['rendezvous', '-n', '3']);
    let resolveVars!: (v: Record<string, string>) => void;
    const vars = new Promise<Record<string, string>>((r) => (resolveVars = r));
    const served = finish(server, (stdout) => {
      const found = Object.fromEntries(lines(stdout).map((l) => l.split('=', 2) as [string, string]));
      if (found.VMCOMM_SIZE) resolveVars(found);
    });
    const v = await vars;
    const ranks = [0, 1, 2].map((rank) => {
      // Only the four documented variables (VMCOMM_JOB_ID is derived from the secret).
      const env = { ...process.env, VMCOMM_RENDEZVOUS: v.VMCOMM_RENDEZVOUS, VMCOMM_RANK: String(rank), VMCOMM_SIZE: '3', VMCOMM_JOB_SECRET: v.VMCOMM_JOB_SECRET };
      return finish(spawn(process.execPath, ['--import', 'vmcomm/ts-register', path.join(ROOT, 'examples/hello.ts')], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] }));
    });
    const outs = await Promise.all(ranks);
    for (const [rank, o] of outs.entries()) {
      expect(o.code).toBe(0);
      expect(o.stdout).toMatch(new RegExp(`^hello from rank ${rank} of 3 `));
    }
    expect((await served).code).toBe(0);
  });
});
