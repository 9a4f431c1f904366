// With two test files at a time (WEIR_TEST_FILES=2), a file that called runsAlone() runs with
// no other file beside it; see test/support/file-lock.ts. Its top level has run by the time
// this root hook does, so its mark is set.
import { afterAll, beforeAll, inject } from 'vitest'
import { acquireFileLock, wantsToRunAlone, type FileLock } from './support/file-lock.ts'

const dir = inject('weirFileLockDir')
let lock: FileLock | undefined
if (dir !== undefined) {
  // Waiting for the lock can take as long as the longest other file.
  beforeAll(async () => {
    lock = await acquireFileLock(dir, wantsToRunAlone() ? 'exclusive' : 'shared')
  }, 30 * 60_000)
  afterAll(() => lock?.release())
}
