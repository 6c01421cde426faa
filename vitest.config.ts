import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts', 'backends/**/*.test.ts', 'lib/**/*.test.ts', 'adapters/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Multi-process tests start many Node processes; on a 2-core machine run files one after another.
    fileParallelism: false,
    reporters: ['default'],
  },
});
