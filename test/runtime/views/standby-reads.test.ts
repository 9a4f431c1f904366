/**
 * Stale reads from standby replicas (runtime/standby.ts): a replica answers view requests
 * from a snapshot pinned only at checkpoint boundaries, though its changelog polls end
 * anywhere inside a checkpoint. Every answer equals a committed checkpoint's state: for a
 * counting stage, the count of a key at the input position the answer names is the number
 * of that key's input records below it. Answers say `standby: true`; a worker's replica
 * answers on the standby subject, where a stale ViewClient finds it.
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { pino } from 'pino'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, startEmbedded, type Context, type StreamRecord } from '../../../index.ts'
import { actorConfigFor } from '../../../runtime/actor/actor.ts'
import { ACTOR_PREFIX, INPUT_POSITIONS, VIEW_EPOCH } from '../../../runtime/actor/state-keys.ts'
import { stateCodec } from '../../../runtime/codec.ts'
import { subjects } from '../../../runtime/control/bus.ts'
import { LocalBus } from '../../../runtime/control/local/local-bus.ts'
import { Faults } from '../../../runtime/faults.ts'
import { EmbeddedPipe, type EmbeddedPipeOptions } from '../../../runtime/pipe/embedded/embedded-pipe.ts'
import type { StoredRecord } from '../../../runtime/pipe/pipe.ts'
import { readRange } from '../../../runtime/pipe/read-range.ts'
import { storeKeyBytes } from '../../../runtime/record-keys.ts'
import { CheckpointBoundaries, StandbyNotReadyError, StandbyReplica } from '../../../runtime/standby.ts'
import { ViewClient } from '../../../runtime/views/view-client.ts'
import { MAX_REPLY_BYTES, type ViewReply } from '../../../runtime/views/view-protocol.ts'
import { Worker } from '../../../runtime/worker.ts'
import { removeDir, tempDataDir } from '../../../testing/index.ts'
import { sleep, until } from '../../support/weir-cli.ts'

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))
const log = pino({ level: process.env.WEIR_LOG_LEVEL ?? 'silent' })
/** How long the input keeps coming, ms (WEIR_STANDBY_TEST_MS). */
const RUN_MS = Number(process.env.WEIR_STANDBY_TEST_MS ?? 2500)

class CountPerKey extends Processor<string, number> {
  private readonly count = this.state.value<number>('count')
  onRecord(r: StreamRecord<string>, ctx: Context<number>): void {
    const n = (this.count.get() ?? 0) + 1
    this.count.set(n)
    ctx.emit(r.key, n)
  }
}

interface Setup {
  pipe: EmbeddedPipe
  pipeline: Pipeline
  topic: string
  keys: string[]
  dir: string
  /** Writes random transactions of keyed records into both partitions until `stop()`. */
  write(): { stop(): Promise<void> }
}

async function setUp(keyCount: number, pipeOptions: EmbeddedPipeOptions = {}): Promise<Setup> {
  const dir = tempDataDir('weir-standby-')
  dirs.push(dir)
  const pipe = await EmbeddedPipe.open(join(dir, 'log'), pipeOptions)
  const topic = `in-${randomUUID().slice(0, 6)}`
  await pipe.ensureTopic({ name: topic, partitions: 2 })
  const pipeline = new Pipeline(`sb${randomUUID().slice(0, 6)}`)
  pipeline.fromTopic<string>('in', { topic, partitions: 2, codec: 'string', watermarks: { idleTimeoutMs: 0 } }).process('count', CountPerKey, { views: { counts: 'count' } })
  const keys = Array.from({ length: keyCount }, (_, i) => `k${i}`)
  const write = (): { stop(): Promise<void> } => {
    let stopping = false
    const done = (async () => {
      const producer = await pipe.producer(`${topic}-writer`)
      while (!stopping) {
        producer.begin()
        for (let p = 0; p < 2; p++) {
          const n = 1 + Math.floor(Math.random() * 40)
          for (let i = 0; i < n; i++) producer.send(topic, p, { key: Buffer.from(keys[Math.floor(Math.random() * keys.length)]!), value: Buffer.from('x'), timestamp: Date.now() })
        }
        await producer.commit()
        await sleep(Math.random() * 4)
      }
      await producer.close()
    })()
    return { stop: async () => { stopping = true; await done } }
  }
  return { pipe, pipeline, topic, keys, dir, write }
}

