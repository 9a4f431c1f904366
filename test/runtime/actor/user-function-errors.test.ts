/**
 * Errors in what user code hands the actor name the stage and the option, and say what is
 * expected: a topic input's timestampOf that returns no time (was reported as a codec
 * failure), a timer time that is not a whole number of ms (named no stage).
 */
import { randomUUID } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, policy, startEmbedded, type Context, type StreamRecord } from '../../../index.ts'
import { GeneratorSource } from '../../../processors/index.ts'
import { EmbeddedPipe } from '../../../runtime/pipe/embedded/embedded-pipe.ts'
import { readDeadLetters, removeDir, runToCompletion, tempDataDir } from '../../../testing/index.ts'

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))
function dir(): string {
  const d = tempDataDir('weir-user-fn-')
  dirs.push(d)
  return d
}

class Forward extends Processor<string, string> {
  onRecord(r: StreamRecord<string>, ctx: Context<string>): void {
    ctx.emit(r.key, r.value)
  }
}

describe('errors in user functions', () => {
  it("a timestampOf returning NaN dead-letters the record naming the option, not the codec", async () => {
    const d = dir()
    const pipe = await EmbeddedPipe.open(d)
    const topic = `times-${randomUUID().slice(0, 6)}`
    await pipe.ensureTopic({ name: topic, partitions: 1 })
    const producer = await pipe.producer(`${topic}-writer`)
    producer.begin()
    producer.send(topic, 0, { key: Buffer.from('a'), value: Buffer.from('not a date'), timestamp: 1_000 })
    await producer.commit()
    await producer.close()
    const p = new Pipeline('user-fn-times')
    p.fromTopic<string>('events', { topic, partitions: 1, codec: 'string', timestampOf: (v: string) => Date.parse(v), watermarks: { idleTimeoutMs: 0 } }).process('fwd', Forward)
    const run = await startEmbedded(p, { dataDir: d, pipe, epochIntervalMs: 50 })
    const deadline = Date.now() + 20_000
    let letters = await readDeadLetters(p, pipe, 'fwd')
    while (letters.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50))
      letters = await readDeadLetters(p, pipe, 'fwd')
    }
    await run.stop()
    await pipe.close()
    expect(letters).toHaveLength(1)
    expect(letters[0]!.value.error.code).toBe('WEIR_DECODE_FAILED')
    expect(letters[0]!.value.error.message).toBe(`stages.events.timestampOf returned NaN for the record at offset 0 of ${topic}: it must return the record's event time as a finite number of ms (e.g. Date.parse(value.time)); the record is dead-lettered`)
  })

  it('a timer time that is not a whole number of ms names the stage and says what a time is', async () => {
    class HalfMs extends Processor<number, number> {
      onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
        ctx.timers.registerEventTime(r.timestamp + 0.5)
      }
    }
    const p = new Pipeline('user-fn-timer')
    p.source<number>('numbers', () => new GeneratorSource<number>({ count: 1, generate: (i) => ({ key: 'k', value: i, timestamp: 1_000 }) }), { partitions: 1 })
      .process('timers', HalfMs, { onError: policy.failStop() })
    const err = await runToCompletion(p, { dataDir: dir() }).then(() => undefined, (e: unknown) => e)
    const chain: string[] = []
    for (let e = err; e instanceof Error; e = e.cause) chain.push(e.message)
    expect(chain.join('\n')).toContain("stage timers: a timer's time is a whole number of ms >= 0 (an epoch time such as Date.now() + 60_000 or record.timestamp + 1), got 1000.5: round it (Math.ceil) or check the arithmetic")
  })
})
