/**
 * bin/weir.js: a command that holds keyed state (here `weir run`) runs with two glibc malloc
 * arenas (it replaces itself once, in place, with MALLOC_ARENA_MAX set), and a value the user
 * set is kept.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { startWeir, tempDirs, until } from '../support/weir-cli.ts'

const tempDir = tempDirs('weir-bin-')

/** MALLOC_ARENA_MAX in the environment the process `pid` runs with now (after any execve). */
function arenaSetting(pid: number): string | undefined {
  const vars = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\u0000')
  return vars.find((v) => v.startsWith('MALLOC_ARENA_MAX='))?.slice('MALLOC_ARENA_MAX='.length)
}

describe.skipIf(process.platform !== 'linux')('the weir command', () => {
  it.each([
    { given: undefined, expected: '2' },
    { given: '8', expected: '8' },
  ])('runs with MALLOC_ARENA_MAX $expected when the environment has $given, in the process it was started as', async ({ given, expected }) => {
    const env: Record<string, string> = given === undefined ? {} : { MALLOC_ARENA_MAX: given }
    const saved = process.env.MALLOC_ARENA_MAX
    // startWeir passes this test's environment on: the case without one must not inherit ours.
    delete process.env.MALLOC_ARENA_MAX
    onTestFinished(() => {
      if (saved !== undefined) process.env.MALLOC_ARENA_MAX = saved
    })
    const dir = tempDir()
    const run = startWeir(['run', 'examples/wordcount.ts', '--data-dir', join(dir, 'data'), '--param', 'lines=100000', '--param', 'rate=20', '--param', `out=${join(dir, 'out')}/c-{partition}.jsonl`], { env })
    onTestFinished(() => void run.child.kill('SIGKILL'))
    const pid = run.child.pid!
    // The data dir exists once the CLI has loaded and opened the run: past any replacing.
    await until(() => existsSync(join(dir, 'data')), 30_000, 'weir run opened its data dir')
    expect(arenaSetting(pid), `MALLOC_ARENA_MAX in /proc/${pid}/environ`).toBe(expected)
  }, 60_000)
})
