/**
 * The guests' initramfs, built from what the host has installed: Debian's `linux-image-amd64` (the
 * kernel and its modules) and `busybox-static`. Nothing is downloaded and nothing is written outside
 * the output file.
 *
 * The archive holds a static busybox, the guest init script (`guest-init.sh`), the kernel modules a
 * guest needs to mount the host's root over virtio-9p and to bring up a virtio NIC — each module
 * after the modules it depends on, the order `modprobe --show-depends` gives, read here from the
 * kernel's own `modules.dep` — and a `modules.order` file listing them for the init script. Every
 * other file the guest runs (node, the project, its `dist/`) comes from the host's root over 9p.
 *
 * The archive is an uncompressed cpio "newc" archive, which every Linux kernel unpacks; written by
 * {@link cpioNewc} rather than by the `cpio` tool, which a minimal host may lack.
 *
 * @module
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';

/** The modules every guest loads: virtio over PCI, then 9p over virtio. */
export const BASE_MODULES = ['virtio_pci', '9pnet_virtio', '9p'] as const;
/** What a guest with a network link adds. */
export const NET_MODULES = ['virtio_net'] as const;
/** Where the init script finds the modules inside the initramfs. */
const MODULE_DIRECTORY = 'lib/modules';

/** A guest kernel found on the host. */
export interface GuestKernel {
  /** `uname -r` of the guest, e.g. `6.1.0-56-amd64`. */
  readonly version: string;
  /** `/boot/vmlinuz-<version>`. */
  readonly image: string;
  /** `/lib/modules/<version>`. */
  readonly modules: string;
}

/** Compares kernel versions the way `sort -V` would, for the parts that matter (`6.1.0-56` < `6.1.0-101`). */
function compareVersions(a: string, b: string): number {
  const parts = (v: string): (number | string)[] => v.split(/[.-]/).map((p) => (/^\d+$/.test(p) ? Number(p) : p));
  const pa = parts(a);
  const pb = parts(b);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === y) continue;
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    return String(x) < String(y) ? -1 : 1;
  }
  return 0;
}

/**
 * The newest kernel under `/boot` whose modules are installed (`vmlinuz-<v>` readable and
 * `/lib/modules/<v>/modules.dep` present), or the reason there is none.
 */
export function findGuestKernel(boot = '/boot', moduleRoot = '/lib/modules'): GuestKernel | { reason: string } {
  let names: string[];
  try {
    names = readdirSync(boot);
  } catch (error) {
    return { reason: `cannot list ${boot}: ${(error as Error).message}` };
  }
  const versions = names
    .filter((n) => n.startsWith('vmlinuz-'))
    .map((n) => n.slice('vmlinuz-'.length))
    .filter((v) => existsSync(path.join(moduleRoot, v, 'modules.dep')))
    .sort(compareVersions);
  const version = versions.at(-1);
  if (version === undefined) return { reason: `no kernel in ${boot} with its modules in ${moduleRoot} (Debian's linux-image-amd64 provides one)` };
  const image = path.join(boot, `vmlinuz-${version}`);
  try {
    accessSync(image, constants.R_OK);
  } catch (error) {
    return { reason: `cannot read ${image}: ${(error as Error).message}` };
  }
  return { version, image, modules: path.join(moduleRoot, version) };
}

/**
 * Writes the kernel of `image` (a bzImage) uncompressed to `output`, for QEMU to boot directly
 * through the PVH entry point: an emulated CPU takes seconds to decompress a bzImage, so three
 * guests booting at once on two cores start about 5 s sooner this way. The payload is found from the
 * boot header (`setup_sects`, `payload_offset`, `payload_length`), decompressed with `xz`, `zstd` or
 * zlib, and must be an ELF with the PVH note (`XEN_ELFNOTE_PHYS32_ENTRY`: Debian's kernels have
 * `CONFIG_PVH=y`). Anything else: the reason, and the caller boots the bzImage.
 */
export function uncompressedKernel(image: string, output: string): { path: string } | { reason: string } {
  let bz: Buffer;
  try {
    bz = readFileSync(image);
  } catch (error) {
    return { reason: `cannot read ${image}: ${(error as Error).message}` };
  }
  // Linux boot protocol: "HdrS" at 0x202, version at 0x206 (payload fields since 2.08).
  if (bz.length < 0x250 || bz.toString('latin1', 0x202, 0x206) !== 'HdrS' || bz.readUInt16LE(0x206) < 0x208) return { reason: `${image} is not a bzImage of boot protocol 2.08 or later` };
  const setupSectors = bz[0x1f1] || 4;
  const start = (setupSectors + 1) * 512 + bz.readUInt32LE(0x248);
  const length = bz.readUInt32LE(0x24c);
  if (start + length > bz.length || length < 16) return { reason: `${image}: its payload lies outside the file` };
  // The build appends the uncompressed size (4 bytes) to every payload; no decompressor wants it.
  const payload = bz.subarray(start, start + length - 4);
  const tool = (name: string, args: string[]): Buffer | string => {
    const out = spawnSync(name, args, { input: payload, maxBuffer: 1024 * 1024 * 1024, timeout: 120_000 });
    return out.status === 0 ? out.stdout : `${name} ${args.join(' ')}: ${out.error?.message ?? out.stderr.toString().trim()}`;
  };
  let got: Buffer | string;
  if (payload.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) got = tool('xz', ['-dc', '--single-stream']);
  else if (payload.readUInt32LE(0) === 0xfd2fb528) got = tool('zstd', ['-dcq']);
  else if (payload[0] === 0x1f && payload[1] === 0x8b) got = gunzipSync(payload);
  else return { reason: `${image}: the payload is compressed in a way this test does not unpack (only xz, zstd, gzip)` };
  if (typeof got === 'string') return { reason: got };
  const elf = got;
  if (!hasPvhNote(elf)) return { reason: `${image}: the kernel has no PVH entry note (CONFIG_PVH), so QEMU cannot boot it uncompressed` };
  writeFileSync(output, elf, { mode: 0o600 });
  return { path: output };
}

