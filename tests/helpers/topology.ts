/**
 * A simulated cluster for multi-host, multi-VM tests: hosts are network namespaces joined by a
 * bridge, VMs are process trees with their own UTS, IPC, mount and PID namespaces inside their
 * host's network namespace. Root only; {@link canSimulateTopology} says why not elsewhere.
 *
 * ## Layout (for `createTopology({ hosts: 2, vmsPerHost: 2 })`)
 *
 * ```
 *   netns <id>-br        bridge `br0` (no address), one veth port `h<k>` per host
 *      │ veth h0 ⇄ eth0        │ veth h1 ⇄ eth0
 *   netns <id>-h0              netns <id>-h1           ← "hosts": lo up, eth0 = 10.250.0.<k+1>/24
 *    ├─ VM vm-h0-v0             ├─ VM vm-h1-v0          ← "VMs": unshare --uts --ipc --mount --pid
 *    └─ VM vm-h0-v1             └─ VM vm-h1-v1             inside the host's netns
 *   /dev/shm/vmcomm-topo-<id>-h0   /dev/shm/vmcomm-topo-<id>-h1   ← per-host region files (real host)
 * ```
 *
 * - `<id>` is `<prefix>-<owner pid>-<6 random hex>` (prefix defaults to `vmct`), so parallel and
 *   aborted runs never collide, and a later run can recognise (and sweep) the leftovers of a run whose
 *   owner process is dead.
 * - The bridge lives in its own namespace (not in host 0), so every host is symmetric and nothing is
 *   created in the real host's network namespace: deleting the namespaces deletes every veth.
 * - Addresses are private and exist only inside these namespaces: host k is `10.250.0.<k+1>/24`
 *   ({@link Host.address}). A server run in host 0's namespace ({@link Topology.exec} with a host
 *   target) on `10.250.0.1` (or `0.0.0.0`) is reachable from every host and VM.
 * - The VMs of one host share its network namespace (as the issue specifies): same address, same
 *   loopback, same abstract unix sockets. A real VM would have its own.
 *
 * ## What a VM sees
 *
 * - its own hostname `vm-h<k>-v<j>` (UTS), its own SysV/POSIX IPC (IPC), its own PIDs — the VM's
 *   supervisor is pid 1 and `/proc` is remounted for the new PID namespace (`--mount-proc`);
 * - a private mount namespace (`mount --make-rprivate /` first, so nothing propagates back) with
 *   - a private tmpfs on `/dev/shm` (the real one is hidden),
 *   - a private tmpfs on `/run` (hides the real `/run`, including `/run/netns`), holding
 *   - `/run/vmcomm/ivshmem` ({@link VM_REGION_PATH}): a bind mount of its host's region file, the
 *     stand-in for an ivshmem BAR (`/sys/bus/pci/devices/…/resource2` in a real guest);
 *   - a private tmpfs on `/tmp` unless `privateTmp: false` (so scripts to run in a VM must live
 *     elsewhere, e.g. in the repository — which stays visible at its own path even when it is
 *     itself under /tmp, as a CI checkout may be);
 * - everything else (the repository, `node`, `/sys` of its host's netns) as on the real host. Note
 *   `/sys/bus/pci` is the real machine's, which may hold virtio devices with vendor 0x1af4 — only
 *   device 0x1110 is ivshmem.
 *
 * The region file is created (mode 0600, `regionBytes` long, default 0) by `createTopology`; resize
 * it in place (`truncate`/`ftruncate`) — replacing the file (unlink + create) would leave the VMs'
 * bind mounts on the old inode.
 *
 * ## Cleanup
 *
 * {@link Topology.destroy} SIGKILLs every process started through the topology and each VM's pid 1
 * (which makes the kernel kill the whole VM and drop its mount namespace, so its mounts need no
 * unmounting), kills whatever is still in the namespaces, deletes them (and with them the veths and
 * the bridge) and removes the region files. It is idempotent and safe after a partial creation
 * (createTopology calls it itself when it fails). A process `exit` hook (and SIGINT/SIGTERM/SIGHUP)
 * does the same synchronously; each VM supervisor also exits when its stdin pipe from this process
 * closes, so the VMs die with the test process even on SIGKILL; the namespaces and region files of
 * a run whose owner died are swept by the next `createTopology` ({@link sweepStaleTopologies}).
 * (`ip netns add` leaves the usual `/run/netns` directory/bind mount behind; that is iproute2's, shared
 * by every netns user, and not removed.)
 *
 * @module
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, ftruncateSync, openSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanUpOnExit } from './exit-cleanup.js';
import { pidAlive } from './pids.js';

/** Where each VM sees its host's region file. */
export const VM_REGION_PATH = '/run/vmcomm/ivshmem';
/** This repository's root (kept visible inside a VM's private /tmp). */
const REPOSITORY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
/** The directory on the real host that holds the region files. */
export const REGION_DIRECTORY = '/dev/shm';
/** Region files are `/dev/shm/vmcomm-topo-<id>-h<k>`. */
export const REGION_FILE_PREFIX = 'vmcomm-topo-';
/** The bridge subnet; host k is `10.250.0.<k+1>`. */
export const SUBNET_PREFIX = '10.250.0';
export const SUBNET_BITS = 24;
/** What the VM supervisor prints once its namespaces and mounts are in place. */
const READY_LINE = 'vmcomm-topology-ready';
const DEFAULT_PREFIX = 'vmct';
const MAX_OUTPUT_CHARS = 8 * 1024 * 1024;
const READY_TIMEOUT_MS = 10_000;

