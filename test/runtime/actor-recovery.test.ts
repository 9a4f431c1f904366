/**
 * Actor recovery cases beyond the property test: resuming a stopped run, rebuilding lost
 * local state from the changelog, fencing a zombie, timers across a crash, and refusing
 * a data dir whose topology changed.
 */
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, Source, startEmbedded, type Context, type SourceContext, type StreamRecord, type Timer } from '../../index.ts'
import { GeneratorSource } from '../../processors/index.ts'
import { EmbeddedPipe } from '../../runtime/pipe/embedded/embedded-pipe.ts'
import { naming } from '../../runtime/naming.ts'
import { multisetDiff, readStageOutput, readState, removeDir, runToCompletion, tempDataDir } from '../../testing/index.ts'

const dirs: string[] = []
function dir(): string {
  const d = tempDataDir('weir-actor-')
  dirs.push(d)
  return d
}

class Count extends Processor<number, number> {
  private readonly count = this.state.value<number>('count')
  onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    const n = (this.count.get() ?? 0) + 1
    this.count.set(n)
    ctx.emit(r.key, n)
  }
}

function counting(records: number, ratePerSecond?: number): Pipeline {
  const p = new Pipeline('counting')
  p.source<number>('numbers', () => new GeneratorSource<number>({ count: records, ratePerSecond, generate: (i, part) => ({ key: `k${(i * 7 + part) % 97}`, value: i }) }), { partitions: 2 })
    .keyBy(3)
    .process('count', Count)
  return p
}

async function outputOf(p: Pipeline, d: string): Promise<unknown[]> {
  return (await readStageOutput(p, d, 'count')).map((r) => [r.key, r.value])
}

