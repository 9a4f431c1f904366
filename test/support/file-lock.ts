/**
 * When vitest runs two test files at a time (WEIR_TEST_FILES=2), a file that bounds real
 * processes' timing (a move within seconds, a 503 before a timeout, a worker ready in time)
 * runs alone: it calls `runsAlone()` at its top level, and the setup file
 * (test/setup-file-lock.ts) takes an exclusive lock for it and a shared one for every other
 * file. The lock is a directory of entries named after the holding process, shared by the
 * run's forks; a waiting exclusive file keeps new shared files from starting, so it is not
 * starved. Entries of processes that died (a fork killed on a timeout) are ignored.
 *
 * @example
 * // at the top of a test file whose assertions bound timing
 * runsAlone()
 */
import { mkdirSync, readdirSync, rmSync, rmdirSync } from 'node:fs'
import { join } from 'node:path'
import { isAlive } from '../../testing/process-alive.ts'

const ALONE = Symbol.for('weir.test.runsAlone')
const POLL_MS = 200

/** Marks the calling test file to run with no other test file beside it. */
export function runsAlone(): void {
  ;(globalThis as Record<symbol, unknown>)[ALONE] = true
}

/** True when the file being run called runsAlone(). */
export function wantsToRunAlone(): boolean {
  return (globalThis as Record<symbol, unknown>)[ALONE] === true
}

/** Entries starting with `prefix` whose process still runs, other than this process's. */
function others(dir: string, prefix: string): string[] {
  return readdirSync(dir).filter((name) => {
    if (!name.startsWith(prefix)) return false
    const pid = Number(name.slice(prefix.length))
    return pid !== process.pid && isAlive(pid)
  })
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export interface FileLock {
  release(): void
}

/**
 * Takes the lock in `dir`: `exclusive` waits until no other file runs, `shared` until no
 * exclusive file runs or waits. Entries: `shared-<pid>`, `wants-<pid>` (an exclusive waiter
 * or holder) and `held-<pid>` (the one exclusive holder, created with mkdir, which is atomic).
 */
export async function acquireFileLock(dir: string, mode: 'exclusive' | 'shared'): Promise<FileLock> {
  const entry = (prefix: string): string => join(dir, `${prefix}${process.pid}`)
  if (mode === 'shared') {
    for (;;) {
      // Announce first, then look: an exclusive file that announced before this look is
      // seen here; one that announces after it sees this entry and waits for it.
      mkdirSync(entry('shared-'), { recursive: true })
      if (others(dir, 'wants-').length === 0) break
      rmdirSync(entry('shared-'))
      await sleep(POLL_MS)
    }
    return { release: () => rmSync(entry('shared-'), { recursive: true, force: true }) }
  }
  mkdirSync(entry('wants-'), { recursive: true })
  for (;;) {
    if (others(dir, 'shared-').length === 0 && others(dir, 'held-').length === 0) {
      mkdirSync(entry('held-'), { recursive: true })
      // Two exclusive files may pass the look at once; each then sees the other's entry and
      // backs off for a random while (both cannot miss each other: each looks after it wrote).
      if (others(dir, 'held-').length === 0) break
      rmdirSync(entry('held-'))
    }
    await sleep(POLL_MS + Math.floor(Math.random() * POLL_MS))
  }
  return {
    release: () => {
      rmSync(entry('held-'), { recursive: true, force: true })
      rmSync(entry('wants-'), { recursive: true, force: true })
    },
  }
}

// Types only: what test/support/file-lock-setup.ts provides to the test files.
declare module 'vitest' {
  export interface ProvidedContext {
    weirFileLockDir: string | undefined
  }
}
