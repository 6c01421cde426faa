// Multi-process ivshmem tests run ranks from dist/ (`vmcomm rendezvous`, `node --import
// dist/lib/launch/ts-register.js`): build it first when a source it needs is newer.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Builds dist/ when a source of the ivshmem transport (or what it uses) is newer than its build. */
export function ensureIvshmemDist(): void {
  const sources = ['backends/ivshmem', 'backends/shm', 'backends/tcp', 'backends/threads', 'backends/self', 'backends/native/native.ts', 'lib', 'lib/launch', 'lib/ring', 'lib/collectives'];
  const newest = Math.max(
    ...sources.flatMap((s) => {
      const full = path.join(ROOT, s);
      if (!existsSync(full)) return [];
      if (statSync(full).isFile()) return [statSync(full).mtimeMs];
      return readdirSync(full)
        .filter((f) => f.endsWith('.ts'))
        .map((f) => statSync(path.join(full, f)).mtimeMs);
    }),
  );
  const built = path.join(ROOT, 'dist/backends/ivshmem/ivshmem-transport.js');
  if (!existsSync(built) || statSync(built).mtimeMs < newest) {
    spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  }
  expect(existsSync(built), 'dist/ must be built: run `npm run build`').toBe(true);
}
