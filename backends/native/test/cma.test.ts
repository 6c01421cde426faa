import { existsSync } from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { addon, Child, ensureDist, FIXTURES, native, readableByOthers } from './helpers.js';

const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
const isRoot = process.getuid?.() === 0;

const children: Child[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) {
    child.send('exit');
    await child.finish();
  }
});

/** Starts fixtures/cma-target.mjs (optionally as another user) and reads its `ready` line. */
async function startTarget(asUser?: number) {
  const child = asUser === undefined ? Child.fixture('cma-target.mjs') : asUserChild(asUser, 'cma-target.mjs', []);
  children.push(child);
  const [, pid, address, bytes] = (await child.line('ready ')).split(' ');
  return { child, pid: Number(pid), address: BigInt(address), bytes: Number(bytes) };
}

/** `setpriv --reuid=uid --regid=uid --clear-groups node fixtures/<name> …args`. */
function asUserChild(uid: number, name: string, args: string[]): Child {
  return new Child(SETPRIV!, [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, path.join(FIXTURES, name), ...args]);
}

/** Why the different-user tests cannot run here, or undefined. */
function whyNoSetpriv(): string | undefined {
  if (!isRoot) return 'not root (setpriv needs root to switch users)';
  if (SETPRIV === undefined) return 'setpriv is not installed';
  if (!readableByOthers()) return 'dist/ or build/ is not world-readable, so another user cannot load the addon';
  return undefined;
}

describe.skipIf(addon === undefined)('cross-memory attach', () => {
  beforeAll(ensureDist, 120_000);

  it('reads and writes a child process buffer in one copy (same user)', async () => {
    expect(native().capability.cma).toBe(process.env.VMCOMM_CMA !== '0');
    const target = await startTarget();
    const into = new Uint8Array(target.bytes);
    expect(native().cmaRead(target.pid, target.address, into)).toBe(target.bytes);
    expect(into.every((b, i) => b === i % 251)).toBe(true);

    // A read that starts inside the buffer: offset addresses work.
    const tail = new Uint8Array(100);
    expect(native().cmaRead(target.pid, target.address + 1000n, tail)).toBe(100);
    expect(tail[0]).toBe(1000 % 251);

    const from = new Uint8Array(target.bytes).fill(7);
    expect(native().cmaWrite(target.pid, target.address, from)).toBe(target.bytes);
    target.child.send('check 7');
    expect(await target.child.line('check ')).toBe('check ok');
  });

  it('accepts any ArrayBufferView, and a zero-length one moves nothing', async () => {
    const target = await startTarget();
    const words = new Uint32Array(4);
    expect(native().cmaRead(target.pid, target.address, words)).toBe(16);
    const view = new DataView(new ArrayBuffer(8));
    expect(native().cmaRead(target.pid, target.address, view)).toBe(8);
    expect(view.getUint8(3)).toBe(3);
    expect(native().cmaRead(target.pid, target.address, new Uint8Array(0))).toBe(0);
  });

  it('throws ESRCH for a process that is gone and EFAULT for an unmapped address', async () => {
    const gone = new Child(process.execPath, ['-e', '0']);
    const pid = gone.process.pid!;
    await gone.finish();
    expect(() => native().cmaRead(pid, 4096n, new Uint8Array(8))).toThrow(expect.objectContaining({ code: 'ESRCH', errno: 3, syscall: 'process_vm_readv' }));
    expect(() => native().cmaRead(process.pid, 8n, new Uint8Array(8))).toThrow(expect.objectContaining({ code: 'EFAULT', errno: 14 }));
    expect(() => native().cmaWrite(process.pid, 8n, new Uint8Array(8))).toThrow(expect.objectContaining({ code: 'EFAULT', syscall: 'process_vm_writev' }));
  });

  it('allowPtrace() is true where it is set or not needed', () => {
    const yama = existsSync('/proc/sys/kernel/yama/ptrace_scope');
    const allowed = native().allowPtrace();
    if (!yama) expect(allowed).toBe(true);
    else expect(typeof allowed).toBe('boolean');
  });

  it('is turned off by VMCOMM_CMA=0: capability.cma false, calls throw ENOTSUP', async () => {
    const worker = new Worker(path.join(FIXTURES, 'worker-waiter.mjs'), {
      workerData: { sab: new SharedArrayBuffer(4), expected: 1 },
      env: { ...process.env, VMCOMM_CMA: '0' },
    });
    const first = await new Promise<{ cma: boolean }>((resolve) => worker.once('message', resolve));
    await worker.terminate();
    expect(first.cma).toBe(false);

    const disabled = new Child(process.execPath, [path.join(FIXTURES, 'cma-reader.mjs'), String(process.pid), native().addressOf(new Uint8Array(8)).toString(), '8'], {
      env: { ...process.env, VMCOMM_CMA: '0' },
    });
    const out = await disabled.finish();
    expect(out.stdout.trim()).toBe('error ENOTSUP 95');
  });

  describe('between users (setpriv)', () => {
    const reason = whyNoSetpriv();
    if (reason !== undefined) {
      it.skip(`skipped: ${reason}`, () => {});
      return;
    }

    it('refuses a reader of another non-root user with EPERM, a clean error with a code', async () => {
      const target = await startTarget(65534);
      const reader = asUserChild(65533, 'cma-reader.mjs', [String(target.pid), String(target.address), String(target.bytes)]);
      const out = await reader.finish();
      expect(out.stderr).toBe('');
      expect(out.stdout.trim()).toBe('error EPERM 1');
    });

    it('lets a reader of the same non-root user in (no root needed), and root', async () => {
      const target = await startTarget(65534);
      const reader = asUserChild(65534, 'cma-reader.mjs', [String(target.pid), String(target.address), String(target.bytes)]);
      const out = await reader.finish();
      expect(out.stderr).toBe('');
      expect(out.stdout.trim()).toBe(`read ${target.bytes} true`);
      const into = new Uint8Array(target.bytes);
      expect(native().cmaRead(target.pid, target.address, into)).toBe(target.bytes); // root: CAP_SYS_PTRACE
    });
  });
});
