// Running `vmcomm` commands as a user does: real processes against the built dist/. Timeouts here are
// only "must finish" safety nets, never speed assertions.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { pidAlive } from './pids.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const VMCOMM = path.join(ROOT, 'bin', 'vmcomm.js');
/** Safety net only: a run that takes this long is a hang. */
export const MUST_FINISH_MS = 45_000;

export interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts `vmcomm …args` with piped output. */
export function start(args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  return spawn(process.execPath, [VMCOMM, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Collects a child's output until it closes; rejects (after killing it) past `mustFinishMs`. */
export function finish(child: ChildProcess, onStdout?: (text: string) => void, mustFinishMs = MUST_FINISH_MS): Promise<Outcome> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
    onStdout?.(stdout);
  });
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`did not finish within ${mustFinishMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, mustFinishMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs `vmcomm …args` to the end. */
export function vmcomm(args: string[], env?: NodeJS.ProcessEnv, mustFinishMs?: number): Promise<Outcome> {
  return finish(start(args, env), undefined, mustFinishMs);
}

/** Non-empty lines. */
export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

/** The pids printed as `pid N`. */
export function pidsOf(stdout: string): number[] {
  return [...stdout.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
}

/** Every pid is gone (no rank outlived the launcher). */
export function expectGone(pids: number[]): void {
  expect(pids.length).toBeGreaterThan(0);
  for (const pid of pids) expect(pidAlive(pid), `pid ${pid} is still running`).toBe(false);
}
