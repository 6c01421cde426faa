// Fixtures for the addon's tests: unique /dev/shm paths that are removed afterwards, child processes
// and workers that load the addon through dist/backends/native/native.js (the only loader), and line
// protocols with them. Timeouts are "must finish" safety nets, never speed assertions.
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { tryLoadNative, type NativeAddon } from '../native.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');
/** Safety net only: a child that takes this long is hung. */
export const MUST_FINISH_MS = 30_000;

const loaded = tryLoadNative();
/** The addon, or undefined (then the suites skip, and load.test.ts says why — or fails under CI=true). */
export const addon: NativeAddon | undefined = loaded.addon;
/** Why the addon did not load. */
export const loadReason = loaded.reason;

/** The addon, for code inside a suite that only runs when it loaded. */
export function native(): NativeAddon {
  if (addon === undefined) throw new Error(loadReason);
  return addon;
}

const created = new Set<string>();

/** A fresh, unguessable path under /dev/shm; {@link removeCreated} deletes it after the test. */
export function shmPath(tag: string): string {
  const file = `/dev/shm/vmcomm-test-${tag}-${process.pid}-${randomBytes(8).toString('hex')}`;
  created.add(file);
  return file;
}

/** Removes every path handed out by {@link shmPath} (for afterEach). */
export function removeCreated(): void {
  for (const file of created) rmSync(file, { force: true });
  created.clear();
}

/**
 * Builds dist/ when native.ts (or the errors it imports) is newer than its compiled file, because
 * child processes and workers load the addon through dist/backends/native/native.js.
 */
export function ensureDist(): void {
  const pairs = [
    ['backends/native/native.ts', 'dist/backends/native/native.js'],
    ['lib/errors.ts', 'dist/lib/errors.js'],
  ];
  const stale = pairs.some(([source, built]) => {
    const out = path.join(ROOT, built);
    return !existsSync(out) || statSync(out).mtimeMs < statSync(path.join(ROOT, source)).mtimeMs;
  });
  if (stale) {
    spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  }
  expect(existsSync(path.join(ROOT, 'dist/backends/native/native.js')), 'dist/ must be built: run `npm run build`').toBe(true);
}

/** A running fixture with its stdout split into lines. */
export class Child {
  readonly process: ChildProcess;
  private readonly lines: string[] = [];
  private readonly waiting: { test: (line: string) => boolean; resolve: (line: string) => void }[] = [];
  private stdout = '';
  private stderr = '';
  private readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(command: string, args: string[], options: SpawnOptions = {}) {
    this.process = spawn(command, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'], ...options });
    let partial = '';
    this.process.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
      partial += chunk;
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const line of parts) this.push(line);
    });
    this.process.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    const timer = setTimeout(() => this.process.kill('SIGKILL'), MUST_FINISH_MS);
    this.exited = new Promise((resolve) =>
      this.process.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal });
      }),
    );
  }

  /** Starts `node fixtures/<name> …args`. */
  static fixture(name: string, args: string[] = [], options: SpawnOptions & { nodeArgs?: string[] } = {}): Child {
    return new Child(process.execPath, [...(options.nodeArgs ?? []), path.join(FIXTURES, name), ...args], options);
  }

  private push(line: string): void {
    const index = this.waiting.findIndex((w) => w.test(line));
    if (index >= 0) this.waiting.splice(index, 1)[0].resolve(line);
    else this.lines.push(line);
  }

  /** The next stdout line that starts with `prefix` (rejects if the child exits first). */
  line(prefix: string): Promise<string> {
    const test = (line: string) => line.startsWith(prefix);
    const index = this.lines.findIndex(test);
    if (index >= 0) return Promise.resolve(this.lines.splice(index, 1)[0]);
    return new Promise((resolve, reject) => {
      this.waiting.push({ test, resolve });
      void this.exited.then(({ code, signal }) =>
        reject(new Error(`fixture exited (${code ?? signal}) before printing "${prefix}…"\nstdout:\n${this.stdout}\nstderr:\n${this.stderr}`)),
      );
    });
  }

  /** Writes one line to the child's stdin. */
  send(line: string): void {
    this.process.stdin!.write(`${line}\n`);
  }

  /** Closes the child's stdin, waits for the exit, and returns the status and all output. */
  async finish(): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
    this.process.stdin!.end();
    const { code, signal } = await this.exited;
    return { code, signal, stdout: this.stdout, stderr: this.stderr };
  }
}

/** Runs a fixture to the end. */
export function runFixture(name: string, args: string[] = [], options: SpawnOptions & { nodeArgs?: string[] } = {}) {
  return Child.fixture(name, args, options).finish();
}

/** Whether uid `uid` can read the built dist/ and the addon (for setpriv tests). */
export function readableByOthers(): boolean {
  const files = [path.join(ROOT, 'dist/backends/native/native.js'), path.join(ROOT, 'build/Release/vmcomm_native.node')];
  return files.every((f) => existsSync(f) && (statSync(f).mode & 0o004) !== 0);
}
