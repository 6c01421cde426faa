import { rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isVmcommError, VmcommError } from '../../../lib/errors.js';
import { NATIVE_ADDON_FILE, isNativeError, loadAddonFrom, loadNative, nativeAddonPaths, tryLoadNative } from '../native.js';
import { addon, loadReason, ROOT } from './helpers.js';

describe('loading the addon', () => {
  it('loads (a missing addon fails this test when CI=true)', () => {
    if (process.env.CI === 'true') {
      expect(addon, `CI=true requires the native addon: ${loadReason}`).toBeDefined();
    } else if (addon === undefined) {
      console.warn(`native addon tests skipped: ${loadReason}`);
    }
  });

  it('looks in build/Release then build/Debug of the package', () => {
    expect(nativeAddonPaths()).toEqual([
      path.join(ROOT, 'build', 'Release', NATIVE_ADDON_FILE),
      path.join(ROOT, 'build', 'Debug', NATIVE_ADDON_FILE),
    ]);
  });

  it('says what failed: the package, every path tried, platform/arch/ABI and the rebuild command', () => {
    const missing = loadAddonFrom(['/nonexistent/one.node', '/nonexistent/two.node']);
    expect(missing.addon).toBeUndefined();
    expect(missing.cause).toBeUndefined();
    for (const part of [
      'vmcomm',
      '/nonexistent/one.node (not found)',
      '/nonexistent/two.node (not found)',
      `${process.platform}-${process.arch}`,
      `ABI ${process.versions.modules}`,
      'npm rebuild vmcomm',
      'node scripts/build-addon.mjs',
    ]) {
      expect(missing.reason).toContain(part);
    }

    const garbage = path.join(os.tmpdir(), `vmcomm-not-an-addon-${process.pid}.node`);
    writeFileSync(garbage, 'not an ELF file');
    const broken = loadAddonFrom([garbage]);
    rmSync(garbage);
    expect(broken.addon).toBeUndefined();
    expect(broken.cause).toBeInstanceOf(Error);
    expect(broken.reason).toContain(`${garbage} (`);
    expect(broken.reason).not.toContain(`${garbage} (not found)`);
  });

  it('turns a failure into VmcommError UNSUPPORTED in loadNative', () => {
    const result = tryLoadNative();
    if (result.addon !== undefined) {
      expect(loadNative()).toBe(result.addon); // cached: one load per thread
      expect(tryLoadNative()).toBe(result);
    } else {
      const error = (() => {
        try {
          loadNative();
        } catch (e) {
          return e;
        }
      })();
      expect(isVmcommError(error, 'UNSUPPORTED')).toBe(true);
      expect((error as VmcommError).message).toBe(result.reason);
    }
  });
});

describe.skipIf(addon === undefined)('capability', () => {
  it('is a frozen set of booleans that matches this machine', () => {
    const capability = addon!.capability;
    expect(Object.isFrozen(capability)).toBe(true);
    expect(Object.keys(capability).sort()).toEqual(['cma', 'futex', 'hugepages', 'ivshmemDoorbell', 'memfd', 'mmap']);
    for (const value of Object.values(capability)) expect(typeof value).toBe('boolean');
    expect(capability.mmap).toBe(true);
    expect(capability.futex).toBe(true);
    expect(capability.ivshmemDoorbell).toBe(false);
  });

  it('errors carry a code and an errno', () => {
    let thrown: unknown;
    try {
      addon!.openSharedFile(`/dev/shm/vmcomm-test-missing-${process.pid}`);
    } catch (e) {
      thrown = e;
    }
    expect(isNativeError(thrown)).toBe(true);
    expect(thrown).toMatchObject({ name: 'Error', code: 'ENOENT', errno: 2, syscall: 'open' });
    expect((thrown as Error).message).toMatch(/^ENOENT: no such file or directory, open '\/dev\/shm\/vmcomm-test-missing-\d+'$/);
  });
});
