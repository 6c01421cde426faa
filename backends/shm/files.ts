/**
 * The shm transport's files: created 0600 and `O_EXCL` under unguessable names, held with an
 * exclusive `flock` while in use, removed when done. Names, and the stale-file sweep that `vmcomm
 * clean` and the launcher run, live in `lib/launch/shm-files.ts` (the launcher may not import a
 * backend); this file adds what only a rank does: create, lock, map, release.
 *
 * @module
 */

import { fstatSync, rmSync, statSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { VmcommError } from '../../lib/errors.js';
import type { NativeAddon } from '../native/native.js';

/** How often a creation is retried when a sweep removed the new file before it was locked. */
const CREATE_ATTEMPTS = 3;

/** A file this rank created and holds. */
export class OwnedFile {
  private fd: number;
  private removed = false;

  constructor(
    private readonly addon: NativeAddon,
    /** Absolute path. */
    readonly path: string,
    /** The mapping (kept valid by the addon until it is garbage-collected, also after removal). */
    readonly sab: SharedArrayBuffer,
    fd: number,
  ) {
    this.fd = fd;
  }

  /** The file name (no directory). */
  get name(): string {
    return path.basename(this.path);
  }

  /** Whether the lock is still held. */
  get held(): boolean {
    return this.fd >= 0;
  }

  /** Unlinks the file (idempotent; a missing file is fine). The lock stays until {@link release}. */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    try {
      unlinkSync(this.path);
    } catch {
      // Gone already (the peer removed it, or a sweep after a crash): nothing to do.
    }
  }

  /** Lets go of the lock. Idempotent. The mapping stays valid. */
  release(): void {
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    try {
      this.addon.unlockFile(fd);
    } catch {
      // Already closed: the process is ending.
    }
  }
}

/**
 * Creates `directory/name` (0600, `O_EXCL`, all of its `bytes` allocated), maps it and takes an
 * exclusive lock on it. Between the creation and the lock a sweep could take the file for stale and
 * remove it; so once locked, the name must still lead to the locked file, or the file is created
 * again.
 *
 * @throws `VmcommError('UNSUPPORTED')` with the system error as `cause` (`EEXIST`, `ENOSPC`, `EACCES`…).
 */
export function createOwnedFile(addon: NativeAddon, directory: string, name: string, bytes: number): OwnedFile {
  const file = path.join(directory, name);
  let lastError: unknown;
  for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
    let sab: SharedArrayBuffer;
    try {
      sab = addon.createSharedFile(file, bytes);
    } catch (error) {
      throw new VmcommError('UNSUPPORTED', `cannot create the shared-memory file ${file} (${bytes} bytes): ${(error as Error).message}`, { cause: error });
    }
    let fd = -1;
    try {
      // Blocking is fine: only a sweep can hold it, and only for an unlink.
      fd = addon.lockFile(file, { exclusive: true, wait: true, create: false });
      if (fstatSync(fd).ino === statSync(file).ino) return new OwnedFile(addon, file, sab, fd);
    } catch (error) {
      lastError = error;
      if ((error as { code?: string }).code !== 'ENOENT') {
        // Not a sweep (EMFILE, ENOMEM…): trying again would only meet our own file (EEXIST). Nobody
        // else makes this name (its part per job is unguessable), so what is there is ours: removed.
        if (fd >= 0) addon.unlockFile(fd);
        rmSync(file, { force: true });
        throw new VmcommError('UNSUPPORTED', `cannot lock the shared-memory file ${file}: ${(error as Error).message}`, { cause: error });
      }
    }
    if (fd >= 0) addon.unlockFile(fd);
  }
  throw new VmcommError('UNSUPPORTED', `the shared-memory file ${file} kept disappearing right after it was created (is a cleaner running?)`, { cause: lastError });
}

/**
 * Maps a peer's file, `bytes` long. Returns `undefined` when there is no such file here (a peer on
 * another OS, or one that already left); throws for anything else (`EACCES`: another user's file).
 */
export function openPeerFile(addon: NativeAddon, directory: string, name: string, bytes: number): SharedArrayBuffer | undefined {
  try {
    return addon.openSharedFile(path.join(directory, name), bytes);
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Whether the rank that holds `file` is alive: true while its lock is held (or the file cannot be
 * checked), false when the lock can be taken — the holder ended without removing it — or the file is
 * gone. Costs an open, a `flock` and a close: call it rarely.
 */
export function holderAlive(addon: NativeAddon, file: string): boolean {
  let fd: number;
  try {
    fd = addon.lockFile(file, { exclusive: true, wait: false, create: false });
  } catch (error) {
    return (error as { code?: string }).code !== 'ENOENT';
  }
  if (fd < 0) return true;
  addon.unlockFile(fd);
  return false;
}
