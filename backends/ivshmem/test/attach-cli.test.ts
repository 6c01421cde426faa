// Finding regions (option, VMCOMM_IVSHMEM, the PCI scan over a fake sysfs), attaching them, and the
// `vmcomm ivshmem` subcommands.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeRegionFile, setRegionFileRevoked } from '../admin.js';
import { attachRegions, regionPaths, scanPci } from '../attach.js';
import { runIvshmemCommand } from '../cli.js';
import { id } from './helpers.js';
import { addon, regionFile, removeRegionFiles } from './pair.js';

const dirs: string[] = [];
afterAll(() => {
  removeRegionFiles();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(path.join(tmpdir(), 'vmcomm-ivshmem-test-'));
  dirs.push(d);
  return d;
}

/** A fake /sys/bus/pci/devices with the given (vendor, device) pairs. */
function fakePci(devices: [string, string, string][]): string {
  const root = tempDir();
  for (const [addr, vendor, device] of devices) {
    mkdirSync(path.join(root, addr));
    writeFileSync(path.join(root, addr, 'vendor'), `${vendor}\n`);
    writeFileSync(path.join(root, addr, 'device'), `${device}\n`);
  }
  return root;
}

describe('finding regions', () => {
  it('the scan finds only 1af4:1110 devices (not other virtio devices of vendor 1af4), sorted', () => {
    const root = fakePci([
      ['0000:00:05.0', '0x1af4', '0x1110'],
      ['0000:00:01.0', '0x1af4', '0x1045'],
      ['0000:00:03.0', '0x8086', '0x1110'],
      ['0000:00:02.0', '0x1af4', '0x1110'],
      ['0000:00:04.0', 'garbage', ''],
    ]);
    expect(scanPci(root)).toEqual([path.join(root, '0000:00:02.0', 'resource2'), path.join(root, '0000:00:05.0', 'resource2')]);
    expect(scanPci(path.join(root, 'missing'))).toEqual([]);
  });

  it('option first, then VMCOMM_IVSHMEM (comma-separated, blanks ignored), then the scan', () => {
    const root = fakePci([['0000:00:02.0', '0x1af4', '0x1110']]);
    expect(regionPaths(['/a'], { VMCOMM_IVSHMEM: '/b' }, root)).toEqual({ paths: ['/a'], from: 'option' });
    expect(regionPaths(undefined, { VMCOMM_IVSHMEM: ' /b, ,/c ' }, root)).toEqual({ paths: ['/b', '/c'], from: 'env' });
    expect(regionPaths(undefined, { VMCOMM_IVSHMEM: ' , ' }, root)).toEqual({ paths: [path.join(root, '0000:00:02.0', 'resource2')], from: 'pci' });
    expect(regionPaths(undefined, {}, root).from).toBe('pci');
  });

  it.skipIf(addon === undefined)('attaching skips, with a reason each: a missing file, an unformatted one, the same region twice, a revoked one, a full one', () => {
    const good = regionFile(1 << 20, { slots: 1 });
    const revoked = regionFile();
    setRegionFileRevoked(revoked, true);
    const blank = path.join(tempDir(), 'blank');
    writeFileSync(blank, new Uint8Array(1 << 16));
    const identity = { job: id(1), nonce: id(2), rank: 0 };
    const r = attachRegions(['/nonexistent', blank, good, good, revoked], identity, addon!);
    expect(r.attached.map((a) => a.path)).toEqual([good]);
    expect(r.problems).toEqual([
      expect.stringMatching(/^\/nonexistent: .*ENOENT/),
      expect.stringMatching(/blank: CORRUPT: .*not formatted/),
      expect.stringMatching(/the same region .* as /),
      expect.stringMatching(/is revoked/),
    ]);
    const full = attachRegions([good], { ...identity, rank: 1 }, addon!);
    expect(full.problems).toEqual([expect.stringMatching(/no free slot \(all 1 are taken\)/)]);
    r.attached[0].member.finalize();
    expect(describeRegionFile(good).members).toEqual([]);
  });
});

describe.skipIf(addon === undefined)('vmcomm ivshmem', () => {
  async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await runIvshmemCommand(argv, { write: (t) => (out += t) }, { write: (t) => (err += t) });
    return { code, out, err };
  }

  it('create, show (text and JSON), revoke, restore', async () => {
    const file = path.join(tempDir(), 'region');
    const created = await run('create', '--size', '1M', '--slots', '8', '--ring-bytes', '16K', file);
    expect(created).toMatchObject({ code: 0, err: '' });
    expect(created.out).toMatch(/^created .*region: ivshmem region [0-9a-f-]{36}, 1M \(1048576 bytes\), 8 slots, \d+ rings of 16K\n/);
    expect(created.out).toContain(`-object memory-backend-file,id=hostmem,share=on,mem-path=${file},size=1M -device ivshmem-plain,memdev=hostmem`);
    const shown = await run('show', file);
    expect(shown.code).toBe(0);
    expect(shown.out).toMatch(/ivshmem region [0-9a-f-]{36}: 1M .* generation 1\n/);
    expect(shown.out).toContain('members: none');
    const json = JSON.parse((await run('show', '--json', file)).out);
    expect(json).toMatchObject({ path: file, header: { sizeBytes: 1 << 20, slots: 8, ringDataBytes: 16384, revoked: false }, members: [], rings: [] });
    expect(await run('revoke', file)).toMatchObject({ code: 0, out: expect.stringMatching(/^revoked /) });
    expect(JSON.parse((await run('show', '--json', file)).out).header).toMatchObject({ revoked: true, generation: 2 });
    expect(await run('restore', file)).toMatchObject({ code: 0, out: expect.stringMatching(/^restored /) });
    expect(JSON.parse((await run('show', '--json', file)).out).header).toMatchObject({ revoked: false, generation: 3 });
    // An existing file is kept unless --force.
    expect(await run('create', '--size', '1M', file)).toMatchObject({ code: 1, err: expect.stringMatching(/exists already/) });
    expect((await run('create', '--size', '1M', '--force', file)).code).toBe(0);
  });

  it('a size that is not a power of two, and usage mistakes, are one clear line each', async () => {
    const file = path.join(tempDir(), 'region');
    const odd = await run('create', '--size', '48M', file);
    expect(odd.code).toBe(1);
    expect(odd.err).toMatch(/power of two.*48M|power of two/);
    expect(odd.err).toMatch(/32M or 64M/);
    expect(odd.err.trim().split('\n')).toHaveLength(1);
    expect(await run('create', file)).toMatchObject({ code: 2, err: expect.stringMatching(/--size SIZE is required/) });
    expect(await run('create', '--size', 'lots', file)).toMatchObject({ code: 2, err: expect.stringMatching(/--size/) });
    expect(await run('show')).toMatchObject({ code: 2, err: expect.stringMatching(/PATH is required/) });
    expect(await run('show', 'a', 'b')).toMatchObject({ code: 2 });
    expect(await run('frobnicate')).toMatchObject({ code: 2, err: expect.stringMatching(/unknown command 'frobnicate'/) });
    expect(await run('show', '--bogus', file)).toMatchObject({ code: 2, err: expect.stringMatching(/unknown option --bogus/) });
    expect(await run()).toMatchObject({ code: 2, err: expect.stringMatching(/^usage: vmcomm ivshmem/) });
    expect(await run('--help')).toMatchObject({ code: 0, out: expect.stringMatching(/create .*\n.*show/s) });
    expect(await run('create', '--help')).toMatchObject({ code: 0, out: expect.stringMatching(/--ring-bytes SIZE/) });
    expect(await run('show', path.join(tempDir(), 'missing'))).toMatchObject({ code: 1, err: expect.stringMatching(/ENOENT/) });
  });
});