export type SimulationCheck = { ok: true } | { ok: false; reason: string };

export interface TopologyOptions {
  hosts: number;
  vmsPerHost: number;
  /** Letters, digits or `_`, at most 16; the first part of every name (default `vmct`). */
  prefix?: string;
  /** Initial size of each host's region file (default 0: the caller sizes it). */
  regionBytes?: number;
  /** `size=` of each VM's `/dev/shm` tmpfs, e.g. `'256m'` (default: tmpfs's default, half of RAM). */
  shmSize?: string;
  /** Mount a private tmpfs on each VM's `/tmp` (default true, as a real VM would have). */
  privateTmp?: boolean;
  /** Sweep the leftovers of runs whose owner process is dead first (default true). */
  sweepStale?: boolean;
  /** Test hook for the harness's own test: fail (and clean up) after starting this many VMs. */
  failAfterVms?: number;
}

export interface Host {
  readonly kind: 'host';
  readonly index: number;
  /** The network namespace's name (`ip netns exec <netns> …`). */
  readonly netns: string;
  /** This host's address on the bridge, e.g. `10.250.0.1` for host 0. */
  readonly address: string;
  /** The region file on the real host, visible to this host's VMs at {@link VM_REGION_PATH}. */
  readonly regionFile: string;
  readonly vms: readonly Vm[];
}

export interface Vm {
  readonly kind: 'vm';
  /** The host's index. */
  readonly host: number;
  /** Index among its host's VMs. */
  readonly index: number;
  /** Its hostname, also its name: `vm-h<host>-v<index>`. */
  readonly hostname: string;
  /** Its host's network namespace. */
  readonly netns: string;
  /** Its host's address (VMs share their host's network namespace). */
  readonly address: string;
  /** Its pid 1, as a pid of the real host (the target of `nsenter -t`). */
  readonly pid: number;
  /** The region file of its host on the real host (it sees it at {@link VM_REGION_PATH}). */
  readonly hostRegionFile: string;
}

export type Target = Host | Vm;

export interface ExecOptions {
  /** Added to (and overriding) `process.env` unless `replaceEnv`. */
  env?: NodeJS.ProcessEnv;
  /** Use `env` as the whole environment. */
  replaceEnv?: boolean;
  /** Working directory, resolved inside the target (default `process.cwd()`). */
  cwd?: string;
  /** `'pipe'` to write to {@link TopologyProcess.stdin}; default `'ignore'`. */
  stdin?: 'pipe' | 'ignore';
}

export interface SpawnNodeOptions extends ExecOptions {
  /** Node options before the script (default none: not this process's, which may be vitest's). */
  execArgv?: string[];
}

export interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A command running in a VM or host, with its output collected. */
export interface TopologyProcess {
  /** The spawned `nsenter` (for a VM it forks the command; for a host it becomes the command). */
  readonly child: ChildProcess;
  readonly target: Target;
  readonly argv: readonly string[];
  readonly stdin: NodeJS.WritableStream | null;
  /** Output so far. */
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves when the process has exited and its output is closed. Never rejects. */
  readonly exited: Promise<Outcome>;
  /** Resolves with the first match of `pattern` in stdout (or stderr with `stream`); rejects on exit or timeout. */
  waitFor(pattern: RegExp, timeoutMs?: number, stream?: 'stdout' | 'stderr'): Promise<RegExpMatchArray>;
  /** Signals the command itself (inside the VM), not just `nsenter`. */
  kill(signal?: NodeJS.Signals): void;
  /** The command's pid on the real host, once started (`undefined` before nsenter forked / after exit). */
  hostPid(): number | undefined;
}

export interface Topology {
  readonly id: string;
  readonly hosts: readonly Host[];
  /** Every VM, host by host. */
  readonly vms: readonly Vm[];
  /** The namespace holding the bridge. */
  readonly bridgeNetns: string;
  /** Every network namespace it created (hosts, then the bridge). */
  readonly namespaces: readonly string[];
  /** `vms[host].vms[index]`. */
  vm(host: number, index: number): Vm;
  /** Runs `argv` inside a VM (all its namespaces) or a host (its network namespace only). */
  exec(target: Target, argv: readonly string[], options?: ExecOptions): TopologyProcess;
  /** `exec(target, [process.execPath, ...execArgv, script, ...args])`. */
  spawnNode(target: Target, script: string, args?: readonly string[], options?: SpawnNodeOptions): TopologyProcess;
  /** `exec` to the end. */
  run(target: Target, argv: readonly string[], options?: ExecOptions & { timeoutMs?: number }): Promise<Outcome>;
  /**
   * Crashes a VM: SIGKILLs its pid 1, so the kernel kills every process in it at once (a VM that
   * died, for peer-loss tests). Resolves once it is gone. Its host, region and the other VMs stay.
   */
  killVm(vm: Vm): Promise<void>;
  /** Kills, unmounts (by ending the VMs), deletes namespaces and region files. Idempotent. */
  destroy(): Promise<void>;
  readonly destroyed: boolean;
}

// ---------------------------------------------------------------------------------------------
// Capability check

let cachedCheck: SimulationCheck | undefined;

function which(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** Whether this machine can run {@link createTopology}, and if not, why. */
export function canSimulateTopology(): SimulationCheck {
  if (cachedCheck !== undefined) return cachedCheck;
  cachedCheck = check();
  return cachedCheck;
}

function check(): SimulationCheck {
  if (process.platform !== 'linux') return { ok: false, reason: `needs Linux namespaces (this is ${process.platform})` };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { ok: false, reason: 'needs root (network, mount and PID namespaces)' };
  for (const tool of ['ip', 'unshare', 'nsenter', 'mount', 'hostname', 'bash', 'env']) {
    if (!which(tool)) return { ok: false, reason: `\`${tool}\` is not installed` };
  }
  if (!existsSync(REGION_DIRECTORY)) return { ok: false, reason: `${REGION_DIRECTORY} does not exist` };
  const probe = `${DEFAULT_PREFIX}-${process.pid}-${randomBytes(3).toString('hex')}-probe`;
  const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  try {
    if (add.status !== 0) return { ok: false, reason: `cannot create a network namespace: ${(add.stderr || add.error?.message || '').trim()}` };
    const br = spawnSync('ip', ['-n', probe, 'link', 'add', 'br0', 'type', 'bridge'], { encoding: 'utf8' });
    if (br.status !== 0) return { ok: false, reason: `cannot create a bridge in a network namespace: ${br.stderr.trim()}` };
    const veth = spawnSync('ip', ['-n', probe, 'link', 'add', 'a0', 'type', 'veth', 'peer', 'name', 'b0'], { encoding: 'utf8' });
    if (veth.status !== 0) return { ok: false, reason: `cannot create a veth pair: ${veth.stderr.trim()}` };
    const vm = spawnSync(
      'ip',
      ['netns', 'exec', probe, 'unshare', '--uts', '--ipc', '--mount', '--pid', '--fork', '--mount-proc', '--propagation', 'private', 'sh', '-c', 'hostname vmcomm-probe && mount -n -t tmpfs probe /dev/shm && echo ok'],
      { encoding: 'utf8', timeout: 10_000 },
    );
    if (vm.status !== 0 || !vm.stdout.includes('ok')) return { ok: false, reason: `cannot create UTS/IPC/mount/PID namespaces: ${(vm.stderr || vm.error?.message || '').trim()}` };
    return { ok: true };
  } finally {
    if (add.status === 0) spawnSync('ip', ['netns', 'delete', probe], { stdio: 'ignore' });
  }
}

// ---------------------------------------------------------------------------------------------
// Process-exit safety net

interface LiveState {
  id: string;
  namespaces: string[];
  regionFiles: string[];
  /** Real-host pids of the VMs' pid 1s: SIGKILL ends a whole VM. */
  vmPids: Set<number>;
  /**
   * `unshare` and `nsenter` processes (children of this process). Killed last: each reaps its child
   * (a VM's pid 1, a command in a VM), which killing them first would orphan to the real init.
   */
  launchers: Set<number>;
}

const live = new Map<string, LiveState>();
function cleanupAllSync(): void {
  for (const state of [...live.values()]) cleanupSync(state);
}

function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function netnsPidsSync(netns: string): number[] {
  const result = spawnSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' });
  if (result.status !== 0) return [];
  return result.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number);
}

