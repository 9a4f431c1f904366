/**
 * bin/weir.js: a command that holds keyed state (here `weir run`) runs with the glibc malloc
 * arenas and V8's semi-space size runtime/heap.ts gives its pipe (it replaces itself once, in
 * place, with them set), and what the user set is kept.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { START_SETTINGS } from '../../runtime/heap.ts'
import { startWeir, tempDirs, until } from '../support/weir-cli.ts'

const tempDir = tempDirs('weir-bin-')

/** MALLOC_ARENA_MAX in the environment the process `pid` runs with now (after any execve). */
function arenaSetting(pid: number): string | undefined {
  const vars = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\u0000')
  return vars.find((v) => v.startsWith('MALLOC_ARENA_MAX='))?.slice('MALLOC_ARENA_MAX='.length)
}

/** The node flags on the command line of the process `pid` now (after any execve). */
function semiSpaceFlags(pid: number): string[] {
  return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\u0000').filter((a) => a.startsWith('--max-semi-space-size'))
}

/** startWeir passes this test's environment on: a case without MALLOC_ARENA_MAX must not inherit ours. */
function withoutArenaSetting(): void {
  const saved = process.env.MALLOC_ARENA_MAX
  delete process.env.MALLOC_ARENA_MAX
  onTestFinished(() => {
    if (saved !== undefined) process.env.MALLOC_ARENA_MAX = saved
  })
}

describe.skipIf(process.platform !== 'linux')('the weir command', () => {
  it.each([
    { given: undefined, expected: String(START_SETTINGS.embedded.mallocArenas) },
    { given: '8', expected: '8' },
  ])('runs with MALLOC_ARENA_MAX $expected when the environment has $given, in the process it was started as', async ({ given, expected }) => {
    const env: Record<string, string> = given === undefined ? {} : { MALLOC_ARENA_MAX: given }
    withoutArenaSetting()
    const dir = tempDir()
    const run = startWeir(['run', 'examples/wordcount.ts', '--data-dir', join(dir, 'data'), '--param', 'lines=100000', '--param', 'rate=20', '--param', `out=${join(dir, 'out')}/c-{partition}.jsonl`], { env })
    onTestFinished(() => void run.child.kill('SIGKILL'))
    const pid = run.child.pid!
    // The data dir exists once the CLI has loaded and opened the run: past any replacing.
    await until(() => existsSync(join(dir, 'data')), 30_000, 'weir run opened its data dir')
    expect(arenaSetting(pid), `MALLOC_ARENA_MAX in /proc/${pid}/environ`).toBe(expected)
  }, 60_000)

  it.each([
    { pipeArgs: [], nodeOptions: '', flags: [`--max-semi-space-size=${START_SETTINGS.embedded.semiSpaceMb}`], arenas: String(START_SETTINGS.embedded.mallocArenas) },
    { pipeArgs: ['--pipe', 'kafka://127.0.0.1:1'], nodeOptions: '', flags: [`--max-semi-space-size=${START_SETTINGS.kafka.semiSpaceMb}`], arenas: String(START_SETTINGS.kafka.mallocArenas) },
    { pipeArgs: [], nodeOptions: '--max-semi-space-size=8', flags: [], arenas: String(START_SETTINGS.embedded.mallocArenas) },
  ])('starts `weir run $pipeArgs` (NODE_OPTIONS $nodeOptions) with node flags $flags and MALLOC_ARENA_MAX $arenas', async ({ pipeArgs, nodeOptions, flags, arenas }) => {
    withoutArenaSetting()
    const dir = tempDir()
    // A kafka:// pipe nobody listens on keeps the run retrying its connection: long enough to look.
    const run = startWeir(['run', 'examples/wordcount.ts', ...pipeArgs, '--data-dir', join(dir, 'data'), '--param', 'lines=100000', '--param', 'rate=20', '--param', `out=${join(dir, 'out')}/c-{partition}.jsonl`], { env: { NODE_OPTIONS: nodeOptions } })
    onTestFinished(() => void run.child.kill('SIGKILL'))
    const pid = run.child.pid!
    // Every case is replaced once (MALLOC_ARENA_MAX is not set): its new image has what it keeps.
    await until(() => arenaSetting(pid) !== undefined, 30_000, 'weir run replaced itself')
    expect(semiSpaceFlags(pid), `/proc/${pid}/cmdline`).toEqual(flags)
    expect(arenaSetting(pid), `/proc/${pid}/environ`).toBe(arenas)
  }, 60_000)
})
