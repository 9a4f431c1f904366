/**
 * Two-input stages (Stream.connect, Stream.union): the stage reads every record of each
 * input once, knows which input it came from (`record.input`), is exactly-once across
 * crashes, decodes each input with its own codec, dead-letters a failing record of either
 * input with its own origin, and its watermark is the minimum of its inputs'.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { ConnectedStreams, Pipeline, Processor, Stream, type Context, type LifecycleContext, type StreamRecord, type Timer } from '../../../index.ts'
import { GeneratorSource } from '../../../processors/index.ts'
import { partitionForKey } from '../../../runtime/partitioner.ts'
import { keyBytes } from '../../../runtime/record-keys.ts'
import { startEmbedded } from '../../../runner/embedded-runner.ts'
import { createSavepoint, readCommittedState, readDeadLetters, readStageOutput, removeDir, runToCompletion, tempDataDir } from '../../../testing/index.ts'

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))
function dir(): string {
  const d = tempDataDir('weir-connect-')
  dirs.push(d)
  return d
}

interface Click {
  user: string
  seq: number
  from: number
}
interface Profile {
  name: string
  version: number
  from: number
}

interface Seen {
  input: number
  /** `click:<from>:<seq>` or `profile:<from>:<version>`. */
  id: string
  key: string | null
  partition: number
}

/** Passes on which input each record came from, with the partition that read it. */
class WhichInput extends Processor<Click | Profile, Seen> {
  private partition = -1
  override open(ctx: LifecycleContext): void {
    this.partition = ctx.partition
  }
  onRecord(r: StreamRecord<Click | Profile>, ctx: Context<Seen>): void {
    const v = r.value
    if ('user' in v && v.seq === 13) throw new Error('click 13 is refused')
    const id = 'user' in v ? `click:${v.from}:${v.seq}` : `profile:${v.from}:${v.version}`
    ctx.emit(r.key, { input: r.input, id, key: r.key, partition: this.partition })
  }
}

class Pass extends Processor<unknown, unknown> {
  onRecord(r: StreamRecord<unknown>, ctx: Context<unknown>): void {
    ctx.emit(r.key, r.value)
  }
}

const CLICKS = 150
const PROFILES = 40
const USERS = 9

function clicksAndProfiles(name: string): Pipeline {
  const p = new Pipeline(name)
  const clicks = p.source('clicks', () => new GeneratorSource<Click>({ count: CLICKS, generate: (i, from) => ({ key: `u${i % USERS}`, value: { user: `u${i % USERS}`, seq: i, from } }) }), { partitions: 2 })
  // Another codec on the second input: the stage decodes each input with its own.
  const profiles = p.source('profiles', () => new GeneratorSource<Profile>({ count: PROFILES, generate: (i, from) => ({ key: `u${(i * 5) % USERS}`, value: { name: `u${(i * 5) % USERS}`, version: i, from } }) }), { partitions: 1, codec: 'json' })
  clicks.keyBy(3).connect(profiles.keyBy(3)).process('which', WhichInput)
  return p
}