/** Synchronous teardown (exit hook, stale sweep). */
function cleanupSync(state: LiveState): void {
  for (const pid of state.vmPids) killQuietly(pid);
  for (const pid of state.launchers) killQuietly(pid);
  for (const netns of state.namespaces) {
    for (let round = 0; round < 5; round++) {
      const pids = netnsPidsSync(netns);
      if (pids.length === 0) break;
      for (const pid of pids) killQuietly(pid);
    }
    spawnSync('ip', ['netns', 'delete', netns], { stdio: 'ignore' });
  }
  for (const file of state.regionFiles) {
    try {
      unlinkSync(file);
    } catch {
      // never created, or already removed
    }
  }
  live.delete(state.id);
}

/**
 * Removes namespaces and region files left by topologies whose owner process is dead (a run that
 * was SIGKILLed). Returns the ids swept. Those of live owners — parallel runs — are left alone.
 */
export function sweepStaleTopologies(prefix = DEFAULT_PREFIX): string[] {
  validatePrefix(prefix);
  const idPattern = new RegExp(`^(${prefix}-(\\d+)-[0-9a-f]{6})-(?:h\\d+|br|probe)$`);
  const filePattern = new RegExp(`^${REGION_FILE_PREFIX}(${prefix}-(\\d+)-[0-9a-f]{6})-h\\d+$`);
  const stale = new Map<string, LiveState>();
  const add = (id: string, owner: number): LiveState | undefined => {
    // Our own (live or destroyed) and those of live owners are not stale.
    if (live.has(id) || owner === process.pid || pidAlive(owner)) return undefined;
    let state = stale.get(id);
    if (state === undefined) stale.set(id, (state = { id, namespaces: [], regionFiles: [], vmPids: new Set(), launchers: new Set() }));
    return state;
  };
  const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  for (const line of (list.stdout ?? '').split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const match = idPattern.exec(name);
    if (match) add(match[1]!, Number(match[2]))?.namespaces.push(name);
  }
  let files: string[] = [];
  try {
    files = readdirSync(REGION_DIRECTORY);
  } catch {
    // no /dev/shm
  }
  for (const file of files) {
    const match = filePattern.exec(file);
    if (match) add(match[1]!, Number(match[2]))?.regionFiles.push(`${REGION_DIRECTORY}/${file}`);
  }
  for (const state of stale.values()) cleanupSync(state);
  return [...stale.keys()];
}

// ---------------------------------------------------------------------------------------------
// Creation

function validatePrefix(prefix: string): void {
  if (!/^[A-Za-z0-9_]{1,16}$/.test(prefix)) throw new RangeError(`prefix must be 1–16 letters, digits or _, got ${JSON.stringify(prefix)}`);
}

function runIp(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`ip ${args.join(' ')} failed (${code}): ${stderr.trim()}`))));
  });
}

