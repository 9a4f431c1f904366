import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    setupFiles: ['test/setup-kafkajs.ts'],
    reporters: ['default'],
    // Tests assert on behaviour; set WEIR_LOG_LEVEL=debug to see the runtime's logs.
    env: { WEIR_LOG_LEVEL: process.env.WEIR_LOG_LEVEL ?? 'silent' },
  },
})
