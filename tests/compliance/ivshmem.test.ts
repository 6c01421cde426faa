// The ivshmem transport in the compliance suite.
//
// 1. The suite itself, plain and with the per-frame MAC: ranks as worlds in this process, every pair
//    over one region file (in the temporary directory, not /dev/shm), ivshmem the only candidate.
//    Small rings and a small eager limit make rendezvous and streaming through the rings carry most
//    sizes.
// 2. Two processes given one region file and *different* /dev/shm — what two VMs of one host see:
//    each rank runs under `unshare --mount` with a private tmpfs on /dev/shm (root), so shm cannot
//    prove co-location and the pair must choose ivshmem by itself, with every candidate built in.
//    Without root (no mount namespace), the ranks share /dev/shm and shm is excluded with
//    VMCOMM_BACKENDS=ivshmem,tcp instead; the test says so in its name.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeRegionFile, formatRegionFile } from '../../backends/ivshmem/admin.js';
import { ivshmem } from '../../backends/ivshmem/index.js';
import { ensureIvshmemDist } from '../../backends/ivshmem/test/dist.js';
import { tryLoadNative } from '../../backends/native/native.js';
import { finish, lines, ROOT, VMCOMM } from '../helpers/processes.js';
import { localWorlds } from '../helpers/local-worlds.js';
import { backendSuite } from './suite.js';

const addon = tryLoadNative().addon;
const REGION = path.join(tmpdir(), `vmcomm-ivshmem-compliance-${process.pid}-${randomBytes(4).toString('hex')}`);
if (addon !== undefined) formatRegionFile(REGION, 16 * 1024 * 1024, { slots: 16, ringDataBytes: 16 * 1024 });

afterAll(() => {
  if (!existsSync(REGION)) return;
  // Every world finalized: no member and no ring may be left behind.
  const d = describeRegionFile(REGION);
  rmSync(REGION, { force: true });
  expect(d.members).toEqual([]);
  expect(d.rings).toEqual([]);
});

if (addon !== undefined) {
  // Plain, then with the per-frame MAC (frame-mac.ts): every semantic must hold when each frame
  // travels as tagged MAC records (the small rings and eager limit stream most sizes as body records).
  for (const mac of [false, true]) {
    describe(mac ? 'with the per-frame MAC' : 'plain frames', () => {
      backendSuite({
        transport: 'ivshmem',
        maxSize: 4,
        eagerLimitBytes: 4096,
        progressesInTest: true,
        async setup(size) {
          const backend = ivshmem({ regions: [REGION], mac });
          return localWorlds(size, { backends: [backend], only: ['ivshmem'], eagerLimitBytes: 4096, eagerCredits: 16 });
        },
      });
    });
  }
}

const isRoot = process.getuid?.() === 0;
const canUnshare = isRoot && spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs vmcomm-probe /dev/shm'], { stdio: 'ignore' }).status === 0;
const TS_REGISTER = path.join(ROOT, 'dist', 'lib', 'launch', 'ts-register.js');

/** Starts `vmcomm rendezvous -n size`; resolves with its child and the variables it printed. */
async function rendezvous(size: number): Promise<{ child: ChildProcess; env: Record<string, string> }> {
  const child = spawn(process.execPath, [VMCOMM, 'rendezvous', '-n', String(size)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const env: Record<string, string> = {};
  let text = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vmcomm rendezvous printed no address: ${text}`)), 20_000);
    child.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8');
      for (const line of text.split('\n')) {
        const m = /^(VMCOMM_[A-Z_]+)=(.*)$/.exec(line);
        if (m) env[m[1]] = m[2];
      }
      if (env.VMCOMM_SIZE !== undefined) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', () => reject(new Error(`vmcomm rendezvous exited: ${text}`)));
  });
  return { child, env };
}

/**
 * Starts rank `rank` of the job running `app` (a .ts file, through dist's ts-register), in a mount
 * namespace of its own with a private /dev/shm when `privateShm`.
 */
function startRank(rank: number, app: string, env: NodeJS.ProcessEnv, privateShm: boolean, args: string[] = []): ChildProcess {
  const node = [process.execPath, '--import', TS_REGISTER, app, ...args];
  const argv = privateShm ? ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs vmcomm-vm /dev/shm && exec "$@"', 'vm', ...node] : node;
  return spawn(argv[0], argv.slice(1), { cwd: ROOT, env: { ...env, VMCOMM_RANK: String(rank) }, stdio: ['ignore', 'pipe', 'pipe'] });
}

describe.skipIf(addon === undefined)(
  canUnshare ? 'compliance: ivshmem between two processes with different /dev/shm (unshare --mount, private tmpfs)' : 'compliance: ivshmem between two processes (no root: same /dev/shm, shm excluded by VMCOMM_BACKENDS)',
  () => {
    beforeAll(ensureIvshmemDist, 180_000);

    it('every candidate built in, nothing configured but VMCOMM_IVSHMEM: the pair finds ivshmem and passes the point-to-point semantics', async () => {
      const rdv = await rendezvous(2);
      try {
        const env: NodeJS.ProcessEnv = { ...process.env, ...rdv.env, VMCOMM_IVSHMEM: REGION, VMCOMM_CMA: '0' };
        delete env.VMCOMM_BACKENDS;
        if (!canUnshare) env.VMCOMM_BACKENDS = 'ivshmem,tcp';
        const outcomes = await Promise.all([0, 1].map((rank) => finish(startRank(rank, 'tests/fixtures/core/p2p-semantics.ts', env, canUnshare), undefined, 120_000)));
        for (const o of outcomes) {
          expect(o.stderr).toBe('');
          expect(o.code).toBe(0);
        }
        const ok = outcomes.flatMap((o) => lines(o.stdout)).filter((l) => / OK \(/.test(l)).sort();
        expect(ok).toHaveLength(2);
        expect(ok[0]).toMatch(/^rank 0: OK .*transports self,ivshmem\)$/);
        expect(ok[1]).toMatch(/^rank 1: OK .*transports ivshmem,self\)$/);
      } finally {
        rdv.child.kill('SIGKILL');
      }
    }, 180_000);
  },
);
