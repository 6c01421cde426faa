/**
 * Real guests for the VM test: QEMU/TCG machines with their own kernels that run the project from the
 * host's root, shared read-only over virtio-9p, find their ivshmem device on their own PCI bus, and
 * talk over a link that exists only between them.
 *
 * ## What a lab is
 *
 * {@link createLab} makes, for one test:
 *
 * - a work directory `<tmp>/vmcomm-vm-<pid>-<hex>/` (mode 0700) holding the initramfs, each guest's
 *   console log and `share/`, the one directory the guests may write (9p tag `share`, mounted in each
 *   guest at the same path as on the host): the test writes each guest's script there
 *   (`guest-<name>.sh`, see {@link VmLab.writeScript}) and reads back what the guests write (their
 *   script's output `guest-<name>.log`, its exit status `guest-<name>.exit`, result files);
 * - region files `/dev/shm/vmcomm-vm-<pid>-<hex>-<region>`, formatted with `vmcomm ivshmem create`
 *   as a user would, each given to the guests that name it as `memory-backend-file,share=on` +
 *   `ivshmem-plain`;
 * - the initramfs (`initramfs.ts`, `guest-init.sh`): static busybox, the modules for virtio-9p and
 *   virtio-net from the host's guest kernel (Debian's linux-image-amd64), the init script.
 *
 * {@link VmLab.start} boots every guest at once (`-machine q35,accel=tcg -cpu max -smp 1`, no
 * display, the console on a file, `-no-reboot`, and `panic=-1` so that a guest whose init dies ends
 * its QEMU). QEMU boots the kernel unpacked from the host's bzImage through its PVH entry
 * (`uncompressedKernel`), which spares each emulated CPU seconds of decompression. Guests given an address share one link: QEMU's `-netdev socket`
 * multicast on 127.0.0.1 (a random group and port per lab), so frames travel between the QEMU
 * processes over the host's loopback only; the addresses exist only inside the guests. Nothing is
 * created in the host's network configuration.
 *
 * ## Cleanup
 *
 * {@link VmLab.destroy} SIGKILLs every QEMU, waits for it, and removes the work directory and the
 * region files; idempotent. The same runs synchronously from `exit` and SIGINT/SIGTERM/SIGHUP hooks.
 * Each QEMU is started through `setpriv --pdeathsig SIGKILL` (where util-linux has it), so it dies
 * with the test process even when that is SIGKILLed; the work directories, region files and QEMUs of
 * a run whose owner is dead are swept by the next {@link createLab}.
 *
 * @module
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { hasCommand, mayInstallPackages } from '../helpers/pmi-launchers.js';
import { finish, vmcomm } from '../helpers/processes.js';
import { BASE_MODULES, buildInitramfs, findGuestKernel, isStaticElf, NET_MODULES, uncompressedKernel, type GuestKernel } from './initramfs.js';
import { cleanUpOnExit } from '../helpers/exit-cleanup.js';
import { pidAlive } from '../helpers/pids.js';

/** The Debian packages the guests need (test-only dependencies). */
export const GUEST_PACKAGES = ['qemu-system-x86', 'linux-image-amd64', 'busybox-static'] as const;
export const QEMU = 'qemu-system-x86_64';
export const BUSYBOX = '/bin/busybox';
const INIT_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'guest-init.sh');
const ID_PREFIX = 'vmcomm-vm';
const REGION_DIRECTORY = '/dev/shm';
/** Console lines the init script prints (`vmcomm-guest[a1] 3.14s: running …`). */
const RUNNING = /^vmcomm-guest\[[^\]]*\] ([\d.]+)s: running /m;
/** How long a failed guest's peers get to write their own logs before they are stopped. */
const FAILURE_GRACE_MS = 3_000;
/** How long a SIGKILLed QEMU may take to be reaped. */
const KILL_WAIT_MS = 10_000;
/** Paths go on the kernel command line, which splits at spaces and has no quoting. */
const SAFE_PATH = /^\/[A-Za-z0-9_.+\-/]*$/;