describe('Stream.connect', () => {
  it('wires one stage with both inputs in order, each keyed to the same count', () => {
    const p = clicksAndProfiles('connect-shape')
    expect(p.stage('which')).toMatchObject({ kind: 'processor', inputs: ['clicks', 'profiles'], parallelism: 3 })
    expect(p.stage('clicks')).toMatchObject({ keyedOutput: true, outputPartitions: 3 })
    expect(p.stage('profiles')).toMatchObject({ keyedOutput: true, outputPartitions: 3 })
    expect(p.isKeyPartitioned(p.stage('which')!)).toBe(true)
    const described = p.describe().stages.find((s) => s.name === 'which')!
    expect(described.inputs).toEqual(['clicks', 'profiles'])
    // The inputs' order is part of the topology: swapping them changes what `input` means.
    const swapped = new Pipeline('connect-shape')
    const clicks = swapped.source('clicks', () => new GeneratorSource<Click>({ count: 1, generate: () => undefined }), { partitions: 2 })
    const profiles = swapped.source('profiles', () => new GeneratorSource<Profile>({ count: 1, generate: () => undefined }), { partitions: 1, codec: 'json' })
    profiles.keyBy(3).connect(clicks.keyBy(3)).process('which', WhichInput)
    expect(swapped.fingerprint()).not.toBe(p.fingerprint())
  })

  it('refuses inputs of different partition counts, the same stream twice, and a stream of another pipeline', () => {
    const p = new Pipeline('connect-refused')
    const a = p.source('a', () => new GeneratorSource<number>({ count: 1, generate: (i) => ({ key: null, value: i }) }), { partitions: 2 })
    const b = p.source('b', () => new GeneratorSource<number>({ count: 1, generate: (i) => ({ key: null, value: i }) }), { partitions: 3 })
    expect(() => a.connect(b).process('ab', Pass)).toThrow(/stages\.ab\.inputs: inputs have different partition counts \(2, 3\); keyBy them to the same count/)
    expect(() => a.connect(a).process('aa', Pass)).toThrow(/stages\.aa\.inputs: inputs 0 and 1 are the same stream \(of stage 'a'\)/)
    expect(() => a.keyBy(4).connect(a.keyBy(4)).process('aa4', Pass)).toThrow(/inputs 0 and 1 are the same stream/)
    expect(() => a.union(b.keyBy(2), a).process('aba', Pass)).toThrow(/inputs 0 and 2 are the same stream/)
    const other = new Pipeline('other').source('c', () => new GeneratorSource<number>({ count: 1, generate: (i) => ({ key: null, value: i }) }), { partitions: 2 })
    expect(() => a.connect(other)).toThrow(/stages\.a\.connect: connect takes a stream of the same pipeline \('connect-refused'\)/)
    expect(() => a.union()).toThrow(/union takes at least one other stream/)
    // No refused stage stays behind.
    expect(p.topology.map((s) => s.name)).toEqual(['a', 'b'])
  })

  it('two partitionings of one stream are two inputs with a topic each, whichever comes first', () => {
    for (const keyedFirst of [true, false]) {
      const p = new Pipeline('connect-self')
      const s = p.source('s', () => new GeneratorSource<Click>({ count: 1, generate: () => undefined }), { partitions: 2 })
      const byUser = s.keyBy((c) => c.user)
      const connected: ConnectedStreams<Click, Click> = keyedFirst ? byUser.connect(s) : s.connect(byUser)
      connected.process('both', Pass)
      expect(p.stage('s')!.keyedOutput).toBe(false)
      expect(p.stage('both')!.inputs).toEqual(keyedFirst ? ['s.keyBy.1', 's'] : ['s', 's.keyBy.1'])
      // A keyed stage is listed before the stage that reads it (the topology is in topological order).
      const names = p.topology.map((x) => x.name)
      expect(names.indexOf('s.keyBy.1')).toBeLessThan(names.indexOf('both'))
    }
  })

  it('each record reaches the stage once, from the input it was written to, exactly-once across crashes; a failing one is dead-lettered with its own origin', async () => {
    const d = dir()
    const p = clicksAndProfiles('connect-run')
    const run = await runToCompletion(p, {
      dataDir: d,
      crashes: [
        { point: 'before-commit', hit: 2 },
        { point: 'after-pipe-commit', hit: 1, afterRecords: { stage: 'which', records: 60 } },
        { point: 'mid-batch', hit: 3 },
      ],
    })
    expect(run.crashed).toEqual(run.planned)
    const seen = await readStageOutput<Seen>(p, d, 'which')
    const expected = [
      ...[0, 1].flatMap((from) => Array.from({ length: CLICKS }, (_, i) => i).filter((i) => i !== 13).map((i) => ({ input: 0, id: `click:${from}:${i}`, key: `u${i % USERS}` }))),
      ...Array.from({ length: PROFILES }, (_, i) => ({ input: 1, id: `profile:0:${i}`, key: `u${(i * 5) % USERS}` })),
    ]
    const byId = (a: { id: string }, b: { id: string }): number => a.id.localeCompare(b.id)
    expect(seen.map((r) => ({ input: r.value.input, id: r.value.id, key: r.value.key })).sort(byId)).toEqual(expected.sort(byId))
    // Keyed on both sides: a user's clicks and profiles meet in one actor.
    for (const r of seen) expect(r.value.partition).toBe(partitionForKey(keyBytes(r.value.key!), 3))
    const dead = await readDeadLetters(p, d, 'which')
    expect(dead.map((x) => x.value.origin!.topic)).toEqual([p.outputTopic(p.stage('clicks')!), p.outputTopic(p.stage('clicks')!)])
    expect(dead.every((x) => x.value.error.message.includes('click 13 is refused'))).toBe(true)
  }, 180_000)
})