/** The VM's pid 1: the child of `unshare --fork` that is pid 1 in its PID namespace. */
function supervisorPid(unsharePid: number): number | undefined {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  } catch {
    // no CONFIG_PROC_CHILDREN: scan /proc
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (/^PPid:\s+(\d+)$/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1] === String(unsharePid)) children.push(Number(entry));
      } catch {
        // gone
      }
    }
  }
  for (const pid of children) {
    try {
      const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]?.trim().split(/\s+/);
      if (nspid !== undefined && nspid.length > 1 && nspid[nspid.length - 1] === '1') return pid;
    } catch {
      // gone
    }
  }
  return undefined;
}

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const SUPERVISOR = `
set -eu
hostname "$VMCOMM_TOPO_HOSTNAME"
# -n everywhere: util-linux would otherwise create /run/mount (its utab) on the real /run.
mount -n --make-rprivate /
# Drop this mount namespace's copies of the /run/netns bind mounts: they would keep the other
# namespaces alive, and a VM has no business seeing them.
umount -n -l /run/netns 2>/dev/null || true
mount -n -t tmpfs -o mode=0755,size=16m vmcomm-topo-run /run
mkdir -p /run/vmcomm
: > ${VM_REGION_PATH}
mount -n --bind "$VMCOMM_TOPO_REGION" ${VM_REGION_PATH}
mount -n -t tmpfs -o "mode=1777$VMCOMM_TOPO_SHM_SIZE" vmcomm-topo-shm /dev/shm
if [ "$VMCOMM_TOPO_PRIVATE_TMP" = 1 ]; then
  # A checkout under /tmp (CI clones there) stays visible at its own path inside the private /tmp.
  case "$VMCOMM_TOPO_KEEP" in /tmp/*) mkdir -p /run/vmcomm/keep && mount -n --bind "$VMCOMM_TOPO_KEEP" /run/vmcomm/keep ;; esac
  mount -n -t tmpfs -o mode=1777 vmcomm-topo-tmp /tmp
  case "$VMCOMM_TOPO_KEEP" in /tmp/*) mkdir -p "$VMCOMM_TOPO_KEEP" && mount -n --bind /run/vmcomm/keep "$VMCOMM_TOPO_KEEP" ;; esac
fi
echo ${READY_LINE}
# Live until the test process closes our stdin (or dies); bash reaps orphans reparented to us.
while read -r _; do :; done
`;

async function startVm(state: LiveState, host: Host, index: number, options: TopologyOptions, supervisors: ChildProcess[]): Promise<[Vm, ChildProcess]> {
  const hostname = `vm-h${host.index}-v${index}`;
  const unshare = spawn(
    'ip',
    ['netns', 'exec', host.netns, 'unshare', '--uts', '--ipc', '--mount', '--pid', '--fork', '--mount-proc', '--propagation', 'private', '--kill-child', 'bash', '-c', SUPERVISOR],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        VMCOMM_TOPO_HOSTNAME: hostname,
        VMCOMM_TOPO_REGION: host.regionFile,
        VMCOMM_TOPO_SHM_SIZE: options.shmSize === undefined ? '' : `,size=${options.shmSize}`,
        VMCOMM_TOPO_PRIVATE_TMP: options.privateTmp === false ? '0' : '1',
        VMCOMM_TOPO_KEEP: REPOSITORY,
      },
    },
  );
  supervisors.push(unshare);
  if (unshare.pid !== undefined) state.launchers.add(unshare.pid);
  // Don't let the supervisor pipes keep the test process alive.
  (unshare.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  (unshare.stdout as unknown as { unref?: () => void } | null)?.unref?.();
  (unshare.stderr as unknown as { unref?: () => void } | null)?.unref?.();
  unshare.unref();
  let stdout = '';
  let stderr = '';
  unshare.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  unshare.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  unshare.stdin!.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    const fail = (why: string): void => {
      cleanup();
      reject(new Error(`VM ${hostname} did not start: ${why}\nstdout: ${stdout}\nstderr: ${stderr}`));
    };
    const timer = setTimeout(() => fail(`no "${READY_LINE}" within ${READY_TIMEOUT_MS} ms`), READY_TIMEOUT_MS);
    const onData = (): void => {
      if (stdout.includes(READY_LINE)) {
        cleanup();
        resolve();
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => fail(`exited (${code ?? signal})`);
    const onError = (error: Error): void => fail(error.message);
    function cleanup(): void {
      clearTimeout(timer);
      unshare.stdout!.off('data', onData);
      unshare.off('exit', onExit);
      unshare.off('error', onError);
    }
    unshare.stdout!.on('data', onData);
    unshare.once('exit', onExit);
    unshare.once('error', onError);
  });
  const pid = supervisorPid(unshare.pid!);
  if (pid === undefined) throw new Error(`VM ${hostname}: cannot find its pid 1 under unshare ${unshare.pid}`);
  state.vmPids.add(pid);
  return [{ kind: 'vm', host: host.index, index, hostname, netns: host.netns, address: host.address, pid, hostRegionFile: host.regionFile }, unshare];
}