// ---------------------------------------------------------------------------------------------
// Can guests run here?

export type GuestCheck = { ok: true; kernel: GuestKernel } | { ok: false; reason: string };

/** Whether this machine can boot the guests now (packages installed, root), and if not, why. */
export function checkGuests(): GuestCheck {
  if (process.platform !== 'linux' || process.arch !== 'x64') return { ok: false, reason: `needs x86-64 Linux (this is ${process.platform}/${process.arch})` };
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    return { ok: false, reason: "needs root (a guest's ivshmem BAR, resource2, is root-only, and the guests share the host's root as root)" };
  }
  if (!hasCommand(QEMU)) return { ok: false, reason: `${QEMU} not found (Debian's qemu-system-x86)` };
  if (!existsSync(BUSYBOX) || !isStaticElf(BUSYBOX)) return { ok: false, reason: `${BUSYBOX} is missing or not statically linked (Debian's busybox-static)` };
  const kernel = findGuestKernel();
  if ('reason' in kernel) return { ok: false, reason: kernel.reason };
  if (!existsSync(REGION_DIRECTORY)) return { ok: false, reason: `${REGION_DIRECTORY} does not exist (region files live there)` };
  return { ok: true, kernel };
}

export type GuestAvailability = { kind: 'ready' } | { kind: 'install' } | { kind: 'skip'; reason: string };

/**
 * `ready` (guests can boot), `install` (packages are missing but may be installed in a hook: root
 * with CI=true, as for the other test-only packages), or `skip` with the reason to print.
 */
export function guestAvailability(): GuestAvailability {
  const check = checkGuests();
  if (check.ok) return { kind: 'ready' };
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { kind: 'skip', reason: check.reason };
  if (mayInstallPackages()) return { kind: 'install' };
  return { kind: 'skip', reason: `${check.reason}; install Debian's ${GUEST_PACKAGES.join(' ')} (the test does that itself when run as root with CI=true)` };
}

/**
 * `apt-get update` and install {@link GUEST_PACKAGES}. `INITRD=No` skips building an initramfs for
 * the installed kernel, which the guests never use (they get their own) and which takes a while.
 * Resolves with the reason when installing failed, else `undefined`.
 */
export async function installGuestPackages(): Promise<string | undefined> {
  const script = `apt-get update -qq && apt-get install -y -qq --no-install-recommends ${GUEST_PACKAGES.join(' ')}`;
  const child = spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', INITRD: 'No' } });
  try {
    const out = await finish(child, undefined, 600_000);
    if (out.code !== 0) return `installing ${GUEST_PACKAGES.join(' ')} failed (exit ${out.code}): ${(out.stderr || out.stdout).trim().slice(-1500)}`;
  } catch (error) {
    return `installing ${GUEST_PACKAGES.join(' ')} failed: ${(error as Error).message.slice(0, 1500)}`;
  }
  const check = checkGuests();
  return check.ok ? undefined : `installed ${GUEST_PACKAGES.join(' ')}, but: ${check.reason}`;
}

// ---------------------------------------------------------------------------------------------
// Labs

export interface GuestSpec {
  /** 1–16 lowercase letters and digits: hostname, file names. */
  readonly name: string;
  /** An IPv4 address with prefix on the lab's link (`10.251.0.1/24`); none: loopback only. */
  readonly address?: string;
  /** The name of one of {@link LabOptions.regions}: this guest gets it as an ivshmem-plain device. */
  readonly region?: string;
}

export interface LabOptions {
  readonly guests: readonly GuestSpec[];
  /** Region name → size in bytes (a power of two), formatted with `vmcomm ivshmem create`. */
  readonly regions?: Readonly<Record<string, number>>;
  /** Guest memory (default 512). */
  readonly memoryMiB?: number;
  /** Host paths the guests must see even under /tmp or /run, which they mount their own (the repository: a CI checkout may be there). */
  readonly keep?: readonly string[];
}

