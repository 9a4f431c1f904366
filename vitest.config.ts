import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two test files at a time. Most files wait more than they compute (Kafka group joins and
    // transactions, child processes starting, timeouts they test), so on CI's 2 cores one
    // file at a time left a third of the CPU idle. WEIR_TEST_FILES=1 runs them one at a time.
    poolOptions: { forks: { maxForks: Number(process.env.WEIR_TEST_FILES ?? 2), minForks: 1 } },
    // Starts the services the run's test files ask for (scripts/services.sh up) and ends the
    // run with a line naming any that were missing; WEIR_SERVICES=off starts nothing.
    globalSetup: ['test/support/services-setup.ts'],
    setupFiles: ['test/setup-kafkajs.ts'],
    reporters: ['default'],
    // Tests assert on behaviour; set WEIR_LOG_LEVEL=debug to see the runtime's logs.
    env: { WEIR_LOG_LEVEL: process.env.WEIR_LOG_LEVEL ?? 'silent' },
  },
})