/** Whether a 64-bit ELF has a `Xen` note of type 18 (`XEN_ELFNOTE_PHYS32_ENTRY`), which QEMU's PVH boot needs. */
function hasPvhNote(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const PT_NOTE = 4;
  for (let i = 0; i < elf.readUInt16LE(0x38); i++) {
    const ph = phoff + i * phentsize;
    if (ph + 56 > elf.length || elf.readUInt32LE(ph) !== PT_NOTE) continue;
    let at = Number(elf.readBigUInt64LE(ph + 8));
    const end = Math.min(elf.length, at + Number(elf.readBigUInt64LE(ph + 32)));
    while (at + 12 <= end) {
      const nameBytes = elf.readUInt32LE(at);
      const descBytes = elf.readUInt32LE(at + 4);
      const type = elf.readUInt32LE(at + 8);
      const name = elf.toString('latin1', at + 12, at + 12 + Math.max(0, nameBytes - 1));
      if (name === 'Xen' && type === 18) return true;
      at += 12 + ((nameBytes + 3) & ~3) + ((descBytes + 3) & ~3);
    }
  }
  return false;
}

/** `foo-bar.ko.xz` → `foo_bar`: the kernel's module name for a file. */
function moduleName(file: string): string {
  return path.basename(file).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');
}

/**
 * The module files to load, in load order, for `wanted` and everything they depend on (from
 * `modules.dep`: `kernel/fs/9p/9p.ko: kernel/fs/netfs/netfs.ko kernel/net/9p/9pnet.ko …`). A module
 * built into the kernel (`modules.builtin`) needs no file and is left out. Throws when one is neither.
 */
