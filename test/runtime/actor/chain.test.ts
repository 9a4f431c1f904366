/**
 * Operator chaining (runtime/api/chains.ts): which stages are chained, and that a chained
 * pipeline computes what the same pipeline unchained does — outputs, state, dead letters
 * and figures per stage — also when it crashes at every point of the checkpoint protocol.
 */
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ConfigError, Pipeline, Processor, policy, startEmbedded, type Context, type StreamRecord, type Timer } from '../../../index.ts'
import { GeneratorSource, JsonlFileSink } from '../../../processors/index.ts'
import { chainsOf } from '../../../runtime/api/chains.ts'
import { diffTopology, topologyOf } from '../../../runtime/topology-guard.ts'
import { pipelineShapeOf } from '../../../runtime/control/messages.ts'
import { createSavepoint, readDeadLetters, readStageOutput, readState, readTopic, removeDir, runToCompletion, tempDataDir, type CompletedRun } from '../../../testing/index.ts'
import type { CrashPoint } from '../../../runtime/faults.ts'

const dirs: string[] = []
function dir(): string {
  const d = tempDataDir('weir-chain-')
  dirs.push(d)
  return d
}
afterAll(() => dirs.forEach(removeDir))

const LINES = 600

/** Counts words per record key in keyed state and dead-letters lines that say POISON. */
class Split extends Processor<string, string> {
  private readonly lines = this.state.value<number>('lines')
  onRecord(r: StreamRecord<string>, ctx: Context<string>): void {
    this.lines.set((this.lines.get() ?? 0) + 1)
    if (r.value.includes('POISON')) throw new Error('poison line')
    for (const w of r.value.split(' ')) ctx.emit(w, w)
  }
}

/** A forward stage with an event-time timer per key: it emits once the watermark passed a record's time + 10. */
class Delay extends Processor<string, string> {
  private readonly pending = this.state.list<string>('pending')
  onRecord(r: StreamRecord<string>, ctx: Context<string>): void {
    this.pending.add(r.value)
    ctx.timers.registerEventTime(r.timestamp + 10)
  }
  override onTimer(t: Timer, ctx: Context<string>): void {
    // Which records a timer finds pending depends on when marks arrive: the words alone are deterministic.
    for (const w of this.pending.get()) ctx.emit(t.key, w)
    this.pending.clear()
  }
}

class Count extends Processor<string, number> {
  private readonly n = this.state.value<number>('n')
  onRecord(r: StreamRecord<string>, ctx: Context<number>): void {
    const n = (this.n.get() ?? 0) + 1
    this.n.set(n)
    ctx.emit(r.key, n)
  }
}

class Forward extends Processor<unknown, unknown> {
  onRecord(r: StreamRecord<unknown>, ctx: Context<unknown>): void {
    ctx.emit(r.key, r.value)
  }
}

const WORDS = ['ant', 'bee', 'cat', 'dog', 'eel']
function line(i: number, partition: number): string {
  if (i % 97 === 13) return 'POISON pill'
  return [WORDS[i % 5], WORDS[(i * 3 + partition) % 5], WORDS[(i * 7) % 5]].join(' ')
}

/** lines → split → delay (both chained to lines unless `chain` is false) → keyBy → count. */
function pipeline(chain: boolean, name = 'chain', ratePerSecond?: number): Pipeline {
  // Edge topics are kept: the comparison reads delay's output, which count would purge as it goes.
  const p = new Pipeline(name, { purgeConsumedRecords: false })
  p.source<string>('lines', () => new GeneratorSource<string>({
    count: LINES,
    ratePerSecond,
    generate: (i, partition) => ({ key: `l${i % 7}`, value: line(i, partition), timestamp: 1_000_000 + i * 4 }),
  }), { partitions: 2 })
    .process('split', Split, { onError: policy.deadLetter(), chain })
    .process('delay', Delay, { chain })
    .keyBy()
    .process('count', Count)
  return p
}

function sorted<T>(xs: T[]): T[] {
  return xs.map((x) => JSON.stringify(x)).sort().map((x) => JSON.parse(x) as T)
}