/**
 * Builds the namespaces, bridge, region files and VMs. On any failure it tears down what it built
 * and rethrows. The network part takes ~150 ms for 2 hosts (one `ip` call per step); VMs start in
 * parallel: 2 × 2 is ~0.4 s on an idle 2-core machine, 1–2 s under load. `destroy()` takes ~20–100 ms.
 */
export async function createTopology(options: TopologyOptions): Promise<Topology> {
  const check = canSimulateTopology();
  if (!check.ok) throw new Error(`cannot simulate a topology: ${check.reason}`);
  const { hosts: hostCount, vmsPerHost } = options;
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  validatePrefix(prefix);
  if (!Number.isInteger(hostCount) || hostCount < 1 || hostCount > 250) throw new RangeError(`hosts must be 1–250, got ${hostCount}`);
  if (!Number.isInteger(vmsPerHost) || vmsPerHost < 0 || vmsPerHost > 64) throw new RangeError(`vmsPerHost must be 0–64, got ${vmsPerHost}`);
  const regionBytes = options.regionBytes ?? 0;
  if (!Number.isSafeInteger(regionBytes) || regionBytes < 0) throw new RangeError(`regionBytes must be a non-negative integer, got ${regionBytes}`);
  if (options.shmSize !== undefined && !/^\d+[kmgKMG%]?$/.test(options.shmSize)) throw new RangeError(`shmSize must look like 256m, got ${options.shmSize}`);
  if (options.sweepStale !== false) sweepStaleTopologies(prefix);

  const id = `${prefix}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const bridgeNetns = `${id}-br`;
  const state: LiveState = { id, namespaces: [], regionFiles: [], vmPids: new Set(), launchers: new Set() };
  live.set(id, state);
  cleanUpOnExit(cleanupAllSync);

  const supervisors: ChildProcess[] = [];
  const supervisorOf = new Map<Vm, ChildProcess>();
  const processes = new Set<TopologyProcess>();
  const hosts: Host[] = [];
  const vms: Vm[] = [];
  let destroying: Promise<void> | undefined;

  const destroy = (): Promise<void> => {
    destroying ??= (async () => {
      // The commands and the VMs' pid 1s first (a dying pid 1 takes its whole PID namespace along);
      // their nsenter/unshare parents then reap them and exit by themselves.
      for (const proc of processes) proc.kill('SIGKILL');
      for (const pid of state.vmPids) killQuietly(pid);
      for (const supervisor of supervisors) supervisor.stdin?.destroy();
      const allExited = (ms: number): Promise<unknown> =>
        Promise.all([...[...processes].map((proc) => withTimeout(proc.exited, ms)), ...supervisors.map((supervisor) => withTimeout(exitOf(supervisor), ms))]);
      await allExited(3_000);
      // Anything still there (a VM that never got its pid 1 recorded: --kill-child ends it).
      for (const pid of state.launchers) killQuietly(pid);
      await allExited(2_000);
      // Whatever is left in the namespaces (a VM's pid 1 dying already killed its whole PID namespace).
      cleanupSync(state);
    })();
    return destroying;
  };

  try {
    // Namespaces: record each name before creating it, so a failure cleans it up.
    const names = [...Array.from({ length: hostCount }, (_, k) => `${id}-h${k}`), bridgeNetns];
    for (const name of names) {
      state.namespaces.push(name);
      await runIp(['netns', 'add', name]);
      await runIp(['-n', name, 'link', 'set', 'lo', 'up']);
    }
    await runIp(['-n', bridgeNetns, 'link', 'add', 'br0', 'type', 'bridge']);
    await runIp(['-n', bridgeNetns, 'link', 'set', 'br0', 'up']);
    for (let k = 0; k < hostCount; k++) {
      const netns = `${id}-h${k}`;
      const address = `${SUBNET_PREFIX}.${k + 1}`;
      // Created in the bridge namespace with the peer straight in the host's: nothing touches the real host's.
      await runIp(['-n', bridgeNetns, 'link', 'add', `h${k}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
      await runIp(['-n', bridgeNetns, 'link', 'set', `h${k}`, 'master', 'br0', 'up']);
      await runIp(['-n', netns, 'addr', 'add', `${address}/${SUBNET_BITS}`, 'dev', 'eth0']);
      await runIp(['-n', netns, 'link', 'set', 'eth0', 'up']);
      const regionFile = `${REGION_DIRECTORY}/${REGION_FILE_PREFIX}${id}-h${k}`;
      state.regionFiles.push(regionFile);
      const fd = openSync(regionFile, 'wx', 0o600);
      try {
        if (regionBytes > 0) ftruncateSync(fd, regionBytes);
      } finally {
        closeSync(fd);
      }
      hosts.push({ kind: 'host', index: k, netns, address, regionFile, vms: [] });
    }
    // VMs start in parallel; every supervisor is recorded as it is spawned, so a failure of one
    // still lets destroy() end the others.
    let wanted = hosts.flatMap((host) => Array.from({ length: vmsPerHost }, (_, j) => [host, j] as const));
    if (options.failAfterVms !== undefined) wanted = wanted.slice(0, options.failAfterVms);
    const results = await Promise.allSettled(wanted.map(([host, j]) => startVm(state, host, j, options, supervisors)));
    for (const result of results) if (result.status === 'rejected') throw result.reason;
    if (options.failAfterVms !== undefined) throw new Error(`failAfterVms: failing after ${wanted.length} VMs, as asked`);
    for (const result of results) {
      const [vm, unshare] = (result as PromiseFulfilledResult<[Vm, ChildProcess]>).value;
      (hosts[vm.host]!.vms as Vm[]).push(vm);
      vms.push(vm);
      supervisorOf.set(vm, unshare);
    }
  } catch (error) {
    // A VM that failed to start is in `supervisors` and state.launchers already.
    await destroy();
    throw error;
  }

  const exec = (target: Target, argv: readonly string[], execOptions: ExecOptions = {}): TopologyProcess => {
    if (destroying !== undefined) throw new Error(`topology ${id} is destroyed`);
    if (argv.length === 0) throw new RangeError('argv is empty');
    const cwd = execOptions.cwd ?? process.cwd();
    const env = execOptions.replaceEnv ? { ...execOptions.env } : { ...process.env, ...execOptions.env };
    const nsenterArgs =
      target.kind === 'vm'
        ? // Enter every namespace of the VM; nsenter forks (for --pid) and waits. `env -C` resolves the
          // working directory inside the VM's mount namespace (nsenter --wd would open it outside).
          ['-t', String(target.pid), '--net', '--uts', '--ipc', '--mount', '--pid', '--', 'env', '-C', cwd, '--', ...argv]
        : // A host: only its network namespace; nsenter execs the command (same pid).
          [`--net=/run/netns/${target.netns}`, '--', ...argv];
    const child = spawn('nsenter', nsenterArgs, { cwd: target.kind === 'host' ? cwd : '/', env, stdio: [execOptions.stdin ?? 'ignore', 'pipe', 'pipe'] });
    const proc = collect(child, target, argv, state);
    processes.add(proc);
    void proc.exited.then(() => {
      processes.delete(proc);
      if (child.pid !== undefined) state.launchers.delete(child.pid);
    });
    return proc;
  };

  const topology: Topology = {
    id,
    hosts,
    vms,
    bridgeNetns,
    namespaces: state.namespaces.slice(),
    vm(host, index) {
      const vm = hosts[host]?.vms[index];
      if (vm === undefined) throw new RangeError(`no VM ${index} on host ${host}`);
      return vm;
    },
    exec,
    spawnNode(target, script, args = [], nodeOptions = {}) {
      return exec(target, [process.execPath, ...(nodeOptions.execArgv ?? []), script, ...args], nodeOptions);
    },
    async run(target, argv, runOptions = {}) {
      const proc = exec(target, argv, runOptions);
      const timeoutMs = runOptions.timeoutMs ?? 30_000;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          proc.kill('SIGKILL');
          reject(new Error(`${argv.join(' ')} in ${describe(target)} did not finish within ${timeoutMs} ms\nstdout: ${proc.stdout}\nstderr: ${proc.stderr}`));
        }, timeoutMs);
      });
      try {
        return await Promise.race([proc.exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    async killVm(vm) {
      const supervisor = supervisorOf.get(vm);
      if (supervisor === undefined) throw new RangeError(`${vm.hostname} is not a VM of topology ${id}`);
      killQuietly(vm.pid);
      await withTimeout(exitOf(supervisor), 5_000);
    },
    destroy,
    get destroyed() {
      return destroying !== undefined;
    },
  };
  return topology;
}

function describe(target: Target): string {
  return target.kind === 'vm' ? `VM ${target.hostname}` : `host ${target.index} (${target.netns})`;
}

function exitOf(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('close', () => resolve());
    child.once('error', () => resolve());
  });
}

