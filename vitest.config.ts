import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // One test file at a time by default: with two at a time (WEIR_TEST_FILES=2) CI took 24
    // instead of about 40 minutes, but tests that bound real processes' timing (a worker's
    // start, a move within 30 s, a 503 before a timeout) failed when two such files met.
    poolOptions: { forks: { maxForks: Number(process.env.WEIR_TEST_FILES ?? 1), minForks: 1 } },
    // Starts the services the run's test files ask for (scripts/services.sh up) and ends the
    // run with a line naming any that were missing; WEIR_SERVICES=off starts nothing.
    globalSetup: ['test/support/services-setup.ts'],
    setupFiles: ['test/setup-kafkajs.ts'],
    reporters: ['default'],
    // Tests assert on behaviour; set WEIR_LOG_LEVEL=debug to see the runtime's logs.
    env: { WEIR_LOG_LEVEL: process.env.WEIR_LOG_LEVEL ?? 'silent' },
  },
})
