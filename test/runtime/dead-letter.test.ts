/**
 * Bad input never stops or loses data silently: undecodable records and records whose
 * processing throws go to the stage's dead-letter topic with the error and origin; the
 * rest of the stream is processed; the counts add up. Retry and fail-stop policies too.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, policy, startEmbedded, type Codec, type Context, type StreamRecord } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { readDeadLetters, readStageOutput, readState, readTopic, removeDir, runToCompletion, tempDataDir } from '../../testing/index.ts'
import { codecFor } from '../../runtime/codec.ts'

const dirs: string[] = []
function dir(): string {
  const d = tempDataDir('weir-dlq-')
  dirs.push(d)
  return d
}

/** JSON, except that the value 'garbage' is written as bytes no JSON parser accepts (an external producer's bug). */
const sloppyJson: Codec<unknown> = {
  name: 'json',
  encode: (v) => Buffer.from(v === 'garbage' ? '{"unterminated' : JSON.stringify(v)),
  decode: (b) => JSON.parse(b.toString('utf8')) as unknown,
}

const N = 1000
function value(i: number): string {
  if (i % 50 === 7) return 'garbage'
  if (i % 40 === 3) return `poison-${i}`
  return `ok-${i}`
}

class Tally extends Processor<string, string> {
  private readonly seen = this.state.value<number>('seen')
  onRecord(r: StreamRecord<string>, ctx: Context<string>): void {
    // State is changed before the throw: a dead-lettered record must leave no trace in state.
    this.seen.set((this.seen.get() ?? 0) + 1)
    if (r.value.startsWith('poison')) throw new Error(`cannot handle ${r.value}`)
    ctx.emit(r.key, r.value)
  }
}

function pipeline(onError = policy.deadLetter()): Pipeline {
  // The source's topic is read back for the offsets a dead letter names: kept, not purged once consumed.
  const p = new Pipeline('dlq', { purgeConsumedRecords: false })
  p.source<string>('in', () => new GeneratorSource<string>({ count: N, generate: (i) => ({ key: `k${i % 5}`, value: value(i) }) }), { codec: sloppyJson, partitions: 1 })
    // Not chained to its source: these tests read the source's topic for the offsets a dead letter names (test/runtime/actor/chain.test.ts covers a chained stage's).
    .process('tally', Tally, { onError, codec: 'json', chain: false })
  return p
}

/**
 * Input offset → record index. Offsets are not indexes: the source's checkpoints put
 * watermark marks between its records.
 */
async function indexByOffset(p: Pipeline, d: string): Promise<Map<number, number>> {
  const input = await readTopic(d, p.outputTopic(p.stage('in')!), codecFor('raw'))
  return new Map(input.map((r, i) => [r.offset, i]))
}

describe('dead-letter topic', () => {
  it('routes undecodable and failing records there with context, and processes the rest', async () => {
    const d = dir()
    const p = pipeline()
    const { result } = await runToCompletion(p, { dataDir: d })
    const out = await readStageOutput<string>(p, d, 'tally')
    const dead = await readDeadLetters(p, d, 'tally')
    const garbage = Array.from({ length: N }, (_, i) => i).filter((i) => value(i) === 'garbage')
    const poison = Array.from({ length: N }, (_, i) => i).filter((i) => value(i).startsWith('poison'))
    expect(out).toHaveLength(N - garbage.length - poison.length)
    expect(dead).toHaveLength(garbage.length + poison.length)
    expect(out.length + dead.length).toBe(N)

    const index = await indexByOffset(p, d)
    const decodeFailures = dead.filter((r) => r.value.error.code === 'WEIR_DECODE_FAILED')
    expect(decodeFailures.map((r) => index.get(r.value.origin!.offset)).sort((a, b) => a! - b!)).toEqual(garbage)
    expect(decodeFailures[0]!.value.value!.toString()).toBe('{"unterminated')
    const processingFailures = dead.filter((r) => r.value.error.code === 'WEIR_PROCESSING_FAILED')
    expect(processingFailures.map((r) => index.get(r.value.origin!.offset)).sort((a, b) => a! - b!)).toEqual(poison)
    const first = processingFailures[0]!.value
    expect(first).toMatchObject({ stage: 'tally', actor: 'tally/0', attempts: 1, origin: { topic: 'weir.dlq.in', partition: 0 } })
    expect(first.error.cause?.message).toMatch(/cannot handle poison-/)
    expect(JSON.parse(first.value!.toString())).toMatch(/^poison-/)

    // The failing records' state changes were rolled back.
    const state = await readState(p, d, 'tally')
    const seen = Object.values(state.keyed.seen!).reduce((a: number, b) => a + (b as number), 0)
    expect(seen).toBe(N - garbage.length - poison.length)
    expect(result.stats['tally/0']!.deadLettered).toBe(dead.length)
  })

  it('retries a failing record with backoff and dead-letters it after the last attempt', async () => {
    const d = dir()
    const attempts = new Map<string, number>()
    class Flaky extends Processor<string, string> {
      onRecord(r: StreamRecord<string>, ctx: Context<string>): void {
        const n = (attempts.get(r.value) ?? 0) + 1
        attempts.set(r.value, n)
        if (r.value === 'v10' && n < 3) throw new Error('transient')
        if (r.value === 'v20') throw new Error('permanent')
        ctx.emit(r.key, r.value)
      }
    }
    const p = new Pipeline('retry')
    p.source<string>('in', () => new GeneratorSource<string>({ count: 30, generate: (i) => ({ key: 'k', value: `v${i}` }) }), { codec: 'json' })
      .process('flaky', Flaky, { onError: policy.retry(3, 1, 'dead-letter'), codec: 'json' })
    await runToCompletion(p, { dataDir: d })
    expect(attempts.get('v10')).toBe(3)
    expect(attempts.get('v20')).toBe(4)
    const out = await readStageOutput<string>(p, d, 'flaky')
    expect(out.map((r) => r.value)).toEqual(Array.from({ length: 30 }, (_, i) => `v${i}`).filter((v) => v !== 'v20'))
    const dead = await readDeadLetters(p, d, 'flaky')
    expect(dead.map((r) => [JSON.parse(r.value.value!.toString()), r.value.attempts])).toEqual([['v20', 4]])
  })

  it('fail-stop stops the pipeline with an error naming the stage and offset, committing nothing past it', async () => {
    const d = dir()
    const p = pipeline(policy.failStop())
    const run = await startEmbedded(p, { dataDir: d, epochIntervalMs: 20 })
    const err = await run.done.then(() => undefined, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'WEIR_ACTOR_FAILED', context: { stage: 'tally' } })
    // The error names the offset of the first failing record (index 3, 'poison-3').
    const index = await indexByOffset(p, d)
    expect(index.get((err as { context: { offset: number } }).context.offset)).toBe(3)
    const out = await readStageOutput<string>(p, d, 'tally')
    expect(out.map((r) => r.value)).toEqual(out.map((_, i) => value(i)))
    expect(out.length).toBeLessThan(3)
  })
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