describe('Stream.union', () => {
  it('merges three streams into one stage; record.input is the stream index', async () => {
    const d = dir()
    const p = new Pipeline('union-run')
    const source = (name: string, base: number): Stream<number> =>
      p.source(name, () => new GeneratorSource<number>({ count: 30, generate: (i) => ({ key: `k${i % 4}`, value: base + i }) }), { partitions: 2 })
    const a = source('a', 0)
    a.union(source('b', 1000), source('c', 2000)).process('merged', class extends Processor<number, [number, number]> {
      onRecord(r: StreamRecord<number>, ctx: Context<[number, number]>): void {
        ctx.emit(r.key, [r.input, r.value])
      }
    })
    expect(p.stage('merged')!.inputs).toEqual(['a', 'b', 'c'])
    await runToCompletion(p, { dataDir: d })
    const out = (await readStageOutput<[number, number]>(p, d, 'merged')).map((r) => r.value)
    expect(out).toHaveLength(3 * 2 * 30)
    for (const [input, value] of out) expect(input).toBe(Math.floor(value / 1000))
  }, 60_000)
})

interface Observed {
  input: number
  timestamp: number
  /** ctx.watermark when the record was processed (null: -Infinity). */
  watermark: number | null
  late: boolean
}

/** Reports each record with the watermark it met, and at event time 1000 how many records of input 1 had come. */
class WatchWatermark extends Processor<number, Observed | { timerAt: number; rightSeen: number }> {
  private readonly rightSeen = this.state.value<number>('right-seen')
  onRecord(r: StreamRecord<number>, ctx: Context<Observed | { timerAt: number; rightSeen: number }>): void {
    if (r.input === 1) this.rightSeen.set((this.rightSeen.get() ?? 0) + 1)
    ctx.timers.registerEventTime(1000)
    const wm = ctx.watermark
    ctx.emit(r.key, { input: r.input, timestamp: r.timestamp, watermark: Number.isFinite(wm) ? wm : null, late: r.timestamp <= wm })
  }
  override onTimer(t: Timer, ctx: Context<Observed | { timerAt: number; rightSeen: number }>): void {
    ctx.emit(t.key, { timerAt: t.time, rightSeen: this.rightSeen.get() ?? 0 })
  }
}

