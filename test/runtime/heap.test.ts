/**
 * The V8 settings of a process that runs pipelines: which flags are set for each pipe, that
 * the user's own flags win, and (in a real node process, through V8's own GC trace) that the
 * old generation's growth factor set at run time is the one V8 then uses.
 */
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { HEAP_GROWTH_PERCENT, heapFlags, SEMI_SPACE_MB } from '../../runtime/heap.ts'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

describe('heapFlags', () => {
  it('bounds the old generation on the embedded pipe and widens the young generation on Kafka', () => {
    expect(heapFlags('embedded', [])).toEqual([`--heap-growing-percent=${HEAP_GROWTH_PERCENT}`])
    expect(heapFlags('kafka', [])).toEqual([`--max-semi-space-size=${SEMI_SPACE_MB}`])
  })

  it("keeps the user's flags, from node's command line or NODE_OPTIONS, in either spelling", () => {
    expect(heapFlags('embedded', ['--heap-growing-percent=0'])).toEqual([])
    expect(heapFlags('embedded', ['--max-old-space-size=4096'])).toEqual([])
    expect(heapFlags('embedded', ['--require x.js --max_old_space_size=2048'])).toEqual([])
    expect(heapFlags('kafka', ['--import tsx', '--max-semi-space-size=32'])).toEqual([])
  })
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
