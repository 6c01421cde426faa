import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tryLoadNative } from '../../native/native.js';
import { describeRegion, describeRegionFile, formatRegionFile, openRegionFile, parseSize, renderRegionDescription, setRegionFileRevoked } from '../admin.js';
import { jobKey, nonceKey } from '../ids.js';
import { IvshmemRegion } from '../region.js';
import { expectCode, id, memoryRegion } from './helpers.js';

const dir = mkdtempSync(path.join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'vmcomm-ivshmem-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 2 ** 20;
const native = tryLoadNative().addon;

describe('ivshmem admin', () => {
  it('parses sizes in bytes and binary units', () => {
    expect(parseSize('64M')).toBe(64 * MiB);
    expect(parseSize('64MiB')).toBe(64 * MiB);
    expect(parseSize('64mb')).toBe(64 * MiB);
    expect(parseSize(' 1G ')).toBe(2 ** 30);
    expect(parseSize('65536')).toBe(65536);
    expect(parseSize('64K')).toBe(65536);
    expect(parseSize('2T')).toBe(2 * 2 ** 40);
    for (const bad of ['', 'M', '1.5G', '-1M', '64X', '64 M B', '0x100']) expectCode(() => parseSize(bad), 'INVALID_ARGUMENT', /size/);
    expectCode(() => parseSize('99999999999P'), 'INVALID_ARGUMENT', /too large/);
  });

  it('refuses a size that is not a power of two before touching the file', () => {
    const file = path.join(dir, 'odd');
    expectCode(() => formatRegionFile(file, 100 * MiB), 'INVALID_ARGUMENT', /power of two .* got 104857600 \(e\.g\. 64M or 128M\)/);
    expectCode(() => formatRegionFile(file, 1000), 'INVALID_ARGUMENT', /power of two.*at least 64K/);
    expect(existsSync(file)).toBe(false);
  });

  for (const mode of ['addon', 'plain writes'] as const) {
    it(`creates, shows, re-formats with force, revokes (${mode})`, () => {
      if (mode === 'addon' && native === undefined) return;
      const addon = mode === 'addon' ? native! : null;
      const file = path.join(dir, `region-${mode.replace(' ', '-')}`);
      const made = formatRegionFile(file, 2 * MiB, { addon });
      expect(statSync(file).size).toBe(2 * MiB);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(made.layout).toMatchObject({ sizeBytes: 2 * MiB, slots: 64 });
      const d = describeRegionFile(file, { addon });
      expect(d.header).toMatchObject({ uuid: made.uuid, sizeBytes: 2 * MiB, revoked: false, generation: 1 });
      expect(d.members).toEqual([]);
      expect(d.free).toEqual({ slots: 64, blocks: made.layout.blocks });
      expectCode(() => formatRegionFile(file, 2 * MiB, { addon }), 'INVALID_ARGUMENT', /exists already/);
      expectCode(() => formatRegionFile(file, 4 * MiB, { addon, force: true }), 'INVALID_ARGUMENT', /remove it first/);
      const again = formatRegionFile(file, 2 * MiB, { addon, force: true, slots: 8 });
      expect(again.uuid).not.toBe(made.uuid);
      expect(describeRegionFile(file, { addon }).header.slots).toBe(8);
      if (addon !== null) {
        setRegionFileRevoked(file, true, { addon });
        expect(describeRegionFile(file, { addon }).header).toMatchObject({ revoked: true, generation: 2 });
        setRegionFileRevoked(file, false, { addon });
        expect(describeRegionFile(file, { addon }).header).toMatchObject({ revoked: false, generation: 3 });
      } else {
        expectCode(() => setRegionFileRevoked(file, true, { addon }), 'UNSUPPORTED', /native addon/);
      }
    });
  }

  it('maps a region file that two openers share (what two VMs see)', () => {
    if (native === undefined) return;
    const file = path.join(dir, 'shared');
    formatRegionFile(file, MiB, { addon: native, ringDataBytes: 4096 });
    const one = IvshmemRegion.open(openRegionFile(file, { addon: native }).region);
    const two = IvshmemRegion.open(openRegionFile(file, { addon: native }).region);
    const job = jobKey('job-a');
    const a = one.join({ job, nonce: nonceKey('0123456789abcdef0123456789abcdef'), rank: 0 })!;
    const b = two.join({ job, nonce: nonceKey('fedcba9876543210fedcba9876543210'), rank: 1 })!;
    expect(two.members.find(job, nonceKey('0123456789abcdef0123456789abcdef'), 0)?.slot).toBe(a.ref.slot);
    const ring = a.openRingTo(b.ref)!;
    expect(b.ringsToMe().map((x) => x.index)).toEqual([ring.index]);
    const text = renderRegionDescription(describeRegionFile(file, { addon: native }));
    expect(text).toContain(`slot ${a.ref.slot}: active rank 0`);
    expect(text).toContain(`ring ${ring.index} @`);
    expect(text).toContain('0 bytes unread');
    a.finalize();
    b.finalize();
    expect(describeRegionFile(file, { addon: native })).toMatchObject({ members: [], rings: [] });
  });

  it('describes garbage in slots and entries as invalid instead of throwing', () => {
    const region = memoryRegion(MiB);
    const r = IvshmemRegion.format(region, { slots: 4, ringDataBytes: 4096 });
    const w = new Int32Array(region.sab);
    w[r.layout.slotTableOffset >> 2] = 0x7ff;
    w[r.layout.blockTableOffset >> 2] = (3 << 4) | 2; // LIVE, generation 3, owners slot 0 → slot 0…
    w[(r.layout.blockTableOffset >> 2) + 3] = 99; // …consumer slot 99 of 4
    const d = describeRegion(region);
    expect(d.members).toEqual([{ slot: 0, state: 'invalid', generation: 0x7f, heartbeat: 0 }]);
    expect(d.rings).toEqual([{ index: 0, state: 'invalid', generation: 3, offset: r.layout.blocksOffset, problem: 'slots 0 → 99 of 4' }]);
    expect(renderRegionDescription(d)).toContain('ring 0 @');
  });

  it('derives 128-bit ids from job ids and nonces', () => {
    expect(jobKey('a')).toHaveLength(16);
    expect(jobKey('a')).toEqual(jobKey('a'));
    expect(jobKey('a')).not.toEqual(jobKey('b'));
    expect(Buffer.from(nonceKey('00112233445566778899aabbccddeeff')).toString('hex')).toBe('00112233445566778899aabbccddeeff');
    expect(nonceKey('w')).toHaveLength(16);
    expect(id(1)).toHaveLength(16);
  });

  it('formats an existing empty file with force (e.g. one made by touch)', () => {
    const file = path.join(dir, 'empty');
    writeFileSync(file, '');
    expect(formatRegionFile(file, MiB, { force: true }).sizeBytes).toBe(MiB);
    expect(statSync(file).size).toBe(MiB);
    expect(describeRegionFile(file).header.sizeBytes).toBe(MiB);
  });

  it('leaves a file it could not format alone', () => {
    const file = path.join(dir, 'foreign');
    writeFileSync(file, 'not a region');
    expectCode(() => formatRegionFile(file, MiB), 'INVALID_ARGUMENT', /exists already/);
    expect(readFileSync(file, 'utf8')).toBe('not a region');
    expectCode(() => describeRegionFile(file, { addon: null }), 'CORRUPT');
  });
});