async function outcome(p: Pipeline, d: string): Promise<unknown> {
  const counts = (await readStageOutput<number>(p, d, 'count')).map((r) => [r.key, r.value])
  const delayed = (await readStageOutput<string>(p, d, 'delay')).map((r) => [r.key, r.value])
  const letters = (await readDeadLetters(p, d, 'split')).map((r) => [r.value.stage, r.value.error.message])
  const split = await readState(p, d, 'split')
  const delay = await readState(p, d, 'delay')
  return { counts: sorted(counts), delayed: sorted(delayed), letters: sorted(letters), split: split.keyed, delayPending: delay.keyed, delayTimers: delay.timers }
}

describe('chaining plan', () => {
  it('chains a forward edge that only the next stage reads, source included, and says so in the topology', () => {
    const p = pipeline(true)
    const plan = chainsOf(p)
    expect([...plan.upstreamOf]).toEqual([['split', 'lines'], ['delay', 'split']])
    expect(p.describe().stages.find((s) => s.name === 'delay')?.chainedTo).toBe('split')
    // The coordinator places, acks and finishes the heads of chains only.
    expect(pipelineShapeOf(p).stages.map((s) => s.name)).toEqual(['lines', 'count'])
  })

  it('does not chain a keyed edge, a stream with two readers, a stage serving views, a stage with checkpoint hooks, or a stage that opted out', () => {
    const p = new Pipeline('rules')
    const src = p.source<string>('src', () => new GeneratorSource<string>({ count: 1, generate: () => ({ key: 'k', value: 'v' }) }), { partitions: 2 })
    const a = src.process('a', Split)
    a.process('b1', Count)
    a.process('b2', Count)
    const viewed = src.keyBy().process('viewed', Count, { views: { n: 'n' } })
    viewed.process('after-view', Forward)
    const c = p.source<string>('src2', () => new GeneratorSource<string>({ count: 1, generate: () => ({ key: 'k', value: 'v' }) })).process('c', Split)
    c.to('file', () => new JsonlFileSink({ path: 'unused-{partition}.jsonl' }))
    p.source<string>('src3', () => new GeneratorSource<string>({ count: 1, generate: () => ({ key: 'k', value: 'v' }) })).process('out', Split, { chain: false }).process('after-out', Count)
    const plan = chainsOf(p)
    expect([...plan.upstreamOf]).toEqual([['a', 'src'], ['c', 'src2']])
  })

  it('reports chaining switched on or off as a topology change, and refuses a chain option that is not a boolean', () => {
    const differences = diffTopology(topologyOf(pipeline(false)), topologyOf(pipeline(true)))
    expect(differences.map((d) => d.text)).toEqual([
      "stage 'split' is now chained to 'lines' (runs in its actors; the topic between them is no longer read)",
      "stage 'delay' is now chained to 'split' (runs in its actors; the topic between them is no longer read)",
    ])
    expect(pipeline(true).fingerprint()).not.toBe(pipeline(false).fingerprint())
    const p = new Pipeline('bad')
    const src = p.source<string>('src', () => new GeneratorSource<string>({ count: 1, generate: () => ({ key: 'k', value: 'v' }) }))
    // @ts-expect-error: chain is a boolean
    expect(() => src.process('x', Split, { chain: 'no' })).toThrow(ConfigError)
    try {
      // @ts-expect-error: chain is a boolean
      src.process('y', Split, { chain: 1 })
    } catch (err) {
      expect((err as ConfigError).context.field).toBe('stages.y.chain')
    }
  })
})

