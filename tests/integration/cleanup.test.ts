// Issue 9, cleanup: no vmcomm file of a job remains in /dev/shm after a normal exit, after abort,
// after SIGKILL of one rank (tests/integration/shm.test.ts), and after SIGKILL of the whole job
// (launcher included), where `vmcomm clean` removes them because their locks died with the ranks.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { lines, ROOT, VMCOMM, vmcomm } from '../helpers/processes.js';

const FIXTURE = 'tests/fixtures/core/cleanup.mjs';
const filesOf = (job: string) => readdirSync('/dev/shm').filter((f) => f.startsWith(`vmcomm-${job}-`));
const jobOf = (stdout: string) => {
  const m = /^job (\w+) rank \d+ shm$/m.exec(stdout);
  if (!m) throw new Error(`no job line over shm in:\n${stdout}`);
  return m[1];
};

describe('no shm file outlives its job', () => {
  it('after a normal exit', async () => {
    const out = await vmcomm(['run', '-n', '3', FIXTURE, 'ok']);
    expect(out.code).toBe(0);
    expect(filesOf(jobOf(out.stdout))).toEqual([]);
  });

  it('after abort', async () => {
    const out = await vmcomm(['run', '-n', '3', FIXTURE, 'abort']);
    expect(out.code).toBe(3);
    expect(filesOf(jobOf(out.stdout))).toEqual([]);
  });

  it('after SIGKILL of the whole job (launcher and ranks): `vmcomm clean` removes what they left', async () => {
    const child = spawn(process.execPath, [VMCOMM, 'run', '-n', '3', FIXTURE, 'hang'], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    const deadline = Date.now() + 60_000;
    while (lines(stdout).filter((l) => l.startsWith('ready ')).length < 3) {
      if (Date.now() > deadline) throw new Error(`ranks never got ready:\n${stdout}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const job = jobOf(stdout);
    expect(filesOf(job).length).toBeGreaterThan(0);
    process.kill(-child.pid!, 'SIGKILL');
    await new Promise((r) => child.on('close', r));
    // Nobody was left to clean up: the files are there, but their locks died with the ranks.
    expect(filesOf(job).length).toBeGreaterThan(0);
    // --job: only this job's files (other tests may be creating theirs right now).
    const clean = await vmcomm(['clean', '--min-age', '0', '--job', job]);
    expect(clean.code).toBe(0);
    expect(filesOf(job)).toEqual([]);
  });
});
