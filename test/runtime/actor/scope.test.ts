/**
 * A unit of user code (a record, a timer, a poll) commits or rolls back as a whole: a
 * record that fails leaves no state change, no emitted record and no timer change behind,
 * in this run exactly as after a restart.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, policy, type Context, type StreamRecord, type Timer } from '../../../index.ts'
import { GeneratorSource } from '../../../processors/index.ts'
import { readDeadLetters, readStageOutput, readState, removeDir, runToCompletion, tempDataDir } from '../../../testing/index.ts'

const dirs: string[] = []
function dir(): string {
  const d = tempDataDir('weir-scope-')
  dirs.push(d)
  return d
}

/** Records 0..count-1 of one partition, keyed k<i % 3>, value i. */
function numbers(p: Pipeline, count: number) {
  return p.source<number>('numbers', () => new GeneratorSource<number>({ count, generate: (i) => ({ key: `k${i % 3}`, value: i, timestamp: 1_000 + i }) }), { partitions: 1 })
}

describe('a failed unit is rolled back whole', () => {
  it('a timer registered by a record that then throws never fires', async () => {
    class RegisterThenThrow extends Processor<number, string> {
      onRecord(r: StreamRecord<number>, ctx: Context<string>): void {
        ctx.timers.registerProcessingTime(Date.now() + 5)
        ctx.timers.registerEventTime(r.timestamp + 1)
        if (r.value % 2 === 1) throw new Error(`odd ${r.value}`)
      }
      override onTimer(t: Timer, ctx: Context<string>): void {
        ctx.emit(t.key, `${t.domain}@${t.time}`)
      }
    }
    const p = new Pipeline('timer-rollback')
    numbers(p, 6).process('timers', RegisterThenThrow, { onError: policy.deadLetter() })
    const d = dir()
    await runToCompletion(p, { dataDir: d })
    const fired = (await readStageOutput<string>(p, d, 'timers')).map((r) => r.value)
    // Only the even records' timers: one processing-time and one event-time timer each.
    expect(fired.filter((f) => f.startsWith('event-time')).sort()).toEqual(['event-time@1001', 'event-time@1003', 'event-time@1005'])
    expect(fired.filter((f) => f.startsWith('processing-time'))).toHaveLength(3)
    expect(await readDeadLetters(p, d, 'timers')).toHaveLength(3)
    expect((await readState(p, d, 'timers')).timers).toEqual({})
  })

  it('a timer deleted by a record that then throws still fires', async () => {
    class DeleteThenThrow extends Processor<number, string> {
      onRecord(r: StreamRecord<number>, ctx: Context<string>): void {
        // Record 0 of each key registers the key's timer; record 3 deletes it and throws.
        if (r.value < 3) ctx.timers.registerEventTime(5_000)
        else {
          ctx.timers.deleteEventTime(5_000)
          throw new Error(`deleting for ${r.key}`)
        }
      }
      override onTimer(t: Timer, ctx: Context<string>): void {
        ctx.emit(t.key, `fired@${t.time}`)
      }
    }
    const p = new Pipeline('timer-delete-rollback')
    numbers(p, 6).process('timers', DeleteThenThrow, { onError: policy.deadLetter() })
    const d = dir()
    await runToCompletion(p, { dataDir: d })
    const fired = (await readStageOutput<string>(p, d, 'timers')).map((r) => `${r.key}:${r.value}`).sort()
    expect(fired).toEqual(['k0:fired@5000', 'k1:fired@5000', 'k2:fired@5000'])
    expect(await readDeadLetters(p, d, 'timers')).toHaveLength(3)
  })
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