describe('a chained pipeline', () => {
  let unchained: { p: Pipeline; d: string; run: CompletedRun }
  let chained: { p: Pipeline; d: string; run: CompletedRun }

  it('computes what the unchained pipeline computes: outputs, state, timers and dead letters', async () => {
    const pu = pipeline(false)
    const du = dir()
    unchained = { p: pu, d: du, run: await runToCompletion(pu, { dataDir: du, actorConfig: { maxBatch: 50 } }) }
    const pc = pipeline(true)
    const dc = dir()
    chained = { p: pc, d: dc, run: await runToCompletion(pc, { dataDir: dc, actorConfig: { maxBatch: 50 } }) }
    const expected = await outcome(pu, du)
    expect((expected as { counts: unknown[] }).counts.length).toBeGreaterThan(3 * LINES)
    expect(await outcome(pc, dc)).toEqual(expected)
  })

  it('writes no topic between chained stages, and writes it when they opt out', async () => {
    const lines = async (c: { p: Pipeline; d: string }): Promise<number> => (await readTopic(c.d, c.p.outputTopic(c.p.stage('lines')!))).length
    const split = async (c: { p: Pipeline; d: string }): Promise<number> => (await readTopic(c.d, c.p.outputTopic(c.p.stage('split')!))).length
    expect(await lines(chained)).toBe(0)
    expect(await split(chained)).toBe(0)
    expect(await lines(unchained)).toBeGreaterThanOrEqual(2 * LINES)
    expect(await split(unchained)).toBeGreaterThan(2 * LINES)
  })

  it('keeps figures and dead letters per stage', async () => {
    const stats = chained.run.result.stats
    const poison = [0, 1].map(() => Array.from({ length: LINES }, (_, i) => i).filter((i) => i % 97 === 13).length).reduce((a, b) => a + b, 0)
    for (const p of [0, 1]) {
      expect(stats[`split/${p}`]!.recordsIn).toBe(LINES)
      expect(stats[`lines/${p}`]!.recordsOut).toBe(LINES)
      expect(stats[`delay/${p}`]!.recordsIn).toBe(stats[`split/${p}`]!.recordsOut)
      expect(stats[`delay/${p}`]!.lastEpoch).toBeGreaterThan(0)
    }
    expect(stats['split/0']!.deadLettered + stats['split/1']!.deadLettered).toBe(poison)
    expect(stats['delay/0']!.deadLettered).toBe(0)
    const letters = await readDeadLetters(chained.p, chained.d, 'split')
    expect(letters).toHaveLength(poison)
    // A chained record was never in a topic: its origin names the stream it came on, at offset -1.
    expect(letters[0]!.value.origin).toMatchObject({ topic: chained.p.outputTopic(chained.p.stage('lines')!), offset: -1 })
    expect(letters[0]!.value.stage).toBe('split')
  })

  const points: CrashPoint[] = ['mid-batch', 'before-commit', 'after-pipe-commit', 'after-local-write', 'source-poll']
  it.each(points)('computes the same after crashes at %s (each chained stage recovers its state with the head\'s positions)', async (point) => {
    const p = pipeline(true, `chain-crash`)
    const d = dir()
    const run = await runToCompletion(p, { dataDir: d, actorConfig: { maxBatch: 50 }, epochIntervalMs: 20, crashes: [{ point, hit: 3 }, { point, hit: 7 }] })
    expect(run.crashed.length).toBeGreaterThan(0)
    expect(await outcome(p, d)).toEqual(await outcome(unchained.p, unchained.d))
  })

  it('is saved by stage and state name, and restored into the pipeline chained or not', async () => {
    const sp = join(dir(), 'savepoint')
    const manifest = await createSavepoint(chained.p, { dataDir: chained.d, target: sp })
    expect(Object.keys(manifest.stages).sort()).toEqual(['count', 'delay', 'lines', 'split'])
    const saved = await readState(chained.p, chained.d, 'split')
    expect(Object.keys(saved.keyed.lines ?? {}).length).toBe(7)
    for (const chain of [true, false]) {
      const q = pipeline(chain)
      const d = dir()
      await runToCompletion(q, { dataDir: d, fromSavepoint: { dir: sp } })
      expect((await readState(q, d, 'split')).keyed).toEqual(saved.keyed)
      expect((await readState(q, d, 'count')).keyed).toEqual((await readState(chained.p, chained.d, 'count')).keyed)
    }
  })

  it('is saved while it runs (a live savepoint freezes the chain with its head) and restores to the same final state', async () => {
    const d = dir()
    const running = await startEmbedded(pipeline(true, 'chain', 400), { dataDir: d, epochIntervalMs: 50, savepointDir: join(d, 'savepoints') })
    await new Promise((r) => setTimeout(r, 700))
    const live = await running.savepoint('mid')
    await running.stop()
    expect(Object.keys(live.manifest.stages).sort()).toEqual(['count', 'delay', 'lines', 'split'])
    expect(live.manifest.stages.split!.actors).toHaveLength(2)
    const q = pipeline(true)
    const d2 = dir()
    await runToCompletion(q, { dataDir: d2, fromSavepoint: { dir: live.dir } })
    expect((await readState(q, d2, 'split')).keyed).toEqual((await readState(chained.p, chained.d, 'split')).keyed)
    expect((await readState(q, d2, 'count')).keyed).toEqual((await readState(chained.p, chained.d, 'count')).keyed)
  })
})

