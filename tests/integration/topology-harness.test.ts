// The simulated cluster of tests/helpers/topology.ts (the harness for issue 5's topology test):
// 2 hosts × 2 VMs, checked for the isolation the vmcomm test relies on — hostnames, private
// /dev/shm, one region file per host, TCP between hosts over the bridge, separate PID namespaces —
// and for leaving nothing behind. Root only: elsewhere it prints why and skips.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { hostname } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  REGION_DIRECTORY,
  REGION_FILE_PREFIX,
  VM_REGION_PATH,
  canSimulateTopology,
  createTopology,
  listNetns,
  sweepStaleTopologies,
  type Outcome,
  type Topology,
  type Vm,
} from '../helpers/topology.js';

const support = canSimulateTopology();
if (!support.ok) console.log(`[topology-harness] skipped: ${support.reason}`);

function ok(outcome: Outcome): string {
  expect(outcome.code, `exit ${outcome.code ?? outcome.signal}\nstdout: ${outcome.stdout}\nstderr: ${outcome.stderr}`).toBe(0);
  return outcome.stdout;
}

/** Whether a pid is gone (or a zombie about to be reaped), polling briefly. */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    try {
      process.kill(pid, 0);
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))) return true;
    } catch {
      return true;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

describe.skipIf(!support.ok)('topology harness (2 hosts × 2 VMs)', () => {
  let topology: Topology;
  let h0v0: Vm, h0v1: Vm, h1v0: Vm, h1v1: Vm;
  const realHostname = hostname();
  const REGION_BYTES = 1 << 20;

  beforeAll(async () => {
    const started = Date.now();
    topology = await createTopology({ hosts: 2, vmsPerHost: 2, regionBytes: REGION_BYTES });
    console.log(`[topology-harness] ${topology.id} up in ${Date.now() - started} ms`);
    [h0v0, h0v1, h1v0, h1v1] = [topology.vm(0, 0), topology.vm(0, 1), topology.vm(1, 0), topology.vm(1, 1)];
  });
  afterAll(async () => {
    await topology?.destroy();
  });

  it('lays out hosts, addresses and VMs', () => {
    expect(topology.hosts.map((h) => h.address)).toEqual(['10.250.0.1', '10.250.0.2']);
    expect(topology.vms.map((v) => v.hostname)).toEqual(['vm-h0-v0', 'vm-h0-v1', 'vm-h1-v0', 'vm-h1-v1']);
    const netns = listNetns();
    for (const name of topology.namespaces) expect(netns).toContain(name);
    for (const host of topology.hosts) expect(existsSync(host.regionFile)).toBe(true);
  });

  it('gives each VM its own hostname, leaving the real one alone', async () => {
    const names = await Promise.all(topology.vms.map(async (vm) => ok(await topology.run(vm, ['hostname'])).trim()));
    expect(names).toEqual(topology.vms.map((vm) => vm.hostname));
    // Node inside a VM sees it too (what a rank's card will carry).
    const fromNode = ok(await topology.run(h1v1, [process.execPath, '-e', 'console.log(require("os").hostname())']));
    expect(fromNode.trim()).toBe('vm-h1-v1');
    expect(hostname()).toBe(realHostname);
  });

  it('puts each VM in its own UTS, IPC, mount and PID namespaces inside its host network namespace', async () => {
    const ns = (pid: number, kind: string): string => readlinkSync(`/proc/${pid}/ns/${kind}`);
    for (const kind of ['uts', 'ipc', 'mnt', 'pid']) {
      const ids = topology.vms.map((vm) => ns(vm.pid, kind));
      expect(new Set([...ids, ns(process.pid, kind)]).size, kind).toBe(5);
    }
    expect(ns(h0v0.pid, 'net')).toBe(ns(h0v1.pid, 'net'));
    expect(ns(h1v0.pid, 'net')).toBe(ns(h1v1.pid, 'net'));
    expect(ns(h0v0.pid, 'net')).not.toBe(ns(h1v0.pid, 'net'));
    expect(ns(h0v0.pid, 'net')).not.toBe(ns(process.pid, 'net'));
  });

  it('runs a VM supervisor as pid 1 of its own PID namespace, with its own /proc', async () => {
    for (const vm of topology.vms) {
      // Seen from the real host: its pid there, pid 1 inside.
      expect(readFileSync(`/proc/${vm.pid}/status`, 'utf8')).toMatch(new RegExp(`^NSpid:\\s+${vm.pid}\\s+1$`, 'm'));
    }
    const out = ok(await topology.run(h0v1, ['sh', '-c', 'echo "init $(head -c 7 /proc/1/cmdline | tr "\\0" " ")"; echo "count $(ls /proc | grep -c "^[0-9]")"']));
    expect(out).toMatch(/^init bash -c$/m);
    // Only the VM's own few processes are visible, not the real host's.
    expect(Number(/^count (\d+)$/m.exec(out)?.[1])).toBeLessThan(10);
    // A command's real-host pid is known (for signalling) and differs from its pid inside.
    const sleeper = topology.exec(h0v0, ['sh', '-c', 'echo "inner $$"; exec sleep 30']);
    const [, inner] = await sleeper.waitFor(/inner (\d+)/);
    const outer = sleeper.hostPid();
    expect(outer).toBeGreaterThan(0);
    expect(outer).not.toBe(Number(inner));
    expect(readFileSync(`/proc/${outer}/status`, 'utf8')).toMatch(new RegExp(`^NSpid:\\s+${outer}\\s+${inner}$`, 'm'));
    sleeper.kill('SIGTERM');
    expect((await sleeper.exited).signal).toBe('SIGTERM');
  });

  it('gives each VM a private /dev/shm, hiding the real one', async () => {
    const probe = `vmcomm-topo-probe-${topology.id}`;
    const written = ok(await topology.run(h0v0, ['sh', '-c', `echo secret > /dev/shm/${probe} && ls -A /dev/shm && grep " /dev/shm " /proc/self/mountinfo | tail -n 1`]));
    expect(written).toContain(probe);
    expect(written).toContain('vmcomm-topo-shm');
    const others = await Promise.all([h0v1, h1v0, h1v1].map((vm) => topology.run(vm, ['ls', '-A', '/dev/shm'])));
    for (const outcome of others) expect(ok(outcome)).not.toContain(probe);
    expect(existsSync(`${REGION_DIRECTORY}/${probe}`)).toBe(false);
    // The real /dev/shm (where the region files are) is not visible in a VM.
    for (const outcome of [written, ...others.map((o) => o.stdout)]) expect(outcome).not.toContain(REGION_FILE_PREFIX + topology.id);
  });

  it("shows a host's region file to its VMs only, resizable in place by the caller", async () => {
    const [host0, host1] = topology.hosts;
    const put = (vm: Vm, text: string): Promise<Outcome> =>
      topology.run(vm, ['sh', '-c', `printf '%s' "$1" | dd of=${VM_REGION_PATH} conv=notrunc status=none`, 'sh', text]);
    ok(await put(h0v0, 'hello-h0'));
    ok(await put(h1v1, 'hello-h1'));
    const read = async (vm: Vm): Promise<string> => ok(await topology.run(vm, ['sh', '-c', `head -c 8 ${VM_REGION_PATH}; echo; stat -c %s ${VM_REGION_PATH}`]));
    expect(await read(h0v1)).toBe(`hello-h0\n${REGION_BYTES}\n`);
    expect(await read(h1v0)).toBe(`hello-h1\n${REGION_BYTES}\n`);
    expect(readFileSync(host0!.regionFile).subarray(0, 8).toString()).toBe('hello-h0');
    expect(readFileSync(host1!.regionFile).subarray(0, 8).toString()).toBe('hello-h1');
    // The real-host path of the other host's region does not exist inside a VM.
    const peek = await topology.run(h1v0, ['test', '-e', host0!.regionFile]);
    expect(peek.code).toBe(1);
    // The caller sizes the region later, in place: VMs see the new size (same inode).
    truncateSync(host0!.regionFile, 2 * REGION_BYTES);
    writeFileSync(host0!.regionFile, 'from-hst', { flag: 'r+' });
    expect(await read(h0v0)).toBe(`from-hst\n${2 * REGION_BYTES}\n`);
  });

  it("connects a process in host 1's VM to a listener in host 0's namespace over the bridge", async () => {
    const host0 = topology.hosts[0]!;
    // Scripts must be somewhere a VM sees: not /tmp (private in VMs) nor /dev/shm; /var/tmp is shared.
    const dir = mkdtempSync('/var/tmp/vmcomm-topo-test-');
    const serverScript = path.join(dir, 'server.cjs');
    const clientScript = path.join(dir, 'client.cjs');
    writeFileSync(
      serverScript,
      `const s = require('net').createServer((c) => c.once('data', (d) => c.end('pong ' + c.remoteAddress + ' ' + d)));
       s.listen(0, process.argv[2], () => console.log('port ' + s.address().port));`,
    );
    writeFileSync(
      clientScript,
      `const c = require('net').connect(Number(process.argv[3]), process.argv[2], () => c.write('ping from ' + require('os').hostname() + ' ' + process.env.GREETING));
       let b = ''; c.on('data', (d) => (b += d)); c.on('end', () => console.log(b));`,
    );
    const listener = topology.spawnNode(host0, serverScript, ['0.0.0.0']);
    try {
      const port = (await listener.waitFor(/port (\d+)/))[1]!;
      const client = topology.spawnNode(h1v0, clientScript, [host0.address, port], { env: { GREETING: 'hi' }, execArgv: ['--no-warnings'] });
      expect(ok(await client.exited).trim()).toBe('pong 10.250.0.2 ping from vm-h1-v0 hi');
      // A VM of host 0 reaches it too, by its bridge address or loopback (same network namespace).
      for (const address of [host0.address, '127.0.0.1']) {
        expect(ok(await topology.run(h0v1, [process.execPath, clientScript, address, port], { env: { GREETING: 'local' } })).trim()).toMatch(/ping from vm-h0-v1 local$/);
      }
      // The private addresses exist only inside the namespaces: the real host cannot reach them.
      const reachable = await new Promise<boolean>((resolve) => {
        const socket = connect({ host: host0.address, port: Number(port) });
        const timer = setTimeout(() => (socket.destroy(), resolve(false)), 500);
        socket.once('connect', () => (clearTimeout(timer), socket.destroy(), resolve(true)));
        socket.once('error', () => (clearTimeout(timer), resolve(false)));
      });
      expect(reachable).toBe(false);
    } finally {
      listener.kill('SIGKILL');
      await listener.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('leaves nothing behind after destroy (and destroy is idempotent)', async () => {
    const lingering = topology.exec(h1v1, ['sleep', '60']);
    const hostLingering = topology.exec(topology.hosts[0]!, ['sleep', '60']);
    await lingering.waitFor(/$/);
    const pids = [...topology.vms.map((vm) => vm.pid), lingering.child.pid!, hostLingering.child.pid!];
    const started = Date.now();
    await topology.destroy();
    console.log(`[topology-harness] destroyed in ${Date.now() - started} ms`);
    await topology.destroy();
    expect(topology.destroyed).toBe(true);
    expect(() => topology.exec(h0v0, ['true'])).toThrow(/destroyed/);
    expect(listNetns().filter((name) => name.startsWith(topology.id))).toEqual([]);
    expect(readdirSync(REGION_DIRECTORY).filter((name) => name.includes(topology.id))).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(topology.id);
    for (const pid of pids) expect(await gone(pid), `pid ${pid}`).toBe(true);
    expect((await lingering.exited).signal).toBe('SIGKILL');
  });
});

describe.skipIf(!support.ok)('topology harness cleanup paths', () => {
  it('cleans up after a creation that fails half-way', async () => {
    const prefix = 'vmctfail';
    await expect(createTopology({ hosts: 2, vmsPerHost: 2, prefix, failAfterVms: 1 })).rejects.toThrow(/failAfterVms/);
    const mine = `${prefix}-${process.pid}-`;
    expect(listNetns().filter((name) => name.startsWith(mine))).toEqual([]);
    expect(readdirSync(REGION_DIRECTORY).filter((name) => name.startsWith(REGION_FILE_PREFIX + mine))).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(mine);
  });

  it('crashes one VM with killVm, leaving the rest running', async () => {
    const topology = await createTopology({ hosts: 1, vmsPerHost: 2 });
    try {
      const [v0, v1] = [topology.vm(0, 0), topology.vm(0, 1)];
      const inside = topology.exec(v0, ['sleep', '60']);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await topology.killVm(v0);
      expect((await inside.exited).signal).toBe('SIGKILL');
      expect(await gone(v0.pid)).toBe(true);
      expect(ok(await topology.run(v1, ['hostname'])).trim()).toBe('vm-h0-v1');
      expect((await topology.run(v0, ['true'])).code).not.toBe(0);
    } finally {
      await topology.destroy();
    }
    expect(listNetns().filter((name) => name.startsWith(topology.id))).toEqual([]);
  });

  it("sweeps the namespaces and region files of a run whose owner died", async () => {
    const prefix = 'vmctstale';
    // A pid that existed and is gone: the "owner" of the leftovers.
    const dead = spawnSync('true').pid!;
    const id = `${prefix}-${dead}-abcdef`;
    expect(spawnSync('ip', ['netns', 'add', `${id}-h0`]).status).toBe(0);
    writeFileSync(`${REGION_DIRECTORY}/${REGION_FILE_PREFIX}${id}-h0`, '');
    // One of a live owner (this process) is left alone.
    const liveId = `${prefix}-${process.pid}-fedcba`;
    expect(spawnSync('ip', ['netns', 'add', `${liveId}-h0`]).status).toBe(0);
    try {
      expect(sweepStaleTopologies(prefix)).toEqual([id]);
      expect(listNetns()).not.toContain(`${id}-h0`);
      expect(listNetns()).toContain(`${liveId}-h0`);
      expect(existsSync(`${REGION_DIRECTORY}/${REGION_FILE_PREFIX}${id}-h0`)).toBe(false);
    } finally {
      spawnSync('ip', ['netns', 'delete', `${id}-h0`]);
      spawnSync('ip', ['netns', 'delete', `${liveId}-h0`]);
    }
  });
});
