/** The JSONL file sink writes each record once across crashes, and refuses a file shortened outside weir. */
import { readFileSync, truncateSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline } from '../../index.ts'
import { GeneratorSource, JsonlFileSink } from '../../processors/index.ts'
import { removeDir, runToCompletion, tempDataDir } from '../../testing/index.ts'
import { startEmbedded } from '../../runner/embedded-runner.ts'

const dirs: string[] = []

function sinkPipeline(out: string, count: number): Pipeline {
  const p = new Pipeline('sink')
  p.source<number>('n', () => new GeneratorSource<number>({ count, generate: (i) => ({ key: `k${i}`, value: i }) }))
    .to('file', () => new JsonlFileSink<number>({ path: out, format: (r) => r.value }))
  return p
}

describe('JSONL file sink', () => {
  it('holds every record exactly once after crashes around the commit', async () => {
    const d = tempDataDir('weir-sink-')
    dirs.push(d)
    const out = join(d, 'out.jsonl')
    await runToCompletion(sinkPipeline(out, 2000), {
      dataDir: join(d, 'data'),
      crashes: [{ point: 'before-commit', hit: 2 }, { point: 'after-pipe-commit', hit: 2 }, { point: 'mid-batch', hit: 3 }],
      epochIntervalMs: 10,
      actorConfig: { maxBatch: 100 },
    })
    const lines = readFileSync(out, 'utf8').trim().split('\n').map(Number)
    expect(lines).toEqual(Array.from({ length: 2000 }, (_, i) => i))
  })

  it('refuses to start when the file is shorter than its last checkpoint', async () => {
    const d = tempDataDir('weir-sink-')
    dirs.push(d)
    const out = join(d, 'out.jsonl')
    await runToCompletion(sinkPipeline(out, 100), { dataDir: join(d, 'data') })
    truncateSync(out, 10)
    const run = await startEmbedded(sinkPipeline(out, 100), { dataDir: join(d, 'data') })
    await expect(run.done).rejects.toMatchObject({ code: 'WEIR_STATE_CORRUPTED' })
  })
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
