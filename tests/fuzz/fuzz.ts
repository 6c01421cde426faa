/**
 * Shared machinery of the property-based fuzz suites (fast-check): a runner that bounds every property
 * in time and counts the cases it ran, a guard that fails a file when anything escapes as an uncaught
 * exception or unhandled rejection, and the error checks every suite makes.
 *
 * Reproducing a failure: the report names the property, its `seed` and `path` (fast-check's own
 * replay handles). `VMCOMM_FUZZ_SEED=<seed> npx vitest run tests/fuzz/<file>` re-runs every property
 * of a file with that seed; `VMCOMM_FUZZ_SCALE=10` runs ten times the cases (and allows ten times the
 * time), for a longer hunt than CI's. Without them each property uses a fixed seed derived from its
 * name, so CI is deterministic.
 *
 * Each file prints its properties' case counts when it ends ("fuzz <file>: N cases in T ms"). Measured
 * on the 2-core development machine (`npx vitest run tests/fuzz backends/ivshmem/test/fuzz.test.ts`,
 * 25–30 s in all; every property is also bounded by its own time limit, about 60 s in the worst case):
 *
 * | file | cases |
 * |---|---|
 * | tests/fuzz/tcp-frames.test.ts (frame reader, endpoint and core in process; handshake parsers) | 115,000 |
 * | tests/fuzz/codec.test.ts (value decoder and round trips) | 45,000 |
 * | tests/fuzz/ring-control.test.ts (SPSC ring, inbox and poller) | 40,000 |
 * | tests/fuzz/shm-headers.test.ts (shm file headers, probe and attach on real files) | 16,300 |
 * | backends/ivshmem/test/fuzz.test.ts (region life, header at open, attach of region files) | 12,000 |
 * | tests/fuzz/tcp-sockets.test.ts (real sockets: before and after the handshake, fake listeners) | 1,900 |
 * | total | about 230,000 |
 */

import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { isVmcommError, type VmcommErrorCode } from '../../lib/errors.js';

/** Multiplies every property's runs and time limit. */
const SCALE = Number(process.env.VMCOMM_FUZZ_SCALE ?? '1') > 0 ? Number(process.env.VMCOMM_FUZZ_SCALE ?? '1') : 1;
const SEED = process.env.VMCOMM_FUZZ_SEED === undefined ? undefined : Number(process.env.VMCOMM_FUZZ_SEED);

/** How one property ran. */
export interface FuzzResult {
  readonly name: string;
  /** Cases run (fewer than asked when the time limit interrupted it). */
  readonly runs: number;
  readonly asked: number;
  readonly interrupted: boolean;
  readonly ms: number;
  readonly seed: number;
}

/** Every property run in this file, for {@link reportTally}. */
const tally: FuzzResult[] = [];

/** A fixed 32-bit seed per property name (FNV-1a), so CI runs the same cases every time. */
function seedOf(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h | 0;
}

/** Options of {@link runFuzz}. */
export interface FuzzOptions {
  /** Cases to run (times `VMCOMM_FUZZ_SCALE`). */
  readonly numRuns: number;
  /** Stop generating new cases after this long (ms; times `VMCOMM_FUZZ_SCALE`): CI stays bounded on a slow machine. */
  readonly timeLimitMs: number;
}

/**
 * Runs `property` (sync or async) with fast-check; throws fast-check's full report (counterexample,
 * seed, path, the error) when it fails. Returns how many cases ran; a run cut short by the time limit
 * still passes, with the count it reached (the tally shows it).
 */
export async function runFuzz<Ts>(name: string, property: fc.IRawProperty<Ts>, o: FuzzOptions): Promise<FuzzResult> {
  const asked = Math.max(1, Math.round(o.numRuns * SCALE));
  const seed = SEED ?? seedOf(name);
  const started = performance.now();
  const details = await fc.check(property, {
    numRuns: asked,
    seed,
    plugins: [fc.interruptAfterTimeLimit(o.timeLimitMs * SCALE)],
  });
  const result: FuzzResult = {
    name,
    runs: details.numRuns,
    asked,
    interrupted: details.interrupted,
    ms: Math.round(performance.now() - started),
    seed,
  };
  tally.push(result);
  if (details.failed) {
    throw new Error(`fuzz property "${name}" failed (replay: VMCOMM_FUZZ_SEED=${seed}, path ${details.counterexamplePath})\n${fc.defaultReportMessage(details)}`, {
      cause: details.errorInstance ?? undefined,
    });
  }
  // A property that ran no case at all tests nothing: a setup that is far too slow is a failure.
  expect(details.numRuns, `${name}: no case ran within ${o.timeLimitMs * SCALE} ms`).toBeGreaterThan(0);
  return result;
}

/** Prints this file's properties with their case counts and times (call from `afterAll`). */
export function reportTally(file: string): void {
  const total = tally.reduce((n, r) => n + r.runs, 0);
  const ms = tally.reduce((n, r) => n + r.ms, 0);
  const lines = tally.map((r) => `  ${r.name}: ${r.runs}${r.interrupted ? ` of ${r.asked} (time limit)` : ''} cases, ${r.ms} ms, seed ${r.seed}`);
  console.log(`fuzz ${file}: ${total} cases in ${ms} ms\n${lines.join('\n')}`);
}

/**
 * Fails the file when an uncaught exception or an unhandled rejection happens while its tests run:
 * a malformed input must end as a typed error on its channel, never as a crash of the process.
 */
export function guardProcess(file: string): void {
  const escaped: unknown[] = [];
  const onError = (error: unknown): void => {
    escaped.push(error);
  };
  beforeAll(() => {
    process.on('uncaughtException', onError);
    process.on('unhandledRejection', onError);
  });
  afterEach(() => {
    const seen = escaped.splice(0);
    expect(seen.map(String), 'nothing may escape as an uncaught exception or unhandled rejection').toEqual([]);
  });
  afterAll(() => {
    process.off('uncaughtException', onError);
    process.off('unhandledRejection', onError);
    reportTally(file);
  });
}

/** True when `e` is a VmcommError whose code is one of `codes`. */
export function isCode(e: unknown, ...codes: VmcommErrorCode[]): boolean {
  return codes.some((c) => isVmcommError(e, c));
}

/** Throws a descriptive error unless `e` is a VmcommError with one of `codes` (for use inside properties). */
export function expectCode(e: unknown, where: string, ...codes: VmcommErrorCode[]): void {
  if (isCode(e, ...codes)) return;
  const what = e instanceof Error ? `${e.name}${'code' in e ? ` ${String((e as { code: unknown }).code)}` : ''}: ${e.message}` : String(e);
  throw new Error(`${where}: expected VmcommError ${codes.join('/')}, got ${what}`, { cause: e });
}