export interface GuestOutcome {
  readonly name: string;
  /** The exit status of the guest's script, or `undefined` when it never finished. */
  readonly status: number | undefined;
  /** How QEMU ended. */
  readonly qemu: { readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly stderr: string };
  /** From starting QEMU to the guest starting its script (host clock), if it got there. */
  readonly bootMs: number | undefined;
  /** From starting QEMU to its exit. */
  readonly ms: number;
}

export interface VmLab {
  readonly id: string;
  readonly workDir: string;
  /** The directory the guests may write, mounted at the same path inside them. */
  readonly share: string;
  /** Region name → host file. */
  readonly regions: ReadonlyMap<string, string>;
  readonly kernel: GuestKernel;
  readonly initramfs: { readonly path: string; readonly bytes: number; readonly modules: readonly string[] };
  /** What QEMU boots: the kernel unpacked for PVH boot, else the bzImage with the reason in `note`. */
  readonly boot: { readonly image: string; readonly note?: string };
  /** Writes the script `name` runs (with the host's /bin/sh, from /, as root, a clean environment). */
  writeScript(name: string, text: string): void;
  /** Boots every guest at once. */
  start(): void;
  /**
   * Resolves once every guest has run its script and powered off, all with status 0. Rejects —
   * after stopping the others, {@link FAILURE_GRACE_MS} later — as soon as one fails, and when
   * `timeoutMs` passes; the error holds each guest's console and script output tails.
   */
  wait(timeoutMs: number): Promise<GuestOutcome[]>;
  /** Each guest's console log and script output, tails, for messages. */
  report(tailChars?: number): string;
  /** Kills every QEMU, removes the work directory and the region files. Idempotent. */
  destroy(): Promise<void>;
}

interface LiveLab {
  readonly id: string;
  readonly workDir: string;
  readonly regionFiles: string[];
  readonly qemus: Set<ChildProcess>;
}

const live = new Map<string, LiveLab>();
function cleanupAllSync(): void {
  for (const lab of [...live.values()]) cleanupSync(lab);
}

function cleanupSync(lab: LiveLab): void {
  for (const qemu of lab.qemus) if (qemu.exitCode === null && qemu.signalCode === null) qemu.kill('SIGKILL');
  removeFiles(lab);
  live.delete(lab.id);
}

function removeFiles(lab: { workDir: string; regionFiles: readonly string[] }): void {
  rmSync(lab.workDir, { recursive: true, force: true });
  for (const file of lab.regionFiles) {
    try {
      unlinkSync(file);
    } catch {
      // never created, or already removed
    }
  }
}

/**
 * Removes what labs whose owner process is dead left behind: QEMUs (named `vmcomm-vm-<pid>-<hex>-…`
 * with `-name`), work directories and region files. Returns the ids swept; live owners' are left alone.
 */