describe('the watermark of a two-input stage', () => {
  it('is the minimum of both inputs: a slow input holds it back, so none of its records is late and an event-time timer waits for it', async () => {
    const d = dir()
    const p = new Pipeline('connect-watermark')
    const never = { idleTimeoutMs: 0 }
    // Input 0 races ahead to event time 1199; input 1 brings 10 records at times 0..90 over ~2 s.
    const fast = p.source('fast', () => new GeneratorSource<number>({ count: 200, generate: (i) => ({ key: 'k', value: i, timestamp: 1000 + i }) }), { partitions: 1, watermarks: never })
    const slow = p.source('slow', () => new GeneratorSource<number>({ count: 10, ratePerSecond: 5, generate: (i) => ({ key: 'k', value: i, timestamp: i * 10 }) }), { partitions: 1, watermarks: never })
    fast.connect(slow).process('watch', WatchWatermark)
    await runToCompletion(p, { dataDir: d })
    const out = (await readStageOutput<Observed | { timerAt: number; rightSeen: number }>(p, d, 'watch')).sort((a, b) => a.offset - b.offset).map((r) => r.value)
    const records = out.filter((o): o is Observed => 'input' in o)
    expect(records.filter((o) => o.input === 0)).toHaveLength(200)
    expect(records.filter((o) => o.input === 1)).toHaveLength(10)
    expect(records.filter((o) => o.late)).toEqual([])
    // While input 1 was still coming, the watermark stayed below its newest time (at most 90 - 1).
    const lastSlow = records.map((o) => o.input).lastIndexOf(1)
    for (const o of records.slice(0, lastSlow)) expect(o.watermark ?? -Infinity).toBeLessThan(90)
    // The timer at 1000 fired once, after every record of input 1 (whose watermark reached 1000 only at its end).
    expect(out.filter((o) => 'timerAt' in o)).toEqual([{ timerAt: 1000, rightSeen: 10 }])
    expect(out.findIndex((o) => 'timerAt' in o)).toBeGreaterThan(out.indexOf(records[lastSlow]!))
  }, 60_000)
})

/** Counts per key the records of each input: its keyed state. */
class Tally extends Processor<Click | Profile, [number, number]> {
  private readonly tally = this.state.value<[number, number]>('tally')
  onRecord(r: StreamRecord<Click | Profile>, ctx: Context<[number, number]>): void {
    const t: [number, number] = [...(this.tally.get() ?? [0, 0])]
    t[r.input]! += 1
    this.tally.set(t)
    ctx.emit(r.key, t)
  }
}

describe('a savepoint of a two-input stage', () => {
  it('carries its keyed state and both inputs\' positions: a pipeline stopped midway and restored onto a new pipe ends with the whole input counted once', async () => {
    const p = new Pipeline('connect-savepoint')
    const clicks = p.source('clicks', () => new GeneratorSource<Click>({ count: 200, ratePerSecond: 300, generate: (i, from) => ({ key: `u${i % USERS}`, value: { user: `u${i % USERS}`, seq: i, from } }) }), { partitions: 2 })
    const profiles = p.source('profiles', () => new GeneratorSource<Profile>({ count: 90, ratePerSecond: 150, generate: (i, from) => ({ key: `u${(i * 5) % USERS}`, value: { name: `u${(i * 5) % USERS}`, version: i, from } }) }), { partitions: 1 })
    clicks.keyBy(3).connect(profiles.keyBy(3)).process('tally', Tally)
    const first = dir()
    const run = await startEmbedded(p, { dataDir: first, epochIntervalMs: 30 })
    // Stopped once the stage has some of both inputs (the sources are paced to take over a second).
    const deadline = Date.now() + 20_000
    const tallied = (): number => Object.entries(run.stats()).filter(([actor]) => actor.startsWith('tally/')).reduce((n, [, s]) => n + s.recordsIn, 0)
    while (tallied() < 60 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    await run.stop()
    const counted = (state: Record<string, unknown> | undefined): number => Object.values(state ?? {}).reduce<number>((n, t) => n + (t as number[])[0]! + (t as number[])[1]!, 0)
    const before = counted((await readCommittedState(p, first, 'tally')).keyed.tally)
    expect(before).toBeGreaterThan(0)
    expect(before).toBeLessThan(2 * 200 + 90)
    const savepoint = `${dir()}/sp`
    await createSavepoint(p, { dataDir: first, target: savepoint })
    const second = dir()
    await runToCompletion(p, { dataDir: second, fromSavepoint: { dir: savepoint } })
    const expected: Record<string, [number, number]> = {}
    for (let i = 0; i < 200; i++) for (let from = 0; from < 2; from++) (expected[`u${i % USERS}`] ??= [0, 0])[0] += 1
    for (let i = 0; i < 90; i++) (expected[`u${(i * 5) % USERS}`] ??= [0, 0])[1] += 1
    expect((await readCommittedState(p, second, 'tally')).keyed.tally).toEqual(expected)
  }, 120_000)
})
