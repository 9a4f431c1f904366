/**
 * tempDataDir leaves nothing behind: a process that exits removes its directories, a
 * killed process's directories go with the next process that makes one (with the same
 * prefix), a live process's directories stay, and removeTempDirs removes this process's.
 */
import { spawn } from 'node:child_process'
import { existsSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { removeTempDirs, tempDataDir } from '../../testing/index.ts'

const FIXTURE = join(import.meta.dirname, 'fixtures', 'make-temp-dir.ts')
// A prefix of this file's own, so other tests' directories are never swept by these assertions.
const PREFIX = `weir-temp-dirs-test-${process.pid}-`

/** Runs the fixture; resolves with the directory it made once it printed it, and the child. */
function makeInChild(how: 'exit' | 'kill' | 'wait'): Promise<{ dir: string; ended: Promise<void>; kill(): void }> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, how, PREFIX], { stdio: ['ignore', 'pipe', 'inherit'] })
  const ended = new Promise<void>((resolve) => child.on('close', () => resolve()))
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('\n')) resolve({ dir: out.trim(), ended, kill: () => child.kill('SIGKILL') })
    })
    child.on('error', reject)
  })
}

describe('tempDataDir', () => {
  it('a process that exits normally removes its directories', async () => {
    const child = await makeInChild('exit')
    await child.ended
    expect(child.dir.startsWith(join(tmpdir(), PREFIX))).toBe(true)
    expect(existsSync(child.dir)).toBe(false)
  })

  it("a killed process's directory is removed by the next tempDataDir of that prefix; a live process's stays", async () => {
    const alive = await makeInChild('wait')
    const killed = await makeInChild('kill')
    await killed.ended
    try {
      expect(existsSync(killed.dir)).toBe(true)
      writeFileSync(join(killed.dir, 'left-over'), 'x')
      const mine = tempDataDir(PREFIX)
      expect(existsSync(killed.dir)).toBe(false)
      expect(existsSync(alive.dir)).toBe(true)
      expect(existsSync(mine)).toBe(true)
      removeTempDirs()
      expect(existsSync(mine)).toBe(false)
    } finally {
      alive.kill()
      await alive.ended
    }
    // The live one, now killed, goes with the next sweep (the next process to use the prefix).
    const next = await makeInChild('exit')
    await next.ended
    expect(existsSync(alive.dir)).toBe(false)
  })
})
