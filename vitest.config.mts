import { defineConfig } from 'vitest/config';

export default defineConfig({
  // Keep caches out of node_modules: a change there makes the next `npx corral` re-run
  // npm's install (and so the whole native build) because its lockfile looks stale.
  cacheDir: '.vitest-cache',
  test: {
    include: ['__test__/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Each test file gets its own process (and so its own corral helper).
    pool: 'forks',
  },
});
