// vmcomm/mpi as an MPI program sees it: every call checked against MPI's semantics by each rank
// (tests/fixtures/mpi/adapter-checks.ts), across process and thread ranks and both kinds of transport.
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { lines, ROOT, vmcomm } from '../helpers/processes.js';

const CHECKS = 'tests/fixtures/mpi/adapter-checks.ts';

function expectAllOk(out: { code: number | null; stdout: string; stderr: string }, n: number): void {
  const failed = lines(out.stdout).filter((l) => l.includes('FAILED') || l.startsWith('  '));
  expect(failed).toEqual([]);
  expect(lines(out.stdout).filter((l) => /^mpi-adapter ok rank \d+ of \d+$/.test(l))).toHaveLength(n);
  expect(out.code).toBe(0);
}

describe('vmcomm/mpi', () => {
  for (const [label, args, n, env] of [
    ['1 process', ['-n', '1'], 1, {}],
    ['3 processes (shared memory)', ['-n', '3'], 3, {}],
    // Over tcp alone nothing proves shared memory, so COMM_TYPE_SHARED groups hold one rank each.
    ['4 processes over tcp', ['-n', '4'], 4, { VMCOMM_BACKENDS: 'tcp', EXPECT_NODE_SIZE: '1' }],
    ['4 thread-ranks', ['--threads', '-n', '4'], 4, {}],
  ] as const) {
    it(`every call behaves as MPI specifies: ${label}`, async () => {
      const out = await vmcomm(['run', ...args, CHECKS], { ...process.env, ...env }, 120_000);
      expectAllOk(out, n);
    }, 130_000);
  }

  it('adapters use only the public API of vmcomm (DESIGN §1: they import what lib/index.ts exports)', () => {
    for (const adapter of ['mpi', 'stream']) {
    const dir = path.join(ROOT, 'adapters', adapter);
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const text = readFileSync(path.join(dir, file), 'utf8');
      const specifiers = [...text.matchAll(/^(?:import|export)\b[^;]*?from '([^']+)'/gms)].map((m) => m[1]);
      for (const s of specifiers) expect(s === 'vmcomm' || s.startsWith('./') || s.startsWith('node:'), `${file} imports ${s}`).toBe(true);
    }
    }
  });
});
