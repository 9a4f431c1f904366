/**
 * Keyed state in a source (SourceContext.loadKeys / withKey): a source that remembers the
 * ids it emitted per key, across a restart, with timers firing under the key; using a key
 * whose state was not loaded fails naming the call to make; ctx.reportStats reaches the
 * progress channel.
 */
import pino from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { localBus, Pipeline, Source, startEmbedded, type Context, type SourceContext, type SourceStatus, type Timer } from '../../../index.ts'
import { actorProgress, progressSubjects, type ActorProgress } from '../../../runtime/control/progress.ts'
import { readStageOutput, removeDir, tempDataDir } from '../../../testing/index.ts'

/** Emits each id of `ids` the first time it is seen (keyed state per id); a timer under the id emits `forget:<id>`. */
class Dedup extends Source<string> {
  private readonly seen = this.state.value<number>('seen')
  private readonly next = this.state.actorValue<number>('next')
  constructor(private readonly ids: string[], private readonly loadFirst = true) {
    super()
  }
  async poll(ctx: SourceContext<string>): Promise<SourceStatus> {
    const i = this.next.get() ?? 0
    if (i >= this.ids.length) return 'done'
    const batch = this.ids.slice(i, i + 3)
    if (this.loadFirst) await ctx.loadKeys(batch)
    for (const id of batch) {
      ctx.withKey(id, () => {
        expect(ctx.key).toBe(id)
        const n = this.seen.get()
        this.seen.set((n ?? 0) + 1)
        if (n === undefined) {
          ctx.emit(id, `new:${id}`)
          ctx.timers.registerProcessingTime(Date.now() + 1)
        }
      })
    }
    expect(ctx.key).toBeNull()
    this.next.set(i + batch.length)
    ctx.reportStats({ polled: i + batch.length })
    return 'more'
  }
  override onTimer(timer: Timer, ctx: Context<string>): void {
    ctx.emit(timer.key, `timer:${timer.key}:${this.seen.get()}`)
  }
}

describe('keyed state in a source', () => {
  const dirs: string[] = []
  afterAll(() => dirs.forEach(removeDir))

  it('withKey scopes state and timers to the key, and the state is committed', async () => {
    const dir = tempDataDir('weir-source-keys-')
    dirs.push(dir)
    const first = new Pipeline('source-keys')
    first.source('ids', () => new Dedup(['a', 'b', 'a', 'c', 'b', 'a']))
    await (await startEmbedded(first, { dataDir: dir, epochIntervalMs: 20, log: pino({ level: 'silent' }) })).done
    const out = (await readStageOutput<string>(first, dir, 'ids')).map((r) => r.value)
    expect(out.filter((v) => v.startsWith('new:')).sort()).toEqual(['new:a', 'new:b', 'new:c'])
    // A timer fires under its key, seeing that key's count (a source ends without waiting for processing-time timers, as in Flink: the last may not fire).
    const fired = out.filter((v) => v.startsWith('timer:')).map((v) => v.split(':'))
    expect(fired.length).toBeGreaterThan(0)
    for (const [, key, count] of fired) expect(Number(count), key).toBeGreaterThanOrEqual(1)
    expect(fired.map(([, key]) => key).every((k) => ['a', 'b', 'c'].includes(k!))).toBe(true)
    const { readCommittedState } = await import('../../../testing/index.ts')
    const state = await readCommittedState(first, dir, 'ids')
    expect(state.keyed.seen).toEqual({ a: 3, b: 2, c: 1 })
  })

  it('withKey before the key was loaded fails naming loadKeys', async () => {
    const dir = tempDataDir('weir-source-keys-')
    dirs.push(dir)
    const p = new Pipeline('source-keys-unloaded')
    p.source('ids', () => new Dedup(['a'], false), { onError: { kind: 'fail-stop' } } as never)
    const run = await startEmbedded(p, { dataDir: dir, log: pino({ level: 'silent' }) })
    await expect(run.done).rejects.toThrow(/ctx.withKey\("a"\) before its state was loaded: call await ctx.loadKeys/)
  })

  it('ctx.reportStats reaches the progress events under stats', async () => {
    const dir = tempDataDir('weir-source-keys-')
    dirs.push(dir)
    const bus = localBus()
    const cluster = 'stats'
    const events: ActorProgress[] = []
    bus.subscribe(progressSubjects.allProgress(cluster), (m) => {
      const e = actorProgress.safeParse(m)
      if (e.success) events.push(e.data)
    })
    const p = new Pipeline('source-stats')
    p.source('ids', () => new Dedup(Array.from({ length: 30 }, (_, i) => `k${i}`)))
    await (await startEmbedded(p, { dataDir: dir, bus, cluster, progressIntervalMs: 50, log: pino({ level: 'silent' }) })).done
    expect(events.map((e) => e.stats?.polled).filter((n) => n !== undefined).at(-1)).toBe(30)
  })
})