/** One object, changed and emitted again for each record: a sender that reuses what it emitted. */
class Reuse extends Processor<number, Record<string, unknown> | null | undefined> {
  private readonly out: Record<string, unknown> = { n: 0, tags: [] as string[] }
  onRecord(r: StreamRecord<number>, ctx: Context<Record<string, unknown> | null | undefined>): void {
    this.out.n = r.value
    ;(this.out.tags as string[]).push(`t${r.value}`)
    this.out.at = new Date(1_700_000_000_000 + r.value)
    this.out.bytes = new Uint8Array([r.value % 256, 7])
    ctx.emit(r.key, this.out)
    // After the emit: none of this may reach what was emitted.
    this.out.n = -1
    ;(this.out.tags as string[]).push('after')
    ;(this.out.bytes as Uint8Array)[1] = 99
    if (r.value % 10 === 0) ctx.emit(r.key, undefined)
    if (r.value % 10 === 1) ctx.emit(r.key, null)
  }
}

/** Changes what it receives before passing it on; fails on every 13th value (dead-lettered). */
class Mutate extends Processor<Record<string, unknown> | null | undefined, unknown> {
  onRecord(r: StreamRecord<Record<string, unknown> | null | undefined>, ctx: Context<unknown>): void {
    const v = r.value
    if (v === null || v === undefined) return ctx.emit(r.key, 'nothing')
    if ((v.n as number) % 13 === 0) {
      v.n = 'changed before failing'
      throw new Error('thirteen')
    }
    ;(v.tags as string[]).push('seen')
    ctx.emit(r.key, { n: v.n, tags: (v.tags as string[]).length, at: v.at, bytes: v.bytes, last: (v.tags as string[]).at(-2) })
  }
}

describe('a chained edge hands values over', () => {
  function handing(chain: boolean): Pipeline {
    const p = new Pipeline('handing', { purgeConsumedRecords: false })
    p.source<number>('numbers', () => new GeneratorSource<number>({ count: 300, generate: (i) => ({ key: `k${i % 3}`, value: i, timestamp: 1_000 + i }) }), { partitions: 1 })
      .process('reuse', Reuse, { chain })
      .process('mutate', Mutate, { onError: policy.deadLetter(), chain })
      .keyBy()
      .process('out', Forward)
    return p
  }

  it('as copies: the sender\'s later changes and the receiver\'s own do not cross, and what arrives equals what a topic gives back', async () => {
    const results = []
    for (const chain of [false, true]) {
      const p = handing(chain)
      const d = dir()
      await runToCompletion(p, { dataDir: d, actorConfig: { maxBatch: 40 } })
      const out = (await readStageOutput<unknown>(p, d, 'out')).map((r) => [r.key, r.value])
      const letters = (await readDeadLetters(p, d, 'mutate')).map((r) => [r.key, r.value.error.message])
      results.push({ chained: chainsOf(p).upstreamOf.get('mutate') === 'reuse', out: sorted(out), raw: out, letters: sorted(letters) })
    }
    expect(results.map((r) => r.chained)).toEqual([false, true])
    expect(results[1]!.out).toEqual(results[0]!.out)
    expect(results[1]!.letters).toEqual(results[0]!.letters)
    const out = results[1]!.raw as Array<[string, unknown]>
    // 300 records, 30 undefined (mutate reads null), 30 null, 300 objects of which 24 fail.
    expect(out.filter(([, v]) => v === 'nothing')).toHaveLength(60)
    const objects = out.map(([, v]) => v).filter((v): v is { n: number; tags: number; at: Date; bytes: Buffer; last: string } => typeof v === 'object' && v !== null)
    expect(objects).toHaveLength(300 - 24)
    for (const o of objects) {
      expect(o.n).toBeGreaterThanOrEqual(0)
      expect(o.last).toBe(`t${o.n}`)
      expect(o.at).toEqual(new Date(1_700_000_000_000 + o.n))
      expect([...o.bytes]).toEqual([o.n % 256, 7])
    }
    expect(results[1]!.letters).toHaveLength(24)
  })

  it('and a dead letter of a handed record holds its bytes as the failing stage had it', async () => {
    const p = handing(true)
    const d = dir()
    await runToCompletion(p, { dataDir: d })
    const letters = await readDeadLetters(p, d, 'mutate')
    expect(letters).toHaveLength(24)
    for (const l of letters) {
      expect(l.value.origin).toMatchObject({ topic: p.outputTopic(p.stage('reuse')!), offset: -1 })
      expect(l.value.value).not.toBeNull()
    }
  })
})
