// What the PMI integration tests (hydra.test.ts, slurm.test.ts) share: finding or installing a
// Debian package that provides a launcher (a test-only dependency; the library never needs it),
// keeping dist/ built, running a launcher to the end, and reading the `ROW` lines of
// tests/fixtures/pmi/app.mjs.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseShmFileName, sweepStaleShmFiles } from '../../lib/launch/shm-files.js';
import { pidAlive } from './pids.js';
import { expectGone, finish, ROOT, type Outcome } from './processes.js';

export const PMI_FIXTURES = path.join(ROOT, 'tests', 'fixtures', 'pmi');
export const PMI_APP = path.join(PMI_FIXTURES, 'app.mjs');

/** True when `command` is on the PATH. */
export function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** Whether missing packages may be installed here: as root, with CI=true, where apt-get exists. */
export function mayInstallPackages(): boolean {
  return process.env.CI === 'true' && typeof process.getuid === 'function' && process.getuid() === 0 && hasCommand('apt-get');
}

/**
 * What a test file needs: `ready` (the commands exist), `install` (they can be installed in a hook:
 * root and CI=true), or `skip` with the reason, which it prints.
 */
export function launcherAvailability(commands: readonly string[], packages: readonly string[]): { kind: 'ready' } | { kind: 'install' } | { kind: 'skip'; reason: string } {
  const missing = commands.filter((c) => !hasCommand(c));
  if (missing.length === 0) return { kind: 'ready' };
  if (mayInstallPackages()) return { kind: 'install' };
  return {
    kind: 'skip',
    reason: `${missing.join(', ')} not found; install Debian's ${packages.join(' ')} (the test does that itself when run as root with CI=true)`,
  };
}

/** `apt-get update && apt-get install -y --no-install-recommends …packages`; throws with apt's output on failure. */
export async function installDebianPackages(packages: readonly string[]): Promise<void> {
  const script = `apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${packages.join(' ')}`;
  const child = spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const out = await finish(child, undefined, 600_000);
  if (out.code !== 0) throw new Error(`installing ${packages.join(' ')} failed (exit ${out.code}):\n${out.stdout.slice(-3000)}\n${out.stderr.slice(-3000)}`);
}

/** Builds dist/ when a source under lib/launch is newer than its compiled file (`npm test` builds first). */
export function ensureBuilt(): void {
  const stale = (dir: string): boolean =>
    readdirSync(path.join(ROOT, dir), { withFileTypes: true }).some((entry) => {
      if (entry.isDirectory()) return stale(path.join(dir, entry.name));
      if (!entry.name.endsWith('.ts')) return false;
      const compiled = path.join(ROOT, 'dist', dir, entry.name.replace(/\.ts$/, '.js'));
      return !existsSync(compiled) || statSync(compiled).mtimeMs < statSync(path.join(ROOT, dir, entry.name)).mtimeMs;
    });
  if (stale('lib')) spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  if (!existsSync(path.join(ROOT, 'dist', 'lib', 'launch', 'pmi', 'pmi-bootstrap.js'))) throw new Error('dist/ must be built: run `npm run build`');
}

/** Runs `argv` (from the repository root) to the end; the environment is this process's plus `env`. */
export function run(argv: readonly string[], env: NodeJS.ProcessEnv = {}, mustFinishMs = 60_000): Promise<Outcome & { ms: number }> {
  const started = Date.now();
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  return finish(child, undefined, mustFinishMs).then((out) => ({ ...out, ms: Date.now() - started }));
}

/**
 * Every pid is gone within 5 s. A launcher may exit a moment before the kernel has reaped the ranks
 * it SIGKILLed (they are its proxy's children, reparented when the proxy exits first).
 */
export async function expectGoneSoon(pids: readonly number[]): Promise<void> {
  for (let waited = 0; waited < 5_000 && pids.some(pidAlive); waited += 50) await sleep(50);
  expectGone([...pids]);
}

/** One `ROW` line of app.mjs. */
export interface Row {
  rank: number;
  size: number;
  host: string;
  pid: number;
  address: string;
  /** The rank's shm inbox file name, `null` without shm. */
  shm: string | null;
  row: string[];
}

/** The `ROW` lines, indexed by rank. */
export function rows(stdout: string): Row[] {
  const out: Row[] = [];
  for (const line of stdout.split('\n')) if (line.startsWith('ROW ')) {
    const row = JSON.parse(line.slice(4)) as Row;
    out[row.rank] = row;
  }
  return out;
}

/**
 * Removes the shm files the ranks of a killed job left behind (no vmcomm launcher sweeps after
 * mpiexec or srun) and returns the files still locked: none, once every rank is gone.
 */
export async function sweepJobFiles(got: readonly (Row | undefined)[]): Promise<string[]> {
  const jobs = new Set(got.flatMap((r) => (r?.shm ? [parseShmFileName(r.shm)?.job] : [])).filter((j): j is string => j !== undefined));
  const inUse: string[] = [];
  for (const job of jobs) inUse.push(...(await sweepStaleShmFiles({ prefix: `vmcomm-${job}-` })).inUse);
  return inUse;
}

/** The output of a run, for assertion messages. */
export function shown(out: Outcome): string {
  return `exit ${out.code} signal ${out.signal}\nstdout:\n${out.stdout.slice(-4000)}\nstderr:\n${out.stderr.slice(-4000)}`;
}
