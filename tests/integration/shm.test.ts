// The shm transport between real processes (`vmcomm run`): shm is not a built-in transport yet, so
// tests/fixtures/shm/with-shm.ts plugs it in before each app runs. Also: 8 ranks on a 2-core machine,
// and no /dev/shm file left behind, after a normal run or when a rank is SIGKILLed.
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureDist, shmFiles } from '../../backends/shm/test/helpers.js';
import { lines, vmcomm } from '../helpers/processes.js';
import { tryLoadNative } from '../../backends/native/native.js';
import { allowedCpus } from '../../lib/launch/binding.js';

const WITH_SHM = 'tests/fixtures/shm/with-shm.ts';
const addon = tryLoadNative().addon;

/** `hello from rank R of N on H (pid P) — 0:t 1:t …` → rank, pid and the transport to each peer. */
function parseHello(line: string): { rank: number; pid: number; transports: string[] } {
  const m = /^hello from rank (\d+) of \d+ on .+ \(pid (\d+)\) — (.*)$/.exec(line);
  if (m === null) throw new Error(`not a hello line: ${line}`);
  return { rank: Number(m[1]), pid: Number(m[2]), transports: m[3].split(' ').map((p) => p.split(':')[1]) };
}

describe.skipIf(addon === undefined)('shm between processes', () => {
  beforeAll(ensureDist, 120_000);

  it('examples/hello.ts -n 4: every pair of processes uses shm, and no file is left', async () => {
    const before = new Set(shmFiles());
    const out = await vmcomm(['run', '-n', '4', WITH_SHM, 'examples/hello.ts']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const hellos = lines(out.stdout).map(parseHello).sort((a, b) => a.rank - b.rank);
    expect(hellos.map((h) => h.rank)).toEqual([0, 1, 2, 3]);
    expect(new Set(hellos.map((h) => h.pid)).size).toBe(4);
    for (const h of hellos) expect(h.transports).toEqual([0, 1, 2, 3].map((p) => (p === h.rank ? 'self' : 'shm')));
    expect(shmFiles().filter((f) => !before.has(f))).toEqual([]);
  });

  it('point-to-point semantics hold over shm with -n 4 (single copy on and off)', async () => {
    for (const env of [{}, { VMCOMM_CMA: '0' }]) {
      const out = await vmcomm(['run', '-n', '4', WITH_SHM, 'tests/fixtures/core/p2p-semantics.ts'], { ...process.env, ...env, VMCOMM_TEST_SHM_REPORT: '1' }, 120_000);
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      const ok = lines(out.stdout).filter((l) => / OK \(/.test(l));
      expect(ok).toHaveLength(4);
      for (const l of ok) expect(l).toMatch(/transports (self|shm)(,(self|shm)){3}\)$/);
      const reports = lines(out.stdout).filter((l) => /: shm up; /.test(l));
      expect(reports).toHaveLength(4);
      // The 70 000- and 1 000 000-byte buffers to each of 3 peers go by single copy unless it is off.
      const sent = reports.map((l) => Number(/single copy sent (\d+)/.exec(l)![1]));
      if ('VMCOMM_CMA' in env || !addon!.capability.cma) expect(sent).toEqual([0, 0, 0, 0]);
      else expect(sent).toEqual([6, 6, 6, 6]);
    }
  }, 260_000);

  it('8 ranks on this machine (2 cores in CI) complete; with more ranks than cores they yield', async () => {
    const out = await vmcomm(['run', '-n', '8', WITH_SHM, 'tests/fixtures/core/p2p-semantics.ts'], { ...process.env, VMCOMM_TEST_SHM_REPORT: '1' }, 120_000);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(lines(out.stdout).filter((l) => / OK \(/.test(l))).toHaveLength(8);
    const reports = lines(out.stdout).filter((l) => /: shm up; /.test(l));
    expect(reports).toHaveLength(8);
    const { availableParallelism } = await import('node:os');
    if (availableParallelism() < 8) for (const r of reports) expect(r).toMatch(/yield true/);
  }, 130_000);

  it('ranks pinned one per core (--bind-to core) spin: pinning does not make them look oversubscribed', async () => {
    // Once pinned, os.availableParallelism() says 1 in every rank: counting that as the host's cores
    // made two ranks on two cores sched_yield after every empty poll (about 0.5 µs per message).
    const cpus = allowedCpus();
    if (cpus.length < 2 || !addon) {
      console.log(`skipped: --bind-to core needs 2 CPUs (this process may use ${cpus.length}) and the addon (${addon ? 'loaded' : 'missing'})`);
      return;
    }
    const out = await vmcomm(['run', '-n', '2', '--bind-to', 'core', WITH_SHM, 'tests/fixtures/core/p2p-semantics.ts'], { ...process.env, VMCOMM_TEST_SHM_REPORT: '1' }, 120_000);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const reports = lines(out.stdout).filter((l) => /: shm up; /.test(l));
    expect(reports).toHaveLength(2);
    for (const r of reports) expect(r).toMatch(/yield false/);
  }, 130_000);

  it('thread-ranks (--threads-per-process 2): threads inside a process, shm across, nothing crashes at exit', async () => {
    // The addon is loaded with RTLD_NODELETE: V8 frees the mappings after the last worker that loaded
    // it exits, with a deleter that must still be there (else SIGSEGV at exit).
    const before = new Set(shmFiles());
    const out = await vmcomm(['run', '--threads-per-process', '2', '-n', '4', WITH_SHM, 'examples/hello.ts']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const hellos = lines(out.stdout).map(parseHello).sort((a, b) => a.rank - b.rank);
    const host = (r: number) => r >> 1;
    for (const h of hellos) expect(h.transports).toEqual([0, 1, 2, 3].map((p) => (p === h.rank ? 'self' : host(p) === host(h.rank) ? 'threads' : 'shm')));
    expect(shmFiles().filter((f) => !before.has(f))).toEqual([]);
  });

  it('a SIGKILLed rank: the others get PEER_LOST and finish, and the launcher removes its files', async () => {
    const before = new Set(shmFiles());
    const out = await vmcomm(['run', '-n', '3', WITH_SHM, 'tests/fixtures/core/peer-loss.ts']);
    expect(out.stdout).toContain('rank 0: PEER_LOST from rank 1');
    expect(out.stdout).toContain('rank 2: got "still here"');
    expect(out.stdout).toContain('rank 0: finalized');
    expect(out.stderr).toMatch(/rank 1 \(pid \d+\) was killed by SIGKILL/);
    expect(out.code).not.toBe(0);
    expect(shmFiles().filter((f) => !before.has(f))).toEqual([]);
  });

  it('a reader SIGKILLed while its sender waits on a full ring: the sends fail with PEER_LOST, nothing hangs', async () => {
    const before = new Set(shmFiles());
    const out = await vmcomm(['run', '-n', '2', WITH_SHM, 'tests/fixtures/shm/dead-reader.ts']);
    expect(lines(out.stdout)).toEqual(['rank 0: sends failed with PEER_LOST', 'rank 0: finalized']);
    expect(out.stderr).toMatch(/rank 1 \(pid \d+\) was killed by SIGKILL/);
    expect(shmFiles().filter((f) => !before.has(f))).toEqual([]);
  });
});