/** Per partition of the input: the offsets of each key's records, in order. */
async function inputOffsets(s: Setup): Promise<Array<Map<string, number[]>>> {
  const out: Array<Map<string, number[]>> = []
  for (let p = 0; p < 2; p++) {
    const m = new Map<string, number[]>()
    await readRange(s.pipe, s.topic, p, await s.pipe.startOffset(s.topic, p), await s.pipe.endOffset(s.topic, p), (batch) => {
      for (const r of batch) m.set(r.key!.toString(), [...(m.get(r.key!.toString()) ?? []), r.offset])
    })
    out.push(m)
  }
  return out
}

/**
 * Every answer against the input: the count of each asked key equals its records below the
 * position the answer names (a key not found has none there). Returns the mismatches.
 */
function wrongAnswers(s: Setup, input: Array<Map<string, number[]>>, answers: ViewReply[], asked: string[]): string[] {
  const wrong: string[] = []
  for (const a of answers) {
    const below = a.positions[s.topic]
    if (below === undefined) {
      if (a.entries.length > 0) wrong.push(`partition ${a.partition} epoch ${a.epoch}: entries without a position`)
      continue
    }
    const found = new Map(a.entries.map((e) => [e.key, e.value as number]))
    for (const key of asked) {
      const expected = (input[a.partition]!.get(key) ?? []).filter((o) => o < below).length
      const got = found.get(key) ?? 0
      if (got !== expected) wrong.push(`partition ${a.partition} epoch ${a.epoch} position ${below}: ${key} = ${got}, the input has ${expected} below`)
    }
  }
  return wrong
}

function request(partition: number, keys: string[]): Parameters<StandbyReplica['queryView']>[0] {
  return { v: 1, view: 'counts', partition, keys, waitMs: 0, maxBytes: MAX_REPLY_BYTES }
}

