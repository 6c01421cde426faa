// The soak's 30-second version (issue 9): `npm run soak -- --seconds 30`. As root: 8 ranks in the
// simulated 2 hosts × 2 VMs topology (every transport); elsewhere local jobs (threads, shm, ivshmem,
// tcp). Nothing may be lost, duplicated, reordered or damaged, and every collective must be right.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/processes.js';

describe('soak', () => {
  it('30 s of random traffic and collectives over every backend: 0 lost, duplicated, reordered, corrupt', async () => {
    const child = spawn(process.execPath, ['--import', path.join(ROOT, 'dist/lib/launch/ts-register.js'), 'tests/soak/run.ts', '--seconds', '30', '-n', '8'], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    console.log(stdout);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const total = /soak total: (\d+) messages, ([\d.]+) GiB, lost 0, duplicated 0, reordered 0, corrupt 0, (\d+) collectives with 0 wrong results — OK/.exec(stdout);
    expect(total, stdout).not.toBeNull();
    expect(Number(total![1])).toBeGreaterThan(1000);
    // Every transport the job can have carried traffic (self, threads, shm, and ivshmem + tcp).
    for (const t of ['self', 'threads', 'shm', 'ivshmem', 'tcp']) expect(stdout).toMatch(new RegExp(`\\b${t} \\d+`));
  }, 180_000);
});