async function withTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise, new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

function collect(child: ChildProcess, target: Target, argv: readonly string[], state: LiveState): TopologyProcess {
  if (child.pid !== undefined) state.launchers.add(child.pid);
  const out = { stdout: '', stderr: '' };
  const listeners = new Set<() => void>();
  const append = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
    if (out[stream].length < MAX_OUTPUT_CHARS) out[stream] += chunk.toString('utf8');
    for (const listener of listeners) listener();
  };
  child.stdout?.on('data', append('stdout'));
  child.stderr?.on('data', append('stderr'));
  let done = false;
  const exited = new Promise<Outcome>((resolve) => {
    child.once('error', (error) => {
      out.stderr += `\n[spawn error] ${error.message}`;
    });
    child.once('close', (code, signal) => {
      done = true;
      for (const listener of listeners) listener();
      resolve({ code, signal, stdout: out.stdout, stderr: out.stderr });
    });
  });
  const hostPid = (): number | undefined => {
    if (done || child.pid === undefined) return undefined;
    // For a VM, nsenter forked the command; for a host, nsenter became it.
    return target.kind === 'vm' ? childPids(child.pid)[0] : child.pid;
  };
  return {
    child,
    target,
    argv,
    stdin: child.stdin,
    get stdout() {
      return out.stdout;
    },
    get stderr() {
      return out.stderr;
    },
    exited,
    hostPid,
    kill(signal = 'SIGTERM') {
      if (done || child.pid === undefined) return;
      // For a VM, signal the command, not nsenter: nsenter reaps it and dies of the same signal
      // (killing nsenter would orphan the command to the real init). Before the fork: nsenter.
      killQuietly(hostPid() ?? child.pid, signal);
    },
    waitFor(pattern, timeoutMs = 10_000, stream = 'stdout') {
      return new Promise<RegExpMatchArray>((resolve, reject) => {
        const test = (): void => {
          const match = pattern.exec(out[stream]);
          if (match) {
            finish();
            resolve(match);
          } else if (done) {
            finish();
            reject(new Error(`${argv.join(' ')} in ${describe(target)} exited before printing ${pattern}\nstdout: ${out.stdout}\nstderr: ${out.stderr}`));
          }
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`${argv.join(' ')} in ${describe(target)} did not print ${pattern} within ${timeoutMs} ms\nstdout: ${out.stdout}\nstderr: ${out.stderr}`));
        }, timeoutMs);
        function finish(): void {
          clearTimeout(timer);
          listeners.delete(test);
        }
        listeners.add(test);
        test();
      });
    },
  };
}

/** Names of network namespaces now present (for tests checking cleanup). */
export function listNetns(): string[] {
  const result = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  return (result.stdout ?? '').split('\n').map((line) => line.split(' ')[0] ?? '').filter(Boolean);
}

/** Kept for callers that want to block on cleanup at the very end of a process. */
export function destroyAllSync(): void {
  cleanupAllSync();
}