describe('standby replicas answer stale reads', () => {
  it('answers are whole checkpoints, say standby: true, and never go back, while changelog polls end inside checkpoints', async () => {
    const s = await setUp(150)
    const run = await startEmbedded(s.pipeline, { dataDir: join(s.dir, 'actor'), pipe: s.pipe, epochIntervalMs: 15, log })
    const writer = s.write()
    // Polls of 1 to 13 records: most end inside a checkpoint (up to ~150 keyed records and its own entries).
    const replicas = [1, 7, 13].flatMap((batch) => [0, 1].map((partition) => new StandbyReplica({ pipe: s.pipe, pipeline: s.pipeline, spec: s.pipeline.stage('count')!, partition, dataDir: join(s.dir, `standby-${batch}`), log, batch })))
    await Promise.all(replicas.map((r) => r.start()))
    const answers: ViewReply[] = []
    const byReplica = new Map<StandbyReplica, ViewReply[]>(replicas.map((r) => [r, []]))
    let warming = 0
    const deadline = Date.now() + RUN_MS
    while (Date.now() < deadline) {
      await Promise.all(replicas.map(async (r) => {
        try {
          const a = await r.queryView(request(r.partition, s.keys))
          answers.push(a)
          byReplica.get(r)!.push(a)
        } catch (err) {
          if (!(err instanceof StandbyNotReadyError)) throw err
          warming++
        }
      }))
      await sleep(2)
    }
    await writer.stop()
    await run.stop()
    await Promise.all(replicas.map((r) => r.stop()))
    const input = await inputOffsets(s)
    await s.pipe.close()

    expect(answers.length).toBeGreaterThan(100)
    expect(answers.every((a) => a.standby === true), 'every answer says standby: true').toBe(true)
    expect(wrongAnswers(s, input, answers, s.keys)).toEqual([])
    // Many distinct checkpoints were pinned (not one snapshot answered throughout).
    expect(new Set(answers.map((a) => `${a.partition}:${a.epoch}`)).size).toBeGreaterThan(20)
    // Per replica, epochs and positions never go back.
    for (const mine of byReplica.values()) {
      for (let j = 1; j < mine.length; j++) {
        expect(mine[j]!.epoch).toBeGreaterThanOrEqual(mine[j - 1]!.epoch)
        expect(mine[j]!.positions[s.topic] ?? 0).toBeGreaterThanOrEqual(mine[j - 1]!.positions[s.topic] ?? 0)
      }
    }
    console.log(JSON.stringify({ test: 'standby-reads', answers: answers.length, warming, checkpointsPinned: new Set(answers.map((a) => `${a.partition}:${a.epoch}`)).size }))
  }, 30_000)

  it('answers stay whole checkpoints while the changelog is compacted under replicas that lag and replicas that start late', async () => {
    // The log cleaner runs as often as it can: replicas read compacted parts of the changelog.
    const s = await setUp(300, { compactionMinDirtyRecords: 200, compactionMinIntervalMs: 0 })
    const run = await startEmbedded(s.pipeline, { dataDir: join(s.dir, 'actor'), pipe: s.pipe, epochIntervalMs: 10, log })
    const writer = s.write()
    const replicas: StandbyReplica[] = []
    const answers: ViewReply[] = []
    const deadline = Date.now() + RUN_MS
    for (let round = 0; Date.now() < deadline; round++) {
      // A new replica now and then: its catch-up reads what was compacted meanwhile.
      if (round % 40 === 0) {
        const r = new StandbyReplica({ pipe: s.pipe, pipeline: s.pipeline, spec: s.pipeline.stage('count')!, partition: replicas.length % 2, dataDir: join(s.dir, `standby-${replicas.length}`), log, batch: 1 + (replicas.length % 3) })
        await r.start()
        replicas.push(r)
      }
      await Promise.all(replicas.map(async (r) => {
        try {
          answers.push(await r.queryView(request(r.partition, s.keys)))
        } catch (err) {
          if (!(err instanceof StandbyNotReadyError)) throw err
        }
      }))
      await sleep(2)
    }
    await writer.stop()
    await run.stop()
    const passedOver = replicas.reduce((n, r) => n + r.checkpointsPassedOver, 0)
    await Promise.all(replicas.map((r) => r.stop()))
    const input = await inputOffsets(s)
    await s.pipe.close()
    expect(answers.length).toBeGreaterThan(50)
    expect(wrongAnswers(s, input, answers, s.keys)).toEqual([])
    console.log(JSON.stringify({ test: 'standby-reads-compacted', replicas: replicas.length, answers: answers.length, checkpointsPassedOver: passedOver }))
  }, 30_000)

  it('a worker\'s replica answers on the standby subject: a stale ViewClient gets its answers while nobody answers for the actor', async () => {
    const s = await setUp(20)
    const run = await startEmbedded(s.pipeline, { dataDir: join(s.dir, 'actor'), pipe: s.pipe, epochIntervalMs: 20, log })
    const writer = s.write()
    // Another worker on its own bus: it keeps the replicas; no actor answers on this bus.
    const bus = new LocalBus(log)
    const cluster = 'standby'
    const worker = new Worker(bus, s.pipe, s.pipeline, { id: 'keeper', cluster, dataDir: join(s.dir, 'keeper'), log, faults: Faults.none(), actorConfig: actorConfigFor(s.pipe), heartbeatMs: 60_000, progressIntervalMs: 60_000, epochIntervalMs: 60_000 })
    worker.start((err) => {
      throw err
    })
    bus.publish(subjects.assignment(cluster, s.pipeline.name), { v: 1, generation: 1, actors: { 'count/0': 'elsewhere', 'count/1': 'elsewhere' }, standbys: { 'count/0': ['keeper'], 'count/1': ['keeper'] } })
    await until(() => worker.standbyIds.length === 2, 5000, 'two replicas started')
    const views = new ViewClient(bus, s.pipeline, { cluster, timeoutMs: 5000 })
    await sleep(300)
    const answers: Array<Awaited<ReturnType<ViewClient['get']>>> = []
    for (let i = 0; i < 40; i++) answers.push(await views.get('counts', s.keys[i % s.keys.length]!, { stale: true }))
    // Without `stale` nobody answers: the actor is not on this bus.
    await expect(views.get('counts', 'k0', { timeoutMs: 300 })).rejects.toMatchObject({ code: 'WEIR_VIEW_UNAVAILABLE' })
    // Moved away: the replicas stop and answer no more.
    bus.publish(subjects.assignment(cluster, s.pipeline.name), { v: 1, generation: 2, actors: { 'count/0': 'elsewhere', 'count/1': 'elsewhere' }, standbys: {} })
    await until(() => worker.standbyIds.length === 0, 5000, 'replicas stopped')
    await expect(views.get('counts', 'k0', { stale: true, timeoutMs: 300 })).rejects.toMatchObject({ code: 'WEIR_VIEW_UNAVAILABLE' })
    await worker.stop()
    await bus.close()
    await writer.stop()
    await run.stop()
    const input = await inputOffsets(s)
    await s.pipe.close()
    expect(answers.every((a) => a.standby === true)).toBe(true)
    // Answers come from both partitions' replicas (get asks every partition of an unkeyed input and takes the one that has the key).
    const wrong = answers.filter((a) => (a.found ? (a.value as number) : 0) !== (input[a.partition]!.get(a.key) ?? []).filter((o) => o < (a.positions[s.topic] ?? 0)).length)
    expect(wrong).toEqual([])
  }, 30_000)
})

