/**
 * Topic inputs and named output topics (Pipeline.fromTopic, `{ topic }`), on both pipes:
 * records other systems wrote are read with their codec, positions survive a restart, the
 * output lands in the named topic, and neither topic is purged.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { CountWords, SplitWords } from '../../examples/wordcount.ts'
import { startEmbedded } from '../../runner/embedded-runner.ts'
import { EmbeddedPipe } from '../../runtime/pipe/embedded/embedded-pipe.ts'
import { KafkaPipe } from '../../runtime/pipe/kafka/kafka-pipe.ts'
import type { Pipe } from '../../runtime/pipe/pipe.ts'
import { Pipeline } from '../../runtime/api/pipeline.ts'
import { codecFor } from '../../runtime/codec.ts'
import { readTopic, removeDir, tempDataDir } from '../../testing/index.ts'
import { requireService } from '../support/services.ts'

const kafka = await requireService('kafka')
const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

async function write(pipe: Pipe, topic: string, lines: string[]): Promise<void> {
  const producer = await pipe.producer(`${topic}-writer-${randomUUID().slice(0, 6)}`)
  producer.begin()
  lines.forEach((l, i) => producer.send(topic, i % 2, { key: null, value: Buffer.from(l), timestamp: Date.now() }))
  await producer.commit()
  await producer.close()
}

function expectedCounts(lines: string[]): Record<string, number> {
  const out: Record<string, number> = {}
  for (const l of lines) for (const w of l.split(/\s+/)) if (w !== '') out[w.toLowerCase()] = (out[w.toLowerCase()] ?? 0) + 1
  return out
}

async function runUntilCaughtUp(pipeline: Pipeline, pipe: Pipe, dataDir: string, output: string, words: number): Promise<void> {
  const run = await startEmbedded(pipeline, { dataDir, pipe, epochIntervalMs: 100 })
  const deadline = Date.now() + 60_000
  for (;;) {
    const out = await readTopic(pipe, output, codecFor('json'))
    if (out.length >= words && (await run.measureLag()) === 0) break
    if (Date.now() > deadline) throw new Error(`output ${output} has ${out.length} of ${words} records after 60 s`)
    await new Promise((r) => setTimeout(r, 200))
  }
  const result = await run.stop()
  expect(result.outcome).toBe('stopped')
}

function topicIo(name: string, open: (dir: string) => Promise<Pipe>): void {
  describe(`topic inputs and named outputs: ${name}`, () => {
    it('reads an existing topic with its codec, writes the named output exactly once across a restart, and purges neither', async () => {
      const dir = tempDataDir('weir-topic-io-')
      dirs.push(dir)
      const pipe = await open(dir)
      const id = randomUUID().slice(0, 8)
      const input = `ext.lines.${id}`
      const output = `ext.counts.${id}`
      const pipeline = new Pipeline(`topic-io-${id}`)
      pipeline.fromTopic<string>('lines', { topic: input, partitions: 2, codec: 'string' })
        .process('split', SplitWords).keyBy(3)
        .process('count', CountWords, { topic: output, codec: 'json' })
      try {
        await pipe.ensureTopic({ name: input, partitions: 2 })
        const first = ['the quick brown fox', 'jumps over the lazy dog', 'The end']
        await write(pipe, input, first)
        await runUntilCaughtUp(pipeline, pipe, dir, output, 11)
        const second = ['the fox again', 'and the dog']
        await write(pipe, input, second)
        await runUntilCaughtUp(pipeline, pipe, dir, output, 17)

        const out = await readTopic<number>(pipe, output, codecFor('json'))
        expect(out).toHaveLength(17) // one update per word, none repeated after the restart
        const last: Record<string, number> = {}
        for (const r of out) last[r.key!] = Math.max(last[r.key!] ?? 0, r.value)
        expect(last).toEqual(expectedCounts([...first, ...second]))
        expect((await pipe.describeTopic(output))?.partitions).toBe(3)
        for (const p of [0, 1]) expect(await pipe.startOffset(input, p)).toBe(0)
      } finally {
        await pipe.close()
      }
    })

    it('refuses a missing input topic or a wrong partition count, naming the field', async () => {
      const dir = tempDataDir('weir-topic-io-')
      dirs.push(dir)
      const pipe = await open(dir)
      const id = randomUUID().slice(0, 8)
      try {
        const missing = new Pipeline(`topic-missing-${id}`)
        missing.fromTopic<string>('lines', { topic: `ext.none.${id}`, partitions: 1, codec: 'string' }).process('split', SplitWords)
        await expect(startEmbedded(missing, { dataDir: dir, pipe })).rejects.toMatchObject({ code: 'WEIR_TOPIC_MISSING', message: expect.stringContaining('stages.lines.topic') })
        await pipe.ensureTopic({ name: `ext.two.${id}`, partitions: 2 })
        const wrong = new Pipeline(`topic-wrong-${id}`)
        wrong.fromTopic<string>('lines', { topic: `ext.two.${id}`, partitions: 4, codec: 'string' }).process('split', SplitWords)
        await expect(startEmbedded(wrong, { dataDir: tempDataDir(), pipe })).rejects.toMatchObject({ code: 'WEIR_TOPIC_MISMATCH', message: expect.stringContaining('stages.lines.partitions') })
        expect(() => new Pipeline('x').fromTopic('lines', { topic: 'bad topic', partitions: 1 })).toThrow(/stages.lines.topic/)
      } finally {
        await pipe.close()
      }
    })
  })
}

topicIo('embedded', (dir) => EmbeddedPipe.open(dir))
describe.skipIf(!kafka.available)('on kafka', () => {
  topicIo('kafka', () => KafkaPipe.connect({ brokers: kafka.url.split(',') }))
})
