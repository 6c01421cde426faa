// The compliance suite over ivshmem with the per-frame MAC on (frame-mac.ts): every point-to-point
// and collective semantic holds when each frame travels as tagged MAC records — small rings (16 KiB)
// and a small eager limit, so most sizes go as rendezvous data split into body records and streamed.
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import { createLocalJob } from '../../../lib/local-bootstrap.js';
import { initWithBootstrap } from '../../../lib/start-world.js';
import { backendSuite } from '../../../tests/compliance/suite.js';
import { describeRegionFile, formatRegionFile } from '../admin.js';
import { ivshmem } from '../index.js';
import { addon } from './pair.js';

const REGION = path.join(tmpdir(), `vmcomm-ivshmem-mac-compliance-${process.pid}-${randomBytes(4).toString('hex')}`);
if (addon !== undefined) formatRegionFile(REGION, 16 * 1024 * 1024, { slots: 16, ringDataBytes: 16 * 1024 });

afterAll(() => {
  if (!existsSync(REGION)) return;
  const d = describeRegionFile(REGION);
  rmSync(REGION, { force: true });
  expect(d.members).toEqual([]);
  expect(d.rings).toEqual([]);
});

describe.skipIf(addon === undefined)('ivshmem with the per-frame MAC', () => {
  if (addon === undefined) return;
  backendSuite({
    transport: 'ivshmem',
    maxSize: 4,
    eagerLimitBytes: 4096,
    async setup(size) {
      const backend = ivshmem({ regions: [REGION], mac: true });
      return Promise.all(createLocalJob(size).map((b) => initWithBootstrap(b, { backends: [backend], only: ['ivshmem'], eagerLimitBytes: 4096, eagerCredits: 16 })));
    },
  });
});
