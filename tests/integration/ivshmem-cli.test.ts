// `npx vmcomm ivshmem …` through the real CLI: the subcommand is wired to the backend's region tools.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { vmcomm } from '../helpers/processes.js';

const dir = mkdtempSync(path.join(tmpdir(), 'vmcomm-ivshmem-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('vmcomm ivshmem', () => {
  it('refuses a size that is not a power of two, creates a region and shows it', async () => {
    const file = path.join(dir, 'region');
    const bad = await vmcomm(['ivshmem', 'create', '--size', '3M', file]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/power of two/);
    const made = await vmcomm(['ivshmem', 'create', '--size', '4M', file]);
    expect(made.code).toBe(0);
    expect(made.stdout).toMatch(/ivshmem-plain,memdev=hostmem/);
    const shown = await vmcomm(['ivshmem', 'show', file]);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/slots 64 \(64 free\)/);
    expect((await vmcomm(['ivshmem', 'bogus'])).code).toBe(2);
    expect((await vmcomm(['--help'])).stdout).toMatch(/ivshmem/);
  });
});