export function sweepStaleLabs(): string[] {
  const pattern = new RegExp(`^(${ID_PREFIX}-(\\d+)-[0-9a-f]{6})(?:-[a-z0-9]+)?$`);
  const stale = new Map<string, { workDir: string; regionFiles: string[]; pids: number[] }>();
  const entry = (name: string): { workDir: string; regionFiles: string[]; pids: number[] } | undefined => {
    const match = pattern.exec(name);
    if (match === null) return undefined;
    const [, id, owner] = match;
    if (live.has(id!) || Number(owner) === process.pid || pidAlive(Number(owner))) return undefined;
    let e = stale.get(id!);
    if (e === undefined) stale.set(id!, (e = { workDir: path.join(tmpdir(), id!), regionFiles: [], pids: [] }));
    return e;
  };
  for (const name of safeList(tmpdir())) entry(name);
  for (const name of safeList(REGION_DIRECTORY)) entry(name)?.regionFiles.push(path.join(REGION_DIRECTORY, name));
  for (const pid of safeList('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    const named = argv.indexOf('-name');
    if (named > 0 && path.basename(argv[0] ?? '') === QEMU) entry(argv[named + 1] ?? '')?.pids.push(Number(pid));
  }
  for (const e of stale.values()) {
    for (const pid of e.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    removeFiles(e);
  }
  return [...stale.keys()];
}

function safeList(directory: string): string[] {
  try {
    return readdirSync(directory);
  } catch {
    return [];
  }
}

function hasPdeathsig(): boolean {
  const help = spawnSync('setpriv', ['--help'], { encoding: 'utf8', timeout: 10_000 });
  return help.status === 0 && help.stdout.includes('--pdeathsig');
}

/** Random bytes as a number in [min, max). */
function randomIn(min: number, max: number): number {
  return min + (randomBytes(4).readUInt32BE(0) % (max - min));
}

/** Creates the work directory, region files and initramfs; boots nothing yet. Throws with the reason. */
export async function createLab(options: LabOptions): Promise<VmLab> {
  const check = checkGuests();
  if (!check.ok) throw new Error(`cannot boot guests: ${check.reason}`);
  const kernel = check.kernel;
  const names = new Set<string>();
  for (const g of options.guests) {
    if (!/^[a-z0-9]{1,16}$/.test(g.name) || names.has(g.name)) throw new RangeError(`guest names must be distinct, 1–16 lowercase letters or digits: ${JSON.stringify(g.name)}`);
    names.add(g.name);
    if (g.address !== undefined && !/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/.test(g.address)) throw new RangeError(`guest ${g.name}: address must look like 10.251.0.1/24, got ${g.address}`);
    if (g.region !== undefined && options.regions?.[g.region] === undefined) throw new RangeError(`guest ${g.name}: no region named ${g.region}`);
  }
  sweepStaleLabs();
  cleanUpOnExit(cleanupAllSync);

  const id = `${ID_PREFIX}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const workDir = path.join(tmpdir(), id);
  const share = path.join(workDir, 'share');
  const keep = [...(options.keep ?? [])];
  for (const p of [share, ...keep]) if (!SAFE_PATH.test(p)) throw new Error(`${p}: the guests need paths of letters, digits and _.+-/ only (they go on the kernel command line)`);
  const state: LiveLab = { id, workDir, regionFiles: [], qemus: new Set() };
  live.set(id, state);
  const started = new Map<string, number>();
  const children = new Map<string, ChildProcess>();
  const exits = new Map<string, Promise<GuestOutcome>>();
  const bootMs = new Map<string, number>();
  const regions = new Map<string, string>();
  let destroyed = false;

  try {
    mkdirSync(workDir, { mode: 0o700 });
    mkdirSync(share, { mode: 0o700 });
    for (const [name, bytes] of Object.entries(options.regions ?? {})) {
      if (!/^[a-z0-9]{1,16}$/.test(name)) throw new RangeError(`region names must be 1–16 lowercase letters or digits: ${JSON.stringify(name)}`);
      const file = path.join(REGION_DIRECTORY, `${id}-${name}`);
      state.regionFiles.push(file);
      const made = await vmcomm(['ivshmem', 'create', '--size', String(bytes), file]);
      if (made.code !== 0) throw new Error(`vmcomm ivshmem create --size ${bytes} ${file} failed (exit ${made.code}): ${made.stderr.trim()}`);
      regions.set(name, file);
    }
    const linked = options.guests.some((g) => g.address !== undefined);
    const built = buildInitramfs({
      kernel,
      busybox: BUSYBOX,
      init: readFileSync(INIT_SCRIPT, 'utf8'),
      modules: [...BASE_MODULES, ...(linked ? NET_MODULES : [])],
      output: path.join(workDir, 'initramfs.cpio'),
    });
    const initramfs = { path: path.join(workDir, 'initramfs.cpio'), bytes: built.bytes, modules: built.modules };
    const unpacked = uncompressedKernel(kernel.image, path.join(workDir, 'vmlinux'));
    const boot = 'path' in unpacked ? { image: unpacked.path } : { image: kernel.image, note: `booting the bzImage, slower: ${unpacked.reason}` };
    // One multicast group per lab: only this lab's QEMUs join it, on the loopback (localaddr), TTL 1 (the default).
    const group = `239.255.${randomIn(0, 256)}.${randomIn(1, 255)}`;
    const port = randomIn(20_000, 60_000);
    const macPrefix = `52:54:00:${randomBytes(2).toString('hex').replace(/(..)(..)/, '$1:$2')}`;
    const pdeathsig = hasPdeathsig();
    const memoryMiB = options.memoryMiB ?? 512;

    const consoleOf = (name: string): string => path.join(workDir, `console-${name}.log`);
    const readText = (file: string): string => {
      try {
        return readFileSync(file, 'utf8');
      } catch {
        return '';
      }
    };
    const statusOf = (name: string): number | undefined => {
      const text = readText(path.join(share, `guest-${name}.exit`)).trim();
      return /^\d+$/.test(text) ? Number(text) : undefined;
    };

    const qemuArgs = (g: GuestSpec, index: number): string[] => {
      // mitigations=off: these guests run only the test's own code, and an emulated CPU pays dearly
      // for the speculation barriers on every system call (a third of the time of a stat() here).
      const append = ['console=ttyS0', 'quiet', 'mitigations=off', 'panic=-1', 'rdinit=/init', `vmcomm.name=${g.name}`, `vmcomm.share=${share}`];
      if (keep.length > 0) append.push(`vmcomm.keep=${keep.join(',')}`);
      if (g.address !== undefined) append.push(`vmcomm.addr=${g.address}`);
      const args = [
        ...['-name', `${id}-${g.name}`],
        ...['-machine', 'q35,accel=tcg', '-cpu', 'max', '-smp', '1', '-m', `${memoryMiB}M`],
        ...['-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot'],
        ...['-kernel', boot.image, '-initrd', initramfs.path, '-append', append.join(' ')],
        ...['-serial', `file:${consoleOf(g.name)}`],
        ...['-fsdev', 'local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap', '-device', 'virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot'],
        ...['-fsdev', `local,id=share,path=${share},security_model=none`, '-device', 'virtio-9p-pci,fsdev=share,mount_tag=share'],
      ];
      if (g.address !== undefined) {
        const mac = `${macPrefix}:${(index + 1).toString(16).padStart(2, '0')}`;
        args.push('-netdev', `socket,id=link,mcast=${group}:${port},localaddr=127.0.0.1`, '-device', `virtio-net-pci,netdev=link,mac=${mac}`);
      } else {
        args.push('-nic', 'none');
      }
      if (g.region !== undefined) {
        const file = regions.get(g.region)!;
        args.push('-object', `memory-backend-file,id=${g.region},share=on,mem-path=${file},size=${options.regions![g.region]}`, '-device', `ivshmem-plain,memdev=${g.region}`);
      }
      return args;
    };

    const startGuest = (g: GuestSpec, index: number): void => {
      const argv = pdeathsig ? ['setpriv', '--pdeathsig', 'SIGKILL', '--', QEMU, ...qemuArgs(g, index)] : [QEMU, ...qemuArgs(g, index)];
      const t0 = performance.now();
      started.set(g.name, t0);
      // setpriv execs QEMU: the child's pid is QEMU's.
      const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
      state.qemus.add(child);
      children.set(g.name, child);
      let stderr = '';
      child.stdout!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
      exits.set(
        g.name,
        new Promise<GuestOutcome>((resolve) => {
          const done = (code: number | null, signal: NodeJS.Signals | null): void => {
            noteBoot(g.name);
            resolve({ name: g.name, status: statusOf(g.name), qemu: { code, signal, stderr: stderr.trim() }, bootMs: bootMs.get(g.name), ms: performance.now() - t0 });
          };
          child.once('error', (error) => {
            stderr += `\n${error.message}`;
            done(null, null);
          });
          child.once('close', done);
        }),
      );
    };

    /** Records when the guest's console first says it runs its script. */
    const noteBoot = (name: string): void => {
      if (bootMs.has(name)) return;
      if (RUNNING.test(readText(consoleOf(name)))) bootMs.set(name, performance.now() - started.get(name)!);
    };

    const report = (tailChars = 3000): string =>
      options.guests
        .map((g) => {
          const child = children.get(g.name);
          const how = child === undefined ? 'not started' : child.exitCode !== null || child.signalCode !== null ? `QEMU exited (${child.exitCode ?? child.signalCode})` : 'QEMU still running';
          const tail = (text: string): string => (text.length > tailChars ? `…${text.slice(-tailChars)}` : text).trimEnd() || '(empty)';
          return [
            `=== guest ${g.name}: ${how}, script status ${statusOf(g.name) ?? 'none'}`,
            `--- console (${consoleOf(g.name)}):`,
            tail(readText(consoleOf(g.name))),
            `--- script output (guest-${g.name}.log):`,
            tail(readText(path.join(share, `guest-${g.name}.log`))),
          ].join('\n');
        })
        .join('\n');

    /** SIGKILLs every QEMU and waits for them, at most {@link KILL_WAIT_MS} (one stuck in the kernel is left to the exit hook). */
    const killAll = async (): Promise<void> => {
      for (const child of children.values()) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await Promise.race([Promise.all([...exits.values()]), new Promise((resolve) => setTimeout(resolve, KILL_WAIT_MS).unref())]);
    };

    const lab: VmLab = {
      id,
      workDir,
      share,
      regions,
      kernel,
      initramfs,
      boot,
      writeScript(name, text) {
        if (!names.has(name)) throw new RangeError(`no guest named ${name}`);
        writeFileSync(path.join(share, `guest-${name}.sh`), text, { mode: 0o644 });
      },
      start() {
        if (destroyed) throw new Error('the lab was destroyed');
        if (children.size > 0) throw new Error('the guests were started already');
        options.guests.forEach((g, i) => startGuest(g, i));
      },
      async wait(timeoutMs) {
        if (children.size === 0) throw new Error('start() the guests first');
        const deadline = performance.now() + timeoutMs;
        const pending = new Map(exits);
        const outcomes: GuestOutcome[] = [];
        const poll = setInterval(() => {
          for (const name of names) noteBoot(name);
        }, 200);
        try {
          while (pending.size > 0) {
            const left = deadline - performance.now();
            const next = await Promise.race([
              ...[...pending.values()],
              new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), Math.max(0, left)).unref()),
            ]);
            if (next === undefined) {
              const waiting = [...pending.keys()];
              await killAll();
              throw new Error(`guests ${waiting.join(', ')} did not finish within ${Math.round(timeoutMs / 1000)} s (stopped)\n${report()}`);
            }
            pending.delete(next.name);
            outcomes.push(next);
            if (next.status !== 0) {
              // Give the others a moment to write what they saw (a lost peer, say), then stop them.
              await Promise.race([Promise.all([...pending.values()]), new Promise((resolve) => setTimeout(resolve, FAILURE_GRACE_MS).unref())]);
              await killAll();
              const why =
                next.status === undefined
                  ? `ended before its script finished (QEMU ${next.qemu.code ?? next.qemu.signal}${next.qemu.stderr ? `: ${next.qemu.stderr.slice(-500)}` : ''})`
                  : `ran its script with exit status ${next.status}`;
              throw new Error(`guest ${next.name} ${why}\n${report()}`);
            }
          }
        } finally {
          clearInterval(poll);
        }
        return options.guests.map((g) => outcomes.find((o) => o.name === g.name)!);
      },
      report,
      async destroy() {
        if (destroyed) return;
        destroyed = true;
        await killAll();
        removeFiles(state);
        live.delete(id);
      },
    };
    return lab;
  } catch (error) {
    for (const child of children.values()) child.kill('SIGKILL');
    removeFiles(state);
    live.delete(id);
    throw error;
  }
}
