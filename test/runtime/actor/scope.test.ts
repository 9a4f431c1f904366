/**
 * A unit of user code (a record, a timer, a poll) commits or rolls back as a whole: a
 * record that fails leaves no state change, no emitted record and no timer change behind,
 * in this run exactly as after a restart. State values cannot be changed behind the
 * runtime's back, values a codec would not give back are refused where they are handed
 * over, and state, timers and emit used outside their unit fail loudly.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, policy, type Context, type LifecycleContext, type StreamRecord, type Timer } from '../../../index.ts'
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

describe('state values belong to the runtime, not to user code', () => {
  it('a value changed in place after set does not change the state, and the change fails loudly', async () => {
    const errors: string[] = []
    class KeepAndMutate extends Processor<number, number> {
      private readonly box = this.state.value<{ n: number }>('box')
      private kept: { n: number } | undefined
      onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
        if (r.value === 0) {
          this.kept = { n: 1 }
          this.box.set(this.kept)
          return
        }
        try {
          this.kept!.n = 99 // after set: must not reach the stored value
        } catch (err) {
          errors.push((err as Error).constructor.name)
        }
        ctx.emit(r.key, this.box.get()!.n)
      }
    }
    const p = new Pipeline('mutate-after-set')
    p.source<number>('numbers', () => new GeneratorSource<number>({ count: 3, generate: (i) => ({ key: 'k', value: i }) }), { partitions: 1 })
      .process('keep', KeepAndMutate)
    const d = dir()
    await runToCompletion(p, { dataDir: d })
    expect((await readStageOutput<number>(p, d, 'keep')).map((r) => r.value)).toEqual([1, 1])
    expect(errors).toEqual(['TypeError', 'TypeError'])
    expect((await readState(p, d, 'keep')).keyed.box).toEqual({ k: { n: 1 } })
  })

  it('a change in place by a record that then fails is rolled back with it', async () => {
    class MutateThenThrow extends Processor<number, number> {
      private readonly box = this.state.value<{ n: number }>('box')
      onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
        const current = this.box.get()
        if (current === undefined) return this.box.set({ n: 1 })
        if (r.value === 1) {
          (current as { n: number }).n += 10 // in place, then the record fails
          throw new Error('failing after the change')
        }
        ctx.emit(r.key, current.n)
      }
    }
    const p = new Pipeline('mutate-then-throw')
    p.source<number>('numbers', () => new GeneratorSource<number>({ count: 3, generate: (i) => ({ key: 'k', value: i }) }), { partitions: 1 })
      .process('box', MutateThenThrow, { onError: policy.deadLetter() })
    const d = dir()
    await runToCompletion(p, { dataDir: d })
    expect((await readStageOutput<number>(p, d, 'box')).map((r) => r.value)).toEqual([1])
    const dead = await readDeadLetters(p, d, 'box')
    expect(dead).toHaveLength(1)
    expect(dead[0]!.value.error.message).toMatch(/read only|not extensible/)
  })
})

describe('values a codec would not give back are refused where they are handed over', () => {
  class Widget {
    constructor(readonly size: number) {}
  }
  const bad: Array<[string, unknown, RegExp]> = [
    ['a function field', { id: 1, format: () => 'x' }, /value\.format is a function/],
    ['a bare function', () => 1, /value is a function/],
    ['a Map', { id: 1, tags: new Map([['a', 1]]) }, /value\.tags is a Map/],
    ['a class instance', { items: [new Widget(3)] }, /value\.items\[0\] is a Widget/],
    ['a BigInt beyond 64 bits', { big: 2n ** 70n }, /value\.big is a BigInt outside 64 bits/],
  ]

  it.each(bad)('emit of %s goes to the dead-letter topic naming the stage, the key and the field', async (_, value, message) => {
    class EmitBad extends Processor<number, unknown> {
      onRecord(r: StreamRecord<number>, ctx: Context<unknown>): void {
        ctx.emit(r.key, r.value === 1 ? value : { ok: r.value })
      }
    }
    const p = new Pipeline('emit-bad')
    p.source<number>('numbers', () => new GeneratorSource<number>({ count: 3, generate: (i) => ({ key: `k${i}`, value: i }) }), { partitions: 1 })
      .process('emitter', EmitBad, { onError: policy.deadLetter() })
    const d = dir()
    await runToCompletion(p, { dataDir: d })
    expect((await readStageOutput(p, d, 'emitter')).map((r) => r.value)).toEqual([{ ok: 0 }, { ok: 2 }])
    const dead = await readDeadLetters(p, d, 'emitter')
    expect(dead).toHaveLength(1)
    expect(dead[0]!.value.error.message).toContain('stage emitter, key "k1": ctx.emit:')
    expect(dead[0]!.value.error.message).toMatch(message)
  })

  it('NaN is refused on a JSON output, and set() of a function on state', async () => {
    class Bad extends Processor<number, unknown> {
      private readonly last = this.state.value<unknown>('last')
      onRecord(r: StreamRecord<number>, ctx: Context<unknown>): void {
        if (r.value === 0) ctx.emit(r.key, { ratio: 0 / 0 })
        if (r.value === 1) this.last.set(() => 1)
        if (r.value === 2) ctx.emit(r.key, { ratio: 0.5 })
      }
    }
    const p = new Pipeline('json-bad')
    p.source<number>('numbers', () => new GeneratorSource<number>({ count: 3, generate: (i) => ({ key: `k${i}`, value: i }) }), { partitions: 1 })
      .process('bad', Bad, { codec: 'json', onError: policy.deadLetter() })
    const d = dir()
    await runToCompletion(p, { dataDir: d })
    expect((await readStageOutput(p, d, 'bad')).map((r) => r.value)).toEqual([{ ratio: 0.5 }])
    const messages = (await readDeadLetters(p, d, 'bad')).map((r) => r.value.error.message)
    expect(messages).toHaveLength(2)
    expect(messages[0]).toMatch(/stage bad, key "k0": ctx\.emit: value\.ratio is NaN, which JSON turns into null/)
    expect(messages[1]).toMatch(/stage bad, key "k1": state 'last'\.set: value is a function/)
    expect((await readState(p, d, 'bad')).keyed.last).toBeUndefined()
  })
})

describe('state, timers and emit used outside their unit fail loudly', () => {
  it('state set from a callback after onRecord returned is refused, naming the stage and the rule', async () => {
    const errors: Array<{ code: string; message: string }> = []
    let pending = 0
    class Late extends Processor<number, number> {
      private readonly count = this.state.value<number>('count')
      private readonly seen = this.state.actorValue<number>('seen')
      onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
        pending++
        setTimeout(() => {
          for (const use of [() => this.count.set(1), () => this.seen.set(1), () => ctx.emit(r.key, 1), () => ctx.timers.registerEventTime(5)]) {
            try {
              use()
            } catch (err) {
              errors.push({ code: (err as { code: string }).code, message: (err as Error).message })
            }
          }
          pending--
        }, 0)
      }
    }
    const p = new Pipeline('late-state')
    p.source<number>('numbers', () => new GeneratorSource<number>({ count: 2, generate: (i) => ({ key: 'k', value: i }) }), { partitions: 1 })
      .process('late', Late)
    const d = dir()
    await runToCompletion(p, { dataDir: d })
    while (pending > 0) await new Promise((r) => setTimeout(r, 5))
    expect(errors.map((e) => e.code)).toEqual(Array(8).fill('WEIR_OUT_OF_SCOPE'))
    expect(errors[0]!.message).toMatch(/stage late: keyed state 'count' was used after the record, timer or hook it belongs to returned/)
    expect(errors[1]!.message).toMatch(/stage late: actor state 'seen' was used after/)
    expect(errors[2]!.message).toMatch(/ctx\.emit was used after/)
    expect(errors[3]!.message).toMatch(/ctx\.timers\.registerEventTime was used after/)
    expect(await readStageOutput(p, d, 'late')).toEqual([])
  })

  it('keyed state in onCheckpoint is refused; actor state there works', async () => {
    const errors: string[] = []
    class Checkpointing extends Processor<number, number> {
      private readonly count = this.state.value<number>('count')
      private readonly checkpoints = this.state.actorValue<number>('checkpoints')
      onRecord(r: StreamRecord<number>): void {
        this.count.set((this.count.get() ?? 0) + r.value)
      }
      override onCheckpoint(_ctx: LifecycleContext): void {
        this.checkpoints.set((this.checkpoints.get() ?? 0) + 1)
        try {
          this.count.get()
        } catch (err) {
          errors.push((err as Error).message)
        }
      }
    }
    const p = new Pipeline('checkpoint-keyed')
    p.source<number>('numbers', () => new GeneratorSource<number>({ count: 5, generate: (i) => ({ key: 'k', value: i }) }), { partitions: 1 })
      .process('sum', Checkpointing)
    const d = dir()
    await runToCompletion(p, { dataDir: d })
    expect(errors.length).toBeGreaterThan(0)
    expect(errors[0]).toMatch(/stage sum: keyed state 'count' was used in onCheckpoint: it belongs to the record or timer being processed/)
    const state = await readState(p, d, 'sum')
    expect(state.keyed.count).toEqual({ k: 10 })
    expect(state.actor[0]!.checkpoints).toBe(errors.length)
  })
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