describe('actor recovery', () => {
  it('a stopped run resumes on the same data dir without reprocessing anything', async () => {
    const ref = dir()
    await runToCompletion(counting(3000), { dataDir: ref })
    const d = dir()
    const run = await startEmbedded(counting(3000, 4000), { dataDir: d, epochIntervalMs: 50 })
    await new Promise((r) => setTimeout(r, 300))
    const stopped = await run.stop()
    expect(stopped.outcome).toBe('stopped')
    const partial = await outputOf(counting(3000), d)
    expect(partial.length).toBeGreaterThan(0)
    expect(partial.length).toBeLessThan(3000)
    await runToCompletion(counting(3000), { dataDir: d })
    expect(multisetDiff(await outputOf(counting(3000), ref), await outputOf(counting(3000), d))).toEqual({ missing: [], extra: [] })
  })

  it('a cache far smaller than the state, with early barriers when it fills, gives the same results', async () => {
    const ref = dir()
    await runToCompletion(counting(5000), { dataDir: ref })
    const d = dir()
    // 20 cached entries for ~97 keys, a barrier every 7 dirty entries: constant eviction and reloads.
    await runToCompletion(counting(5000), { dataDir: d, actorConfig: { cacheEntries: 20, maxDirty: 7, maxBatch: 50 }, epochIntervalMs: 1000 })
    expect(multisetDiff(await outputOf(counting(5000), ref), await outputOf(counting(5000), d))).toEqual({ missing: [], extra: [] })
    expect(await readState(counting(5000), d, 'count')).toEqual(await readState(counting(5000), ref, 'count'))
  })

  it('lost local state is rebuilt from the changelog (a new machine)', async () => {
    const d = dir()
    const p = counting(2000)
    await runToCompletion(p, { dataDir: d })
    const before = await readState(p, d, 'count')
    rmSync(join(d, 'state', 'count'), { recursive: true, force: true })
    const again = await runToCompletion(counting(2000), { dataDir: d })
    expect(Object.values(again.result.stats).filter((s) => s.replayedChangelogRecords > 0)).toHaveLength(3)
    expect(await readState(p, d, 'count')).toEqual(before)
  })

  it('a zombie actor is fenced: once a newer instance exists nothing it writes lands', async () => {
    const d = dir()
    const pipe = await EmbeddedPipe.open(d)
    const p = counting(100_000, 20_000)
    const run = await startEmbedded(p, { dataDir: d, pipe, epochIntervalMs: 30 })
    await new Promise((r) => setTimeout(r, 200))
    const topic = naming.output('counting', 'count')
    // A newer instance of count/0 starts (as after a move); the running one is now a zombie.
    await pipe.producer(naming.transactionalId('counting', 'count', 0))
    const fencedAt = await pipe.endOffset(topic, 0)
    // The other actor goes on committing (waited for, not timed: a loaded machine is slow),
    // while nothing the zombie writes lands.
    const p1 = await pipe.endOffset(topic, 1)
    const until = Date.now() + 30_000
    await new Promise((r) => setTimeout(r, 300))
    while ((await pipe.endOffset(topic, 1)) <= p1 && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
    expect(await pipe.endOffset(topic, 1)).toBeGreaterThan(p1)
    expect(await pipe.endOffset(topic, 0)).toBe(fencedAt)
    await run.stop()
    await pipe.close()
  })

  it('processing-time timers fire once, also when the run crashed after registering them', async () => {
    class Remind extends Processor<number, string> {
      onRecord(r: StreamRecord<number>, ctx: Context<string>): void {
        ctx.timers.registerProcessingTime(Date.now() + 150)
      }
      override onTimer(t: Timer, ctx: Context<string>): void {
        ctx.emit(t.key, `fired:${t.key}`)
      }
    }
    const make = (): Pipeline => {
      const p = new Pipeline('timers')
      p.source<number>('in', () => new GeneratorSource<number>({ count: 20, generate: (i) => ({ key: `k${i % 4}`, value: i }) }))
        .process('remind', Remind)
      return p
    }
    const d = dir()
    // Crash right after the registration committed, before any timer was due.
    await runToCompletion(make(), { dataDir: d, crashes: [{ point: 'after-pipe-commit', hit: 3 }], epochIntervalMs: 20 })
    const out = await readStageOutput<string>(make(), d, 'remind')
    // Each key registered timers for several instants; each (key, instant) fires exactly once.
    const fired = out.map((r) => r.value)
    expect(new Set(fired)).toEqual(new Set(['fired:k0', 'fired:k1', 'fired:k2', 'fired:k3']))
    const state = await readState(make(), d, 'remind')
    expect(Object.values(state.timers).reduce((a, b) => a + b, 0)).toBe(0)
  })

  it('a finished source is not polled again when the pipeline is rerun', async () => {
    let polls = 0
    class Once extends Source<number> {
      private readonly sent = this.state.actorValue<number>('sent')
      poll(ctx: SourceContext<number>): 'more' | 'done' {
        polls++
        const n = this.sent.get() ?? 0
        if (n >= 5) return 'done'
        ctx.emit('k', n)
        this.sent.set(n + 1)
        return 'more'
      }
    }
    const make = (): Pipeline => {
      const p = new Pipeline('once')
      p.source<number>('src', Once).process('count', Count)
      return p
    }
    const d = dir()
    await runToCompletion(make(), { dataDir: d })
    const first = polls
    await runToCompletion(make(), { dataDir: d })
    expect(polls).toBe(first)
    expect(await readStageOutput(make(), d, 'count')).toHaveLength(5)
  })

  it('edge records every reading stage has committed past are purged; outputs nobody reads are kept', async () => {
    const d = dir()
    const pipe = await EmbeddedPipe.open(d)
    const run = await startEmbedded(counting(4000, 8000), { dataDir: d, pipe, epochIntervalMs: 10 })
    await run.done
    const edge = naming.output('counting', 'numbers')
    const starts = await Promise.all([0, 1, 2].map((p) => pipe.startOffset(edge, p)))
    expect(starts.some((s) => s > 0)).toBe(true)
    for (const [p, s] of starts.entries()) expect(s).toBeLessThanOrEqual((await pipe.committedOffset(naming.group('counting', 'count'), edge, p)) ?? 0)
    const out = naming.output('counting', 'count')
    expect(await Promise.all([0, 1, 2].map((p) => pipe.startOffset(out, p)))).toEqual([0, 0, 0])
    await pipe.close()
  })

  it('a stage with side outputs has its main output purged too (the side output is not a reader of it)', async () => {
    class Classify extends Processor<number, number> {
      onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
        if (r.value % 2 === 0) ctx.emit(r.key, r.value)
        else ctx.emitTo('odd', r.key, r.value)
      }
    }
    class Drop extends Processor<number, never> {
      onRecord(): void {}
    }
    const p = new Pipeline('sides')
    const classified = p.source<number>('numbers', () => new GeneratorSource<number>({ count: 4000, ratePerSecond: 8000, generate: (i, part) => ({ key: `k${(i * 7 + part) % 97}`, value: i }) }), { partitions: 2 })
      .process<number>('classify', Classify, { sideOutputs: ['odd'] })
    // Not chained to classify: the main output must be a topic for it to be purged.
    classified.process('evens', Drop, { chain: false })
    classified.sideOutput<number>('odd').process('odds', Drop)
    const d = dir()
    const pipe = await EmbeddedPipe.open(d)
    const run = await startEmbedded(p, { dataDir: d, pipe, epochIntervalMs: 10 })
    await run.done
    const main = naming.output('sides', 'classify')
    const side = naming.side('sides', 'classify', 'odd')
    const mainStarts = await Promise.all([0, 1].map((q) => pipe.startOffset(main, q)))
    const sideStarts = await Promise.all([0, 1].map((q) => pipe.startOffset(side, q)))
    await pipe.close()
    expect(mainStarts.some((s) => s > 0), `main output start offsets ${mainStarts.join(', ')}`).toBe(true)
    expect(sideStarts.some((s) => s > 0), `side output start offsets ${sideStarts.join(', ')}`).toBe(true)
  })

  it('a pipeline whose partitioning changed is refused and the data dir is left untouched', async () => {
    const d = dir()
    await runToCompletion(counting(100), { dataDir: d })
    const snapshot = (): Array<[string, number]> => readdirSync(d, { recursive: true }).map(String).sort().map((f) => [f, statSync(join(d, f)).mtimeMs])
    const before = snapshot()
    const changed = new Pipeline('counting')
    changed.source<number>('numbers', () => new GeneratorSource<number>({ count: 100, generate: (i) => ({ key: `k${i}`, value: i }) }), { partitions: 2 }).keyBy(5).process('count', Count)
    await expect(startEmbedded(changed, { dataDir: d })).rejects.toMatchObject({ code: 'WEIR_TOPOLOGY_CHANGED', context: { field: 'stages.numbers.outputPartitions' } })
    expect(snapshot()).toEqual(before)
    expect(existsSync(join(d, 'topology.json'))).toBe(true)
  })
})

afterAll(() => {
  for (const d of dirs) removeDir(d)
})
