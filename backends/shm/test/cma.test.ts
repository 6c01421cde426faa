// Single copy over shm (cma.ts; the protocol itself is tested in lib/ring/test/single-copy.test.ts):
// between worlds of this process and between processes, VMCOMM_CMA=0, and a reader that the kernel
// refuses (another user, via setpriv: CI runs as root, where CMA always works).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import { lines, ROOT, vmcomm } from '../../../tests/helpers/processes.js';
import { addon, ensureDist, finalizeAll, pattern, same, startJob } from './helpers.js';

describe.skipIf(addon === undefined)('single copy between ranks', () => {
  beforeAll(ensureDist, 120_000);

  it('moves large payloads by single copy between worlds of one process; cma: false keeps them in the ring', async () => {
    for (const cma of [true, false]) {
      const job = await startJob(2, { cma, cmaMinBytes: 64 * 1024 });
      try {
        const data = pattern(3 * 1024 * 1024 + 1, 13);
        const into = new Uint8Array(data.byteLength);
        const r = job.comms[1].irecvBuffer(into, 0, 1);
        await job.comms[0].sendBuffer(data, 1, 1);
        await r;
        expect(same(into, data)).toBe(true);
        const sent = job.transports[0].singleCopyCounts.sent;
        const reads = job.transports[1].singleCopyCounts.reads;
        if (cma && addon!.capability.cma) {
          expect(sent).toBe(1);
          expect(reads).toBe(1);
        } else {
          expect(sent).toBe(0);
          expect(reads).toBe(0);
        }
      } finally {
        await finalizeAll(job);
      }
    }
  });

  it('between processes: single copy by default, none under VMCOMM_CMA=0; the data arrives either way', async () => {
    const fixture = 'tests/fixtures/shm/cma-pair.mjs';
    const on = await vmcomm(['run', '-n', '2', fixture]);
    expect(on.stderr).toBe('');
    expect(on.code).toBe(0);
    const off = await vmcomm(['run', '-n', '2', fixture], { ...process.env, VMCOMM_CMA: '0' });
    expect(off.stderr).toBe('');
    expect(off.code).toBe(0);
    for (const line of lines(on.stdout)) expect(line).toMatch(/shm ok, .*"sent":3,"fallbacks":0,"reads":3,"refusals":0/);
    for (const line of lines(off.stdout)) expect(line).toMatch(/shm ok, .*"sent":0,"fallbacks":0,"reads":0,"refusals":0/);
    expect(lines(on.stdout)).toHaveLength(2);
    expect(lines(off.stdout)).toHaveLength(2);
  }, 60_000);

  describe('a reader the kernel refuses (non-root users via setpriv)', () => {
    const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
    const reason =
      process.getuid?.() !== 0 ? 'not root (setpriv needs root to switch users)' : setpriv === undefined ? 'setpriv is not installed' : undefined;
    if (reason !== undefined) {
      it.skip(`skipped: ${reason}`, () => {});
      return;
    }

    it('gets EPERM, falls back to the ring for that peer, and every message still arrives in order', async () => {
      // Both ranks run as uid 65534 for files (so each can open the other's 0600 files), but rank 1's
      // real uid is 65533: process_vm_readv checks real ids, so each side is refused reading the other.
      const rendezvous = spawn(process.execPath, ['bin/vmcomm.js', 'rendezvous', '-n', '2'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
      const env = await new Promise<Record<string, string>>((resolve) => {
        let text = '';
        rendezvous.stdout!.on('data', (b: Buffer) => {
          text += b.toString();
          const vars = Object.fromEntries(lines(text).map((l) => l.split('=', 2) as [string, string]));
          if (Object.keys(vars).length >= 4) resolve(vars);
        });
      });
      const ids = [
        ['--reuid=65534', '--regid=65534'],
        ['--ruid=65533', '--euid=65534', '--rgid=65534', '--egid=65534'],
      ];
      const outs = await Promise.all(
        [0, 1].map(
          (rank) =>
            new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
              const child = spawn(setpriv!, [...ids[rank], '--clear-groups', process.execPath, 'tests/fixtures/shm/cma-pair.mjs'], {
                cwd: ROOT,
                env: { ...process.env, ...env, VMCOMM_RANK: String(rank) },
                stdio: ['ignore', 'pipe', 'pipe'],
              });
              let stdout = '';
              let stderr = '';
              child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
              child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
              const timer = setTimeout(() => child.kill('SIGKILL'), 45_000);
              child.once('close', (code) => {
                clearTimeout(timer);
                resolve({ code, stdout, stderr });
              });
            }),
        ),
      );
      rendezvous.kill();
      for (const [rank, out] of outs.entries()) {
        expect(out.stderr, `rank ${rank}`).toBe('');
        expect(out.code, `rank ${rank}`).toBe(0);
        expect(out.stdout).toMatch(new RegExp(`^rank ${rank}: shm ok, uid ${rank === 0 ? 65534 : 65533}/65534, single copy \\{"sent":0,"fallbacks":1,"reads":0,"refusals":1,"helped":0\\}`));
      }
    }, 60_000);
  });
});