describe('checkpoint boundaries in a changelog', () => {
  const epochKey = storeKeyBytes(ACTOR_PREFIX + VIEW_EPOCH)
  const positionsKey = storeKeyBytes(ACTOR_PREFIX + INPUT_POSITIONS)
  const rec = (offset: number, key: Buffer | string, value: unknown = 1): StoredRecord => ({ offset, key: typeof key === 'string' ? Buffer.from(`count\u0000${key}`) : key, value: stateCodec.encode(value), timestamp: 1000 + offset })
  const epoch = (offset: number, e: number): StoredRecord => rec(offset, epochKey, e)
  const positions = (offset: number, p: number): StoredRecord => rec(offset, positionsKey, { in: p })

  const meta = (epoch: number, positions: Record<string, number> = {}): { epoch: number; positions: Record<string, number>; committedAt: number } => ({ epoch, positions, committedAt: 0 })

  it('a boundary is right after an #epoch record read with every offset since the store last held a whole checkpoint; positions come from their checkpoint', () => {
    // Kafka: one offset of commit marker after each transaction.
    const b = new CheckpointBoundaries(1, meta(2, { in: 5 }))
    // Nothing is trusted before the reader reached the changelog's end once.
    expect(b.scan([rec(10, 'a'), epoch(11, 3)])).toBeUndefined()
    expect(b.passedOver).toBe(1)
    b.trust(13)
    // Checkpoint 4 in two polls; its positions first.
    expect(b.scan([rec(13, 'a'), positions(14, 20)])).toBeUndefined()
    expect(b.scan([rec(15, 'b'), epoch(16, 4), rec(18, 'c')])).toEqual({ index: 1, meta: { epoch: 4, positions: { in: 20 }, committedAt: 1016 } })
    // Checkpoint 5 wrote no positions (they did not change): 4's still hold. Two in one poll: the last one counts.
    expect(b.scan([epoch(19, 5), rec(21, 'd'), positions(22, 30), epoch(23, 6), rec(25, 'e')])).toEqual({ index: 3, meta: { epoch: 6, positions: { in: 30 }, committedAt: 1023 } })
    expect(b.passedOver).toBe(1)
    // What was read so far: epoch 6's, with no newer positions.
    expect(b.applied).toEqual({ epoch: 6, positions: { in: 30 }, committedAt: 1023 })
  })

  it('after a missing offset (compaction removed a record, an aborted transaction hid some) no boundary is trusted until the reader reached the end again', () => {
    const b = new CheckpointBoundaries(0, meta(0))
    b.trust(0)
    expect(b.scan([rec(0, 'a'), epoch(1, 1), rec(2, 'a'), epoch(3, 2)])?.meta.epoch).toBe(2)
    // Offset 5 is missing: the store may lack a record, at this checkpoint and every later one.
    expect(b.scan([rec(4, 'a'), rec(6, 'b'), epoch(7, 3)])).toBeUndefined()
    expect(b.scan([rec(8, 'a'), epoch(9, 4)])).toBeUndefined()
    expect(b.passedOver).toBe(2)
    expect(b.applied.epoch).toBe(4)
    b.trust(10)
    expect(b.scan([rec(10, 'a'), epoch(11, 5)])?.meta.epoch).toBe(5)
    // Without a marker width, a gap of one right after #epoch is a missing record too.
    expect(b.scan([rec(13, 'a'), epoch(14, 6)])).toBeUndefined()
    // With Kafka's marker, one offset after #epoch is the marker; two are not.
    const k = new CheckpointBoundaries(1, meta(0))
    k.trust(0)
    expect(k.scan([epoch(0, 1), rec(2, 'a'), epoch(3, 2)])?.meta.epoch).toBe(2)
    expect(k.scan([rec(5, 'a'), epoch(6, 3)])?.meta.epoch).toBe(3)
    expect(k.scan([rec(9, 'a'), epoch(10, 4)])).toBeUndefined()
    const k2 = new CheckpointBoundaries(1, meta(0))
    k2.trust(0)
    expect(k2.scan([rec(0, 'a'), rec(2, 'b'), epoch(3, 1)])).toBeUndefined()
  })
})
