import { defineConfig } from 'vitest/config';

/** Pass-through tests that run a second time through the shipped HTTP/2 front (deploy/front/haproxy.cfg). */
const VIA_FRONT = [
  'test/integration/passthrough/methods-unchanged.test.ts',
  'test/integration/passthrough/deadlines-and-cancellation.test.ts',
  'test/integration/passthrough/large-transfers.test.ts',
];

export default defineConfig({
  test: {
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // Integration and e2e files start servers and Nix processes; two workers fit the 2-core machines.
    maxWorkers: 2,
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'proxy', include: ['test/**/*.test.ts'] } },
      { extends: true, test: { name: 'front+proxy', include: VIA_FRONT, env: { NRP_FRONT: 'haproxy' } } },
    ],
  },
});
