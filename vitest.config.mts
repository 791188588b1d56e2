import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Integration and e2e files start servers and Nix processes; two workers fit the 2-core machines.
    maxWorkers: 2,
    pool: 'forks',
  },
});
