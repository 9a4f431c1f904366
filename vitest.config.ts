import { defineConfig } from 'vitest/config'
import { AloneFirstSequencer } from './test/support/alone-first-sequencer.ts'

const testFiles = Number(process.env.WEIR_TEST_FILES ?? 2)

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two test files at a time (WEIR_TEST_FILES, default 2): one file keeps about 0.65 of the
    // 2 CPUs busy, much of it waiting on real processes and services. A file whose assertions
    // bound real processes' timing (a move within seconds, a 503 before a timeout) calls
    // runsAlone() and then runs with no other file beside it (test/support/file-lock.ts).
    poolOptions: { forks: { maxForks: testFiles, minForks: 1 } },
    // Those files start first, one after the other, so none waits for shared files to drain.
    sequence: { sequencer: AloneFirstSequencer },
    // Starts the services the run's test files ask for (scripts/services.sh up) and ends the
    // run with a line naming any that were missing; WEIR_SERVICES=off starts nothing.
    globalSetup: ['test/support/services-setup.ts', 'test/support/file-lock-setup.ts'],
    setupFiles: ['test/setup-kafkajs.ts', 'test/setup-file-lock.ts'],
    reporters: ['default'],
    // Tests assert on behaviour; set WEIR_LOG_LEVEL=debug to see the runtime's logs.
    env: { WEIR_LOG_LEVEL: process.env.WEIR_LOG_LEVEL ?? 'silent' },
  },
})
