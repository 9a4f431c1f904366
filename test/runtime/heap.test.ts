/**
 * The V8 settings of a process that runs pipelines: which flags are set for each pipe, that
 * the user's own flags win, and in real node processes that they take: the old generation's
 * growth factor set at run time is the one V8's own GC trace then shows, and the semi-space
 * size given at start bounds the young generation.
 */
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { HEAP_GROWTH_PERCENT, heapFlags, START_SETTINGS, startEnv, startFlags } from '../../runtime/heap.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

describe('heapFlags', () => {
  it('bounds the old generation on the embedded pipe and leaves Kafka to V8', () => {
    expect(heapFlags('embedded', [])).toEqual([`--heap-growing-percent=${HEAP_GROWTH_PERCENT}`])
    expect(heapFlags('kafka', [])).toEqual([])
  })

  it("keeps the user's flags, from node's command line or NODE_OPTIONS, in either spelling", () => {
    expect(heapFlags('embedded', ['--heap-growing-percent=0'])).toEqual([])
    expect(heapFlags('embedded', ['--max-old-space-size=4096'])).toEqual([])
    expect(heapFlags('embedded', ['--require x.js --max_old_space_size=2048'])).toEqual([])
  })
})

describe('startFlags', () => {
  it('sizes the semi-spaces for the pipe', () => {
    expect(startFlags('embedded', [])).toEqual([`--max-semi-space-size=${START_SETTINGS.embedded.semiSpaceMb}`])
    expect(startFlags('kafka', ['--import', 'tsx'])).toEqual([`--max-semi-space-size=${START_SETTINGS.kafka.semiSpaceMb}`])
  })

  it("keeps the user's semi-space size, in either spelling", () => {
    expect(startFlags('kafka', ['--import tsx', '--max-semi-space-size=32'])).toEqual([])
    expect(startFlags('embedded', ['--max_semi_space_size=8'])).toEqual([])
  })

  it('sets the malloc arenas for the pipe, and keeps a value in the environment', () => {
    expect(startEnv('embedded', {})).toEqual({ MALLOC_ARENA_MAX: String(START_SETTINGS.embedded.mallocArenas) })
    expect(startEnv('kafka', {})).toEqual({ MALLOC_ARENA_MAX: String(START_SETTINGS.kafka.mallocArenas) })
    expect(startEnv('embedded', { MALLOC_ARENA_MAX: '8' })).toEqual({ MALLOC_ARENA_MAX: '8' })
  })

  it("bounds the young generation of a node process started with them", () => {
    // Survivors make V8 grow the new space to its maximum: two semi-spaces.
    const script = `const v8 = require('node:v8'); let keep = []; for (let round = 0; round < 60; round++) { for (let i = 0; i < 100000; i++) keep.push({ i }); if (keep.length > 2000000) keep = keep.slice(1000000) }
      process.stdout.write(String(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size))`
    const env = { ...process.env, NODE_OPTIONS: '' }
    const newSpace = Number(execFileSync(process.execPath, [...startFlags('embedded', []), '-e', script], { env, encoding: 'utf8' }))
    expect(newSpace).toBeGreaterThan(0)
    expect(newSpace).toBeLessThanOrEqual(2 * START_SETTINGS.embedded.semiSpaceMb * 2 ** 20)
  }, 60_000)
})

/** V8's growth factor after a full collection in a fresh node process, with or without tuneHeap. */
function growthFactor(tune: boolean): number {
  const script = `${tune ? "const { tuneHeap } = await import('./runtime/heap.ts'); tuneHeap('embedded');" : ''}
    const keep = []; for (let i = 0; i < 200000; i++) keep.push({ i }); globalThis.gc(); process.stdout.write(String(keep.length))`
  const env = { ...process.env, NODE_OPTIONS: '' }
  const out = execFileSync(process.execPath, ['--trace-gc-verbose', '--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT, env, encoding: 'utf8' })
  const m = /\[HeapController\] factor ([\d.]+)/.exec(out)
  if (m === null) throw new Error(`no HeapController line in V8's trace:\n${out.slice(0, 2000)}`)
  return Number(m[1])
}

describe('tuneHeap', () => {
  it('sets the growth factor V8 uses after the next full collection', () => {
    expect(growthFactor(true)).toBeCloseTo(1 + HEAP_GROWTH_PERCENT / 100, 5)
    // Without it, V8 picks its own (up to 4 on a machine with several GiB): the test would not tell them apart otherwise.
    expect(growthFactor(false)).not.toBeCloseTo(1 + HEAP_GROWTH_PERCENT / 100, 5)
  }, 60_000)
})
