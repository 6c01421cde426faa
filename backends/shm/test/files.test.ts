// The shm transport's files: 0600, unguessable names, locked while in use, gone after finalize; the
// stale-file sweep (lib/launch/shm-files.ts) that `vmcomm clean` and the launcher run.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseShmFileName, shmFileBase, shmInboxName, shmJobToken, shmRankPrefix, shmRingName, sweepStaleShmFiles } from '../../../lib/launch/shm-files.js';
import { lines, vmcomm } from '../../../tests/helpers/processes.js';
import { createOwnedFile } from '../files.js';
import { addon, ensureDist, finalizeAll, ROOT, shmFiles, startJob } from './helpers.js';

/** A child process that holds an exclusive lock on `file` until its stdin closes. */
async function holdLock(file: string): Promise<ChildProcess> {
  const loader = path.join(ROOT, 'dist/backends/native/native.js');
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { tryLoadNative } = await import(${JSON.stringify(loader)});
       console.log('lock', tryLoadNative().addon.lockFile(process.argv[1], { exclusive: true, wait: false, create: false }));
       process.stdin.resume(); process.stdin.on('end', () => process.exit(0));`,
      file,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const line = await new Promise<string>((resolve) => child.stdout!.once('data', (b: Buffer) => resolve(b.toString())));
  expect(line.trim()).toMatch(/^lock \d+$/);
  return child;
}

/** What another process gets when it tries to lock `file`: `-1` while it is held elsewhere. */
function otherProcessLock(file: string): Promise<string> {
  const loader = path.join(ROOT, 'dist/backends/native/native.js');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [
      '--input-type=module',
      '-e',
      `const { tryLoadNative } = await import(${JSON.stringify(loader)}); console.log(String(tryLoadNative().addon.lockFile(process.argv[1], { exclusive: true, wait: false, create: false })));`,
      file,
    ]);
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.once('close', () => resolve(out.trim()));
  });
}

describe('shm file names', () => {
  it('are per job and rank, with 128 random bits, and parse back', () => {
    const base = shmFileBase('0123abcd0123abcd', 3, 'f'.repeat(32));
    expect(base).toBe(`vmcomm-0123abcd0123abcd-3-${'f'.repeat(32)}`);
    expect(parseShmFileName(shmInboxName(base))).toMatchObject({ job: '0123abcd0123abcd', rank: 3, kind: 'inbox', base });
    expect(parseShmFileName(shmRingName(base, 12))).toMatchObject({ rank: 3, kind: 'ring', to: 12, base });
    expect(shmRankPrefix('0123abcd0123abcd', 3)).toBe('vmcomm-0123abcd0123abcd-3-');
    // Job ids that are not plain tokens are hashed, so the name keeps its shape.
    expect(shmJobToken('local-0011')).toMatch(/^[0-9a-f]{16}$/);
    for (const bad of ['vmcomm-x-1-abc-inbox', `vmcomm-j-01-${'a'.repeat(32)}-inbox`, `vmcomm-j-1-${'a'.repeat(32)}-ring-`, `other-j-1-${'a'.repeat(32)}-inbox`]) {
      expect(parseShmFileName(bad), bad).toBeUndefined();
    }
    expect(() => shmFileBase('j', 0, 'xyz')).toThrow(RangeError);
  });
});

describe.skipIf(addon === undefined)('shm files of a running job', () => {
  beforeAll(ensureDist, 120_000);

  it('are 0600, unguessable, locked while in use, and removed at finalize', async () => {
    const before = new Set(shmFiles());
    const job = await startJob(2);
    const again = await startJob(2);
    try {
      await Promise.all([job.comms[0].send('a', 1, 1), job.comms[1].send('b', 0, 1)]);
      expect(await Promise.all([job.comms[1].recv(0, 1), job.comms[0].recv(1, 1)])).toEqual(['a', 'b']);
      const files = job.transports.flatMap((t) => [t.files.inbox!, ...t.files.rings]);
      expect(files).toHaveLength(4); // two inboxes, a ring each way
      for (const file of files) {
        expect(before.has(file)).toBe(false);
        expect(statSync(file).mode & 0o777).toBe(0o600);
        const parsed = parseShmFileName(path.basename(file))!;
        expect(parsed).toBeDefined();
        // Held: another open of it cannot take the lock, in this process or in another.
        expect(addon!.lockFile(file, { exclusive: true, wait: false, create: false })).toBe(-1);
      }
      expect(await otherProcessLock(files[0])).toBe('-1');
      const randoms = [...job.transports, ...again.transports].map((t) => parseShmFileName(path.basename(t.files.inbox!))!.random);
      expect(new Set(randoms).size).toBe(4);
      for (const r of randoms) expect(r).toMatch(/^[0-9a-f]{32}$/);
      await finalizeAll(job);
      for (const file of files) expect(existsSync(file), file).toBe(false);
    } finally {
      await finalizeAll(job);
      await finalizeAll(again);
    }
    expect(shmFiles().filter((f) => !before.has(f))).toEqual([]);
  });
});

describe.skipIf(addon === undefined)('the stale-file sweep', () => {
  let dir: string;
  beforeAll(() => {
    ensureDist();
    dir = mkdtempSync('/dev/shm/vmcomm-test-sweep-');
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const name = (rank: number, kind: string) => `${shmFileBase('sweeptest', rank, String(rank).repeat(32).slice(0, 32))}-${kind}`;

  it('removes only files whose lock can be taken, leaves held ones and foreign names alone', async () => {
    const held = path.join(dir, name(1, 'inbox'));
    const stale = path.join(dir, name(2, 'inbox'));
    const staleRing = path.join(dir, name(2, 'ring-1'));
    const foreign = path.join(dir, 'vmcomm-not-ours');
    const link = path.join(dir, name(3, 'inbox'));
    for (const f of [held, stale, staleRing, foreign]) writeFileSync(f, 'x', { mode: 0o600 });
    symlinkSync(held, link);
    const holder = await holdLock(held);
    try {
      const young = await sweepStaleShmFiles({ directory: dir, minAgeMs: 60_000 });
      expect(young.removed).toEqual([]);
      expect(young.young.sort()).toEqual([stale, staleRing].sort());
      expect(young.inUse).toEqual([held]);

      const dry = await sweepStaleShmFiles({ directory: dir, dryRun: true });
      expect(dry.removed.sort()).toEqual([stale, staleRing].sort());
      expect(existsSync(stale)).toBe(true);

      const onlyRank2Ring = await sweepStaleShmFiles({ directory: dir, prefix: `${shmRankPrefix('sweeptest', 2)}` });
      expect(onlyRank2Ring.removed.sort()).toEqual([stale, staleRing].sort());
      expect(existsSync(stale) || existsSync(staleRing)).toBe(false);
      expect(existsSync(held)).toBe(true);
      expect(existsSync(foreign)).toBe(true);
      expect(existsSync(link)).toBe(true);
    } finally {
      holder.stdin!.end();
      await new Promise((resolve) => holder.once('close', resolve));
    }
    // The holder is gone, so its lock too: now the file is stale.
    const after = await sweepStaleShmFiles({ directory: dir });
    expect(after.removed).toEqual([held]);
    expect(after.failed).toEqual([]);
  });

  it('a file created but not lockable (EMFILE, not a sweep) is removed, and the lock’s error is what is thrown', () => {
    const real = addon!;
    const emfile = Object.assign(new Error('EMFILE: too many open files, flock'), { code: 'EMFILE' });
    const failing = Object.create(real, {
      lockFile: {
        value: () => {
          throw emfile;
        },
      },
    }) as typeof real;
    const file = path.join(dir, name(4, 'inbox'));
    expect(() => createOwnedFile(failing, dir, name(4, 'inbox'), 4096)).toThrow(expect.objectContaining({ name: 'VmcommError', code: 'UNSUPPORTED', cause: emfile }));
    expect(existsSync(file)).toBe(false);
  });

  it('says why when the directory cannot be listed', async () => {
    const r = await sweepStaleShmFiles({ directory: path.join(dir, 'missing') });
    expect(r.unavailable).toMatch(/cannot list/);
  });

  it('`vmcomm clean` removes stale files and prints them; --dry-run only lists', async () => {
    const stale = path.join(dir, name(4, 'ring-0'));
    writeFileSync(stale, 'x', { mode: 0o600 });
    const dry = await vmcomm(['clean', '--dir', dir, '--min-age', '0', '--dry-run']);
    expect(dry.code).toBe(0);
    expect(lines(dry.stdout)).toEqual([`would remove ${stale}`]);
    expect(existsSync(stale)).toBe(true);
    const kept = await vmcomm(['clean', '--dir', dir]);
    expect(kept.code).toBe(0);
    expect(kept.stdout).toBe('');
    expect(kept.stderr).toMatch(/younger than 10 s/);
    const out = await vmcomm(['clean', '--dir', dir, '--min-age', '0']);
    expect(out.code).toBe(0);
    expect(lines(out.stdout)).toEqual([`removed ${stale}`]);
    expect(out.stderr).toMatch(/removed 1 stale file in /);
    expect(existsSync(stale)).toBe(false);
    const usage = await vmcomm(['clean', 'extra']);
    expect(usage.code).toBe(2);
  });
});