export function moduleLoadOrder(kernel: GuestKernel, wanted: readonly string[]): string[] {
  const deps = new Map<string, { file: string; deps: string[] }>();
  for (const line of readFileSync(path.join(kernel.modules, 'modules.dep'), 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const file = line.slice(0, colon).trim();
    deps.set(moduleName(file), { file, deps: line.slice(colon + 1).trim().split(/\s+/).filter(Boolean).map(moduleName) });
  }
  let builtin = new Set<string>();
  try {
    builtin = new Set(readFileSync(path.join(kernel.modules, 'modules.builtin'), 'utf8').split('\n').filter(Boolean).map(moduleName));
  } catch {
    // no list: every module must then be a file
  }
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (name: string, from: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    const entry = deps.get(name);
    if (entry === undefined) {
      if (builtin.has(name)) return;
      throw new Error(`kernel ${kernel.version} has no module ${name}${from ? ` (needed by ${from})` : ''} and does not build it in`);
    }
    // modules.dep lists every (transitive) dependency; visiting each first gives a valid load order.
    for (const dep of entry.deps) visit(dep, name);
    order.push(path.join(kernel.modules, entry.file));
  };
  for (const name of wanted) visit(name.replace(/-/g, '_'), '');
  return order;
}

/** A module file's bytes, decompressed (busybox's `insmod` may not read `.ko.xz` / `.ko.zst`). */
function moduleBytes(file: string): Buffer {
  if (file.endsWith('.ko')) return readFileSync(file);
  if (file.endsWith('.ko.gz')) return gunzipSync(readFileSync(file));
  const tool = file.endsWith('.ko.xz') ? 'xz' : file.endsWith('.ko.zst') ? 'zstd' : undefined;
  if (tool === undefined) throw new Error(`${file}: not a kernel module file`);
  const out = spawnSync(tool, ['-dc', file], { maxBuffer: 64 * 1024 * 1024, timeout: 60_000 });
  if (out.status !== 0) throw new Error(`${tool} -dc ${file} failed: ${out.error?.message ?? out.stderr.toString().trim()}`);
  return out.stdout;
}

/** One member of a cpio archive. */
export interface CpioEntry {
  /** Relative path, no leading `/` (`bin/busybox`). */
  readonly name: string;
  /** `'dir'`, `'file'` (with `data`), `'symlink'` (with `target`) or `'chardev'` (with `device`). */
  readonly kind: 'dir' | 'file' | 'symlink' | 'chardev';
  /** Permission bits (default 0o755 for dirs and files, 0o777 for links, 0o600 for devices). */
  readonly mode?: number;
  readonly data?: Uint8Array;
  readonly target?: string;
  /** A device's major and minor numbers. */
  readonly device?: readonly [major: number, minor: number];
}

/** An uncompressed cpio archive in the "newc" format the kernel unpacks as an initramfs. */
export function cpioNewc(entries: readonly CpioEntry[]): Buffer {
  const chunks: Buffer[] = [];
  let length = 0;
  const push = (b: Buffer): void => {
    chunks.push(b);
    length += b.length;
  };
  const pad = (): void => {
    if (length % 4 !== 0) push(Buffer.alloc(4 - (length % 4)));
  };
  const hex = (n: number): string => n.toString(16).padStart(8, '0');
  let inode = 1;
  const member = (name: string, mode: number, body: Buffer, rdev: readonly [number, number] = [0, 0]): void => {
    const nameBytes = Buffer.from(`${name}\0`, 'utf8');
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check
    const fields = [inode++, mode, 0, 0, 1, 0, body.length, 0, 0, rdev[0], rdev[1], nameBytes.length, 0];
    push(Buffer.from(`070701${fields.map(hex).join('')}`, 'ascii'));
    push(nameBytes);
    pad();
    push(body);
    pad();
  };
  for (const e of entries) {
    if (e.kind === 'dir') member(e.name, 0o040000 | (e.mode ?? 0o755), Buffer.alloc(0));
    else if (e.kind === 'chardev') member(e.name, 0o020000 | (e.mode ?? 0o600), Buffer.alloc(0), e.device ?? [0, 0]);
    else if (e.kind === 'symlink') member(e.name, 0o120000 | (e.mode ?? 0o777), Buffer.from(e.target ?? '', 'utf8'));
    else member(e.name, 0o100000 | (e.mode ?? 0o755), Buffer.from(e.data ?? new Uint8Array()));
  }
  member('TRAILER!!!', 0, Buffer.alloc(0));
  return Buffer.concat(chunks, length);
}

/** What {@link buildInitramfs} needs. */
export interface InitramfsOptions {
  readonly kernel: GuestKernel;
  /** A statically linked busybox (`/bin/busybox` from Debian's busybox-static). */
  readonly busybox: string;
  /** The init script's text (run as `/init` by busybox's `sh`). */
  readonly init: string;
  /** Module names to load (with their dependencies, in order). */
  readonly modules: readonly string[];
  /** Where to write the archive. */
  readonly output: string;
}

/** Writes the initramfs; returns the module files it holds, in load order. */
export function buildInitramfs(options: InitramfsOptions): { modules: string[]; bytes: number } {
  const modules = moduleLoadOrder(options.kernel, options.modules);
  const entries: CpioEntry[] = [];
  for (const dir of ['bin', 'dev', 'proc', 'sys', 'lib', MODULE_DIRECTORY, 'newroot', 'hosttmp', 'hostrun', 'share']) entries.push({ name: dir, kind: 'dir' });
  // The kernel opens /dev/console for init before anything is mounted.
  entries.push({ name: 'dev/console', kind: 'chardev', device: [5, 1] });
  entries.push({ name: 'bin/busybox', kind: 'file', data: readFileSync(options.busybox) });
  entries.push({ name: 'bin/sh', kind: 'symlink', target: 'busybox' });
  entries.push({ name: 'init', kind: 'file', data: Buffer.from(options.init, 'utf8') });
  const names: string[] = [];
  for (const file of modules) {
    const name = `${moduleName(file)}.ko`;
    names.push(name);
    entries.push({ name: `${MODULE_DIRECTORY}/${name}`, kind: 'file', mode: 0o644, data: moduleBytes(file) });
  }
  entries.push({ name: `${MODULE_DIRECTORY}/modules.order`, kind: 'file', mode: 0o644, data: Buffer.from(`${names.join('\n')}\n`, 'utf8') });
  const archive = cpioNewc(entries);
  writeFileSync(options.output, archive, { mode: 0o600 });
  return { modules, bytes: statSync(options.output).size };
}

/**
 * Whether `file` is a statically linked x86-64 ELF executable: no `PT_INTERP` program header (a
 * dynamically linked busybox would find no loader in the initramfs).
 */
export function isStaticElf(file: string): boolean {
  let elf: Buffer;
  try {
    elf = readFileSync(file);
  } catch {
    return false;
  }
  // ELF magic, 64-bit, little-endian.
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2 || elf[5] !== 1) return false;
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const phentsize = elf.readUInt16LE(0x36);
  const phnum = elf.readUInt16LE(0x38);
  const PT_INTERP = 3;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (at + 4 > elf.length) return false;
    if (elf.readUInt32LE(at) === PT_INTERP) return false;
  }
  return true;
}
