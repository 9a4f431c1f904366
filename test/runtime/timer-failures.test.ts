/**
 * A throwing `onTimer` follows the stage's `onError` policy, as a failing record does: its
 * state changes and emitted records are rolled back; then it is retried with backoff,
 * dead-lettered (the dead letter carries the timer's key, time and domain, and no record),
 * or, with fail-stop, it stops the actor with an error naming the stage, timer and domain.
 * The other timers and records of the actor are processed either way.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, policy, startEmbedded, type Context, type FailurePolicy, type StreamRecord, type Timer } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { readDeadLetters, readStageOutput, readState, removeDir, runToCompletion, tempDataDir } from '../../testing/index.ts'

const dirs: string[] = []
function dir(): string {
  const d = tempDataDir('weir-timer-')
  dirs.push(d)
  return d
}

const KEYS = ['k0', 'k1', 'k2', 'k3', 'k4']
const N = 200
/** Every key's event-time timer: due once the watermark passes it (at the end of input at the latest). */
const DUE = 1_000_000

/** Per key: counts its records, and when its timer fires emits the count and marks it reported. */
function counter(failures: (timer: Timer, attempt: number) => boolean, attempts: Map<string, number>) {
  return class CountThenReport extends Processor<string, number> {
    private readonly count = this.state.value<number>('count')
    private readonly reported = this.state.value<boolean>('reported')
    override onRecord(_r: StreamRecord<string>, ctx: Context<number>): void {
      this.count.set((this.count.get() ?? 0) + 1)
      ctx.timers.registerEventTime(DUE)
    }
    override onTimer(t: Timer, ctx: Context<number>): void {
      const attempt = (attempts.get(t.key!) ?? 0) + 1
      attempts.set(t.key!, attempt)
      // Changed and emitted before the throw: a failed attempt must leave neither behind.
      this.reported.set(true)
      ctx.emit(t.key, this.count.get() ?? 0)
      if (failures(t, attempt)) throw new Error(`timer of ${t.key} fails (attempt ${attempt})`)
    }
  }
}

function pipeline(name: string, onError: FailurePolicy, failures: (timer: Timer, attempt: number) => boolean, attempts: Map<string, number>): Pipeline {
  const p = new Pipeline(name)
  p.source<string>('in', () => new GeneratorSource<string>({ count: N, generate: (i) => ({ key: KEYS[i % KEYS.length]!, value: `v${i}`, timestamp: 1000 + i }) }), { codec: 'json', partitions: 1 })
    .process('report', counter(failures, attempts), { onError, codec: 'json' })
  return p
}

describe('a failing onTimer follows the stage\'s onError policy', () => {
  it('dead-letter: the failing timer goes to the dead-letter topic with its key, time and domain; the other timers fire and the run finishes', async () => {
    const d = dir()
    const attempts = new Map<string, number>()
    const p = pipeline('timer-dlq', policy.deadLetter(), (t) => t.key === 'k3', attempts)
    const { result } = await runToCompletion(p, { dataDir: d })
    expect(result.outcome).toBe('finished')
    const out = await readStageOutput<number>(p, d, 'report')
    expect(out.map((r) => [r.key, r.value]).sort()).toEqual(KEYS.filter((k) => k !== 'k3').map((k) => [k, N / KEYS.length]))
    const dead = await readDeadLetters(p, d, 'report')
    expect(dead).toHaveLength(1)
    const letter = dead[0]!.value
    expect(letter).toMatchObject({ stage: 'report', actor: 'report/0', attempts: 1, timer: { key: 'k3', time: DUE, domain: 'event-time' }, value: null, error: { code: 'WEIR_PROCESSING_FAILED' } })
    expect(letter.origin).toBeUndefined()
    expect(letter.key?.toString()).toBe('k3')
    expect(letter.error.cause?.message).toBe('timer of k3 fails (attempt 1)')
    // The failed attempt's state change was rolled back.
    const state = await readState(p, d, 'report')
    expect(state.keyed.reported).toEqual(Object.fromEntries(KEYS.filter((k) => k !== 'k3').map((k) => [k, true])))
    expect(result.stats['report/0']!.deadLettered).toBe(1)
  })

  it('retry: a timer that fails twice succeeds on its third attempt; one that keeps failing is dead-lettered after the last', async () => {
    const d = dir()
    const attempts = new Map<string, number>()
    const p = pipeline('timer-retry', policy.retry(3, 1, 'dead-letter'), (t, attempt) => (t.key === 'k1' && attempt < 3) || t.key === 'k2', attempts)
    await runToCompletion(p, { dataDir: d })
    expect(attempts.get('k1')).toBe(3)
    expect(attempts.get('k2')).toBe(4)
    const out = await readStageOutput<number>(p, d, 'report')
    // k1's output appears once: the two failed attempts' emits were discarded.
    expect(out.map((r) => [r.key, r.value]).sort()).toEqual(KEYS.filter((k) => k !== 'k2').map((k) => [k, N / KEYS.length]))
    const dead = await readDeadLetters(p, d, 'report')
    expect(dead.map((r) => [r.value.timer?.key, r.value.attempts])).toEqual([['k2', 4]])
  })

  it('fail-stop: the actor stops with an error naming the stage, the timer and its domain, committing nothing of it', async () => {
    const d = dir()
    const attempts = new Map<string, number>()
    const p = pipeline('timer-stop', policy.failStop(), (t) => t.key === 'k3', attempts)
    const run = await startEmbedded(p, { dataDir: d, epochIntervalMs: 20 })
    const err = await run.done.then(() => undefined, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'WEIR_ACTOR_FAILED', context: { actor: 'report/0', stage: 'report', timer: DUE, domain: 'event-time' } })
    expect((err as Error).message).toMatch(/report failed in onTimer \(event-time timer at 1000000\): timer of k3 fails/)
    expect(await readDeadLetters(p, d, 'report')).toEqual([])
    const out = await readStageOutput<number>(p, d, 'report')
    expect(out.map((r) => r.key)).not.toContain('k3')
  })
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
