// Every collective against a sequential reference (tests/fixtures/collectives/matrix.ts) at 1–9
// ranks, as processes and as threads: the op × type × algorithm matrix at small payloads in one job
// per rank count, and the large payloads (up to 1,000,000 elements) in one job of each kind.
import { describe, expect, it } from 'vitest';
import { lines, vmcomm } from '../helpers/processes.js';

const FIXTURE = 'tests/fixtures/collectives/matrix.ts';

async function runMatrix(n: number, threads: boolean, quick: boolean): Promise<void> {
  const args = ['run', '-n', String(n), ...(threads ? ['--threads'] : []), FIXTURE, ...(quick ? ['--quick'] : [])];
  const out = await vmcomm(args, undefined, 240_000);
  if (out.code !== 0) throw new Error(`${args.join(' ')} exited ${out.code}:\n${out.stderr.slice(-3000)}`);
  const ok = lines(out.stdout).filter((l) => l.startsWith('OK rank'));
  expect(ok).toHaveLength(n);
}

describe('collectives against a sequential reference', () => {
  for (let n = 1; n <= 9; n++) {
    it(`${n} rank processes: op × type × algorithm matrix`, () => runMatrix(n, false, true), 300_000);
    it(`${n} thread-ranks: op × type × algorithm matrix`, () => runMatrix(n, true, true), 300_000);
  }
  it('6 thread-ranks in 3 processes, shm off: the locality-aware (two-level) collectives against the reference', async () => {
    // Three shared-memory groups of two ranks: barrier/bcast/reduce/allreduce go hierarchical by default.
    const out = await vmcomm(['run', '-n', '6', '--threads-per-process', '2', FIXTURE, '--quick'], { ...process.env, VMCOMM_BACKENDS: 'self,threads,tcp' }, 240_000);
    if (out.code !== 0) throw new Error(`exited ${out.code}:\n${out.stderr.slice(-3000)}`);
    expect(lines(out.stdout).filter((l) => l.startsWith('OK rank'))).toHaveLength(6);
  }, 300_000);
  it('5 rank processes: payloads up to 1,000,000 elements for every algorithm', () => runMatrix(5, false, false), 300_000);
  it('3 thread-ranks: payloads up to 1,000,000 elements for every algorithm', () => runMatrix(3, true, false), 300_000);
});

describe('collectives when a rank dies', () => {
  it('a SIGKILLed rank mid-allreduce: every survivor gets REVOKED, none hangs; point-to-point and finalize still work', async () => {
    const out = await vmcomm(['run', '-n', '4', 'tests/fixtures/collectives/peer-loss.mjs'], undefined, 60_000);
    for (const r of [0, 1, 2]) {
      expect(out.stdout).toContain(`rank ${r}: REVOKED`);
      expect(out.stdout).toContain(`rank ${r}: later barrier REVOKED`);
      expect(out.stdout).toContain(`rank ${r}: got "hi from ${(r + 2) % 3}"`);
      expect(out.stdout).toContain(`rank ${r}: finalized`);
    }
    expect(out.stderr).toMatch(/rank 3 \(pid \d+\) was killed by SIGKILL/);
  }, 90_000);

  it('the same with the two-level (hierarchical) allreduce and barrier forced', async () => {
    const env = { ...process.env, VMCOMM_COLL_ALLREDUCE: 'hierarchical', VMCOMM_COLL_BARRIER: 'hierarchical' };
    const out = await vmcomm(['run', '-n', '4', 'tests/fixtures/collectives/peer-loss.mjs'], env, 60_000);
    for (const r of [0, 1, 2]) {
      expect(out.stdout).toContain(`rank ${r}: REVOKED`);
      expect(out.stdout).toContain(`rank ${r}: later barrier REVOKED`);
      expect(out.stdout).toContain(`rank ${r}: finalized`);
    }
  }, 90_000);
});
