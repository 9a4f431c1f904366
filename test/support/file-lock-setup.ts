/**
 * vitest global setup: when the run takes more than one test file at a time (the forks
 * pool's maxForks, which vitest.config.ts sets from WEIR_TEST_FILES), creates the directory of the files' lock (test/support/file-lock.ts)
 * and provides it to them as `weirFileLockDir`; removes it after the run.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'

export default function setup(project: TestProject): () => void {
  if ((project.config.poolOptions?.forks?.maxForks ?? 1) <= 1) return () => {}
  const dir = mkdtempSync(join(tmpdir(), 'weir-test-files-'))
  project.provide('weirFileLockDir', dir)
  return () => rmSync(dir, { recursive: true, force: true })
}
