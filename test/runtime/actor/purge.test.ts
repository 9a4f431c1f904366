/**
 * Purging consumed records: an actor deletes what every reader of its input committed
 * past, every PURGE_EVERY checkpoints and once more when it stops gracefully. A short
 * bounded run (fewer checkpoints than that) must still leave its edge topics consumed to
 * the end; topics nobody reads and topics a user named keep their records.
 */
import { afterAll, expect, it } from 'vitest'
import { Pipeline, Processor, type Context, type StreamRecord } from '../../../index.ts'
import { GeneratorSource } from '../../../processors/index.ts'
import { EmbeddedPipe } from '../../../runtime/pipe/embedded/embedded-pipe.ts'
import { readStageOutput, removeDir, runToCompletion, tempDataDir } from '../../../testing/index.ts'

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

class Pass extends Processor<number, number> {
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    ctx.emit(r.key, r.value)
  }
}

function pipeline(name: string, purge: boolean): Pipeline {
  const p = new Pipeline(name, { purgeConsumedRecords: purge })
  const numbers = p.source<number>('numbers', () => new GeneratorSource<number>({ count: 500 /* per partition */, generate: (i) => ({ key: `k${i}`, value: i }) }), { partitions: 2 })
  // Not chained, so numbers → first and first → second are topics; second's output is read by nobody.
  numbers.process('first', () => new Pass(), { chain: false }).process('second', () => new Pass(), { chain: false })
  return p
}

async function startOffsets(dir: string, name: string): Promise<Record<string, number[]>> {
  const pipe = await EmbeddedPipe.open(dir)
  try {
    const out: Record<string, number[]> = {}
    for (const stage of ['numbers', 'first', 'second']) {
      const topic = `weir.${name}.${stage}`
      const partitions = (await pipe.describeTopic(topic))?.partitions ?? 0
      out[stage] = []
      for (let p = 0; p < partitions; p++) out[stage]!.push(await pipe.startOffset(topic, p))
    }
    return out
  } finally {
    await pipe.close()
  }
}

async function endOffsets(dir: string, topic: string, partitions: number): Promise<number[]> {
  const pipe = await EmbeddedPipe.open(dir)
  try {
    const out: number[] = []
    for (let p = 0; p < partitions; p++) out.push(await pipe.endOffset(topic, p))
    return out
  } finally {
    await pipe.close()
  }
}

it('a graceful stop purges the edges its readers consumed, even after fewer checkpoints than the periodic purge needs', async () => {
  const dir = tempDataDir('weir-purge-')
  dirs.push(dir)
  // One epoch for the whole run: each actor takes a handful of checkpoints, fewer than PURGE_EVERY.
  const run = await runToCompletion(pipeline('short', true), { dataDir: dir, epochIntervalMs: 60_000, actorConfig: { maxBatch: 1000 } })
  const checkpoints = Object.values(run.result.stats).map((s) => s.checkpoints)
  console.log(`checkpoints per actor: ${JSON.stringify(checkpoints)}`)
  expect(Math.max(...checkpoints), 'the run must stay below the periodic purge').toBeLessThan(10)

  const starts = await startOffsets(dir, 'short')
  // Every record read by first and second was committed by them at their stop, so the edges are empty.
  expect(starts.numbers).toEqual(await endOffsets(dir, 'weir.short.numbers', starts.numbers!.length))
  expect(starts.first).toEqual(await endOffsets(dir, 'weir.short.first', starts.first!.length))
  // Nobody reads second: its output is kept.
  expect(starts.second!.every((o) => o === 0)).toBe(true)
  // weir/testing refuses a purged edge rather than answering with what is left of it.
  await expect(readStageOutput(pipeline('short', true), dir, 'first')).rejects.toMatchObject({ code: 'WEIR_STAGE_OUTPUT_PURGED', message: expect.stringContaining("read by 'second'") })
  expect(await readStageOutput(pipeline('short', true), dir, 'second')).toHaveLength(1000)
})

it('keeps every record when purging is off', async () => {
  const dir = tempDataDir('weir-purge-off-')
  dirs.push(dir)
  await runToCompletion(pipeline('kept', false), { dataDir: dir, epochIntervalMs: 60_000, actorConfig: { maxBatch: 1000 } })
  const starts = await startOffsets(dir, 'kept')
  expect(Object.values(starts).flat().every((o) => o === 0)).toBe(true)
  expect(await readStageOutput(pipeline('kept', false), dir, 'first')).toHaveLength(1000)
})
