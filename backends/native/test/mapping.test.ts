import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statfsSync, statSync, symlinkSync, truncateSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { addon, ensureDist, native, removeCreated, runFixture, shmPath } from './helpers.js';

afterEach(removeCreated);

/** Lines of /proc/self/maps that map `file`. */
function mappingsOf(file: string): string[] {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.endsWith(file));
}

describe.skipIf(addon === undefined)('shared files', () => {
  beforeAll(ensureDist, 120_000);

  it('creates a 0600 file of the requested size, fully allocated and mapped', () => {
    const file = shmPath('create');
    const previous = process.umask(0); // 0600 must not depend on the umask
    let sab: SharedArrayBuffer;
    try {
      sab = native().createSharedFile(file, 3 * 4096 + 5);
    } finally {
      process.umask(previous);
    }
    expect(sab).toBeInstanceOf(SharedArrayBuffer);
    expect(sab.byteLength).toBe(3 * 4096 + 5);
    const st = statSync(file);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(process.getuid!());
    expect(st.size).toBe(3 * 4096 + 5);
    expect(st.blocks * 512).toBeGreaterThanOrEqual(3 * 4096 + 5); // posix_fallocate reserved the blocks
    expect(new Uint8Array(sab).every((b) => b === 0)).toBe(true);
    expect(mappingsOf(file)).toHaveLength(1);
  });

  it('refuses an existing path (O_EXCL) and does not follow symlinks', () => {
    const file = shmPath('exists');
    native().createSharedFile(file, 4096);
    expect(() => native().createSharedFile(file, 4096)).toThrow(expect.objectContaining({ code: 'EEXIST', errno: 17, syscall: 'open', path: file }));
    const target = shmPath('target');
    const link = shmPath('link');
    symlinkSync(target, link);
    expect(() => native().createSharedFile(link, 4096)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(existsSync(target)).toBe(false);
  });

  it('maps a file once per process: every open shares one mapping', () => {
    const file = shmPath('once');
    const first = native().createSharedFile(file, 65536);
    const views = [first];
    for (let i = 0; i < 200; i++) views.push(native().openSharedFile(file));
    views.push(native().openSharedFile(file, 4096)); // shorter request: the existing, longer mapping
    expect(mappingsOf(file)).toHaveLength(1);
    const address = native().addressOf(new Uint8Array(first));
    for (const sab of views) {
      expect(sab.byteLength).toBe(65536);
      expect(native().addressOf(new Uint8Array(sab))).toBe(address);
    }
    // Writes through one are reads through another: the same memory.
    new Int32Array(first)[100] = 123456;
    expect(new Int32Array(views[150])[100]).toBe(123456);
    new Float64Array(views[200])[7] = Math.PI;
    expect(new Float64Array(first)[7]).toBe(Math.PI);
  });

  it('maps again (the same pages) only when asked for more than the existing mapping', () => {
    const file = shmPath('longer');
    native().createSharedFile(file, 8192);
    const short = native().openSharedFile(file, 4096);
    expect(short.byteLength).toBe(8192);
    expect(mappingsOf(file)).toHaveLength(1);
    expect(() => native().openSharedFile(file, 8193)).toThrow(expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }));
    expect(mappingsOf(file)).toHaveLength(1);
  });

  it('does not hand out a cached mapping that reaches past the end of a file someone shrank (SIGBUS there)', () => {
    const file = shmPath('shrunk');
    const long = native().createSharedFile(file, 3 * 4096);
    truncateSync(file, 4096); // another process's doing; `long`'s last two pages are now past the end
    const fresh = native().openSharedFile(file);
    expect(fresh.byteLength).toBe(4096);
    new Int32Array(fresh)[0] = 77; // the same pages where both still reach
    expect(new Int32Array(long)[0]).toBe(77);
    expect(mappingsOf(file)).toHaveLength(2);
  });

  it('shares the memory with another process that maps the same file', async () => {
    const file = shmPath('child');
    const sab = native().createSharedFile(file, 4096);
    const words = new Int32Array(sab);
    Atomics.store(words, 0, 21);
    const out = await runFixture('map-writer.mjs', [file]);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout.trim()).toBe('read 21 bytes 4096');
    expect(Atomics.load(words, 1)).toBe(42);
  });

  it('keeps a mapping until the last SharedArrayBuffer over it is collected, then unmaps it', async () => {
    const file = shmPath('gc');
    const out = await runFixture('gc-unmap.mjs', [file], { nodeArgs: ['--expose-gc'] });
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    expect(out.stdout.trim().split('\n')).toEqual(['maps 1', 'maps 1 value 99', 'maps 0']);
  });

  it('stays usable after the file is unlinked (the mapping keeps it)', () => {
    const file = shmPath('unlinked');
    const sab = native().createSharedFile(file, 4096);
    unlinkSync(file);
    new Uint32Array(sab)[0] = 0xdeadbeef;
    expect(new Uint32Array(sab)[0]).toBe(0xdeadbeef);
    expect(() => native().openSharedFile(file)).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });

  it('collects mappings nobody holds any more before it reports ENOSPC: files removed but still mapped do not fill a tmpfs', (context) => {
    // A tmpfs of its own, 4 MiB, so that filling it is safe: needs root (mount); skipped elsewhere.
    if (process.getuid?.() !== 0) {
      console.log('skipped: mounting a small tmpfs needs root');
      context.skip();
      return;
    }
    const dir = mkdtempSync(path.join(tmpdir(), 'vmcomm-test-tmpfs-'));
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir]);
    if (mounted.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      console.log(`skipped: cannot mount a tmpfs (${mounted.stderr?.toString().trim() || mounted.error?.message})`);
      context.skip();
      return;
    }
    try {
      // What a world's finalize leaves: a 3 MiB file, removed, its mapping unreachable but not yet
      // collected. Each next 3 MiB file fits only once that memory is given back.
      const world = (i: number) => {
        const file = path.join(dir, `world-${i}`);
        new Uint8Array(native().createSharedFile(file, 3 << 20))[7] = i;
        unlinkSync(file);
      };
      for (let i = 0; i < 4; i++) expect(() => world(i), `world ${i}`).not.toThrow();
    } finally {
      // Lazily: the last world's mapping may not be collected yet (the mount is busy until it is).
      spawnSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails at creation with ENOSPC when the tmpfs cannot hold the file, and leaves no file behind', (context) => {
    const fs = statfsSync('/dev/shm');
    if (fs.blocks === 0) {
      context.skip(); // an unlimited tmpfs would try to allocate: not safe to test
      return;
    }
    const file = shmPath('enospc');
    const tooBig = fs.blocks * fs.bsize + 1024 * 1024; // more than the whole file system
    expect(() => native().createSharedFile(file, tooBig)).toThrow(
      expect.objectContaining({ code: 'ENOSPC', errno: 28, syscall: 'posix_fallocate', path: file }),
    );
    expect(existsSync(file)).toBe(false);
  });

  it('gives an absurd size a clean error with a code', () => {
    const file = shmPath('absurd');
    let thrown: { code?: string } | undefined;
    try {
      native().createSharedFile(file, Number.MAX_SAFE_INTEGER);
    } catch (e) {
      thrown = e as { code?: string };
    }
    expect(['ENOSPC', 'EFBIG', 'EINVAL']).toContain(thrown?.code);
    expect(existsSync(file)).toBe(false);
  });

  it('refuses empty files, directories and sizes beyond a regular file', () => {
    const file = shmPath('empty');
    native().createSharedFile(file, 4096);
    expect(() => native().openSharedFile(file, 4097)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    const empty = shmPath('zero');
    const fd = native().lockFile(empty, { exclusive: true, wait: false, create: true }); // creates an empty file
    native().unlockFile(fd);
    expect(() => native().openSharedFile(empty)).toThrow(expect.objectContaining({ code: 'EINVAL', syscall: 'mmap' }));
    expect(() => native().openSharedFile('/dev/shm')).toThrow(expect.objectContaining({ code: 'EISDIR' }));
  });
});
