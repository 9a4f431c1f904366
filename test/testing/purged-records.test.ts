/**
 * purgedRecords counts every edge topic a pipeline's actors write and a stage reads: a
 * stage's own output, and a keyed branch's internal topic (`<stage>.keyBy.<n>`), which the
 * recovery properties rely on to show that purging ran on every edge.
 */
import { afterAll, expect, it } from 'vitest'
import { Pipeline, Processor, type Context, type StreamRecord } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { EmbeddedPipe } from '../../runtime/pipe/embedded/embedded-pipe.ts'
import { purgedRecords, removeDir, runToCompletion, tempDataDir } from '../../testing/index.ts'

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

class Pass extends Processor<number, number> {
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    ctx.emit(r.key, r.value)
  }
}

function branches(): Pipeline {
  const p = new Pipeline('branches')
  const numbers = p.source<number>('numbers', () => new GeneratorSource<number>({ count: 2000, ratePerSecond: 10_000, generate: (i) => ({ key: `k${i}`, value: i }) }), { partitions: 2 })
  // Paced (about 200 ms of input), so the readers commit, and purge, over many checkpoints even on a loaded machine.
  // Two readers that disagree: the source's own topic stays unkeyed, the keyed one gets numbers.keyBy.1.
  numbers.process('as-is', () => new Pass())
  numbers.keyBy((v) => `k${v % 13}`, 3).process('by-key', () => new Pass())
  return p
}

it('counts the records purged from a keyed branch topic as well as from stage outputs', async () => {
  const dir = tempDataDir('weir-purged-')
  dirs.push(dir)
  const pipeline = branches()
  await runToCompletion(pipeline, { dataDir: dir, epochIntervalMs: 10, actorConfig: { maxBatch: 100 } })

  const pipe = await EmbeddedPipe.open(dir)
  try {
    const purgedFrom = async (topic: string, partitions: number): Promise<number> => {
      let n = 0
      for (let partition = 0; partition < partitions; partition++) n += await pipe.startOffset(topic, partition)
      return n
    }
    const own = await purgedFrom('weir.branches.numbers', 2)
    const keyed = await purgedFrom('weir.branches.numbers.keyBy.1', 3)
    expect(keyed, 'records purged from the keyed branch topic').toBeGreaterThan(0)
    expect(await purgedRecords(pipeline, pipe)).toBe(own + keyed)
  } finally {
    await pipe.close()
  }
})
