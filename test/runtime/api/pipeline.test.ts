/**
 * The builder's branches: one stream read by a stage through keyBy and by another as it
 * is. The keyed branch sees every record of a key in one partition (its per-key counts are
 * whole, across the source's partitions); the other reads the source's own partitioning.
 * Both are exactly-once across crashes, as any edge.
 */
import { randomUUID } from 'node:crypto'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, type Context, type LifecycleContext, type StreamRecord } from '../../../index.ts'
import { GeneratorSource } from '../../../processors/index.ts'
import { startEmbedded } from '../../../runner/embedded-runner.ts'
import { partitionForKey } from '../../../runtime/partitioner.ts'
import { KafkaPipe } from '../../../runtime/pipe/kafka/kafka-pipe.ts'
import type { Pipe } from '../../../runtime/pipe/pipe.ts'
import { keyBytes } from '../../../runtime/record-keys.ts'
import { checkTopology, recordTopology } from '../../../runtime/topology-guard.ts'
import { readDeadLetters, readStageOutput, removeDir, runToCompletion, tempDataDir } from '../../../testing/index.ts'
import { requireService } from '../../support/services.ts'

const kafka = await requireService('kafka')
const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

interface View {
  page: string
  user: string
  /** The source partition that made it. */
  from: number
  seq: number
}

const PER_PARTITION = 300
const PAGES = 7
const SOURCE_PARTITIONS = 2
const KEYED_PARTITIONS = 3

/**
 * How the keyed branch gets its key: from the value by a key function (the record was
 * emitted under the user), or the key the record was emitted with (the page).
 */
type KeyedBy = 'key function' | 'record key'

/** Page names, some not ASCII: a key the emit path cannot hash as characters goes by its UTF-8 bytes. */
const PAGE_NAMES = ['page-0', 'página-1', 'страница-2', 'page-3', '页面-4', 'page-5', 'pâge-6']

/** Record i of partition p: page `(i*(p+1)) % 7`, emitted under the user's key or the page's. */
function view(i: number, p: number, keyedBy: KeyedBy): { key: string; value: View } {
  const value = { page: PAGE_NAMES[(i * (p + 1)) % PAGES]!, user: `user-${(i + p) % 5}`, from: p, seq: i }
  return { key: keyedBy === 'key function' ? value.user : value.page, value }
}

/** Counts views per key (the page, after keyBy) and says which partition counted them. */
class CountPerPage extends Processor<View, { page: string; count: number; partition: number }> {
  private readonly count = this.state.value<number>('count')
  private partition = -1
  override open(ctx: LifecycleContext): void {
    this.partition = ctx.partition
  }
  onRecord(r: StreamRecord<View>, ctx: Context<{ page: string; count: number; partition: number }>): void {
    if (r.key !== r.value.page) throw new Error(`keyed by ${String(r.key)}, not by the page ${r.value.page}`)
    const n = (this.count.get() ?? 0) + 1
    this.count.set(n)
    ctx.emit(r.key, { page: r.value.page, count: n, partition: this.partition })
  }
}

/** Passes each view on with the partition that read it. */
class WhereRead extends Processor<View, { from: number; seq: number; key: string | null; partition: number }> {
  private partition = -1
  override open(ctx: LifecycleContext): void {
    this.partition = ctx.partition
  }
  onRecord(r: StreamRecord<View>, ctx: Context<{ from: number; seq: number; key: string | null; partition: number }>): void {
    ctx.emit(r.key, { from: r.value.from, seq: r.value.seq, key: r.key, partition: this.partition })
  }
}

/** Passes records on unchanged (a stage whose output the test reads). */
class Log extends Processor<{ from: number; seq: number }, { from: number; seq: number }> {
  onRecord(r: StreamRecord<{ from: number; seq: number }>, ctx: Context<{ from: number; seq: number }>): void {
    ctx.emit(r.key, r.value)
  }
}

/** Even views to its output, odd ones to side output 'odd'. */
class SplitOdd extends Processor<View, View> {
  onRecord(r: StreamRecord<View>, ctx: Context<View>): void {
    if (r.value.seq % 2 === 1) ctx.emitTo('odd', r.key, r.value)
    else ctx.emit(r.key, r.value)
  }
}

function branching(name: string, keyedBy: KeyedBy): Pipeline {
  const p = new Pipeline(name)
  const views = p.source('views', () => new GeneratorSource<View>({ count: PER_PARTITION, generate: (i, part) => view(i, part, keyedBy) }), { partitions: SOURCE_PARTITIONS })
  const byPage = keyedBy === 'key function' ? views.keyBy((v) => v.page, KEYED_PARTITIONS) : views.keyBy(KEYED_PARTITIONS)
  byPage.process('per-page', CountPerPage)
  views.process('where-read', WhereRead)
  return p
}

async function expectBranchesRight(p: Pipeline, dir: string | Pipe, keyedBy: KeyedBy): Promise<void> {
  const expected = new Map<string, number>()
  for (let part = 0; part < SOURCE_PARTITIONS; part++) for (let i = 0; i < PER_PARTITION; i++) expected.set(view(i, part, keyedBy).value.page, (expected.get(view(i, part, keyedBy).value.page) ?? 0) + 1)

  // Keyed branch: one actor per key, counts whole across both source partitions.
  const counts = await readStageOutput<{ page: string; count: number; partition: number }>(p, dir, 'per-page')
  expect(counts).toHaveLength(SOURCE_PARTITIONS * PER_PARTITION)
  const final = new Map<string, number>()
  const actorOf = new Map<string, Set<number>>()
  for (const r of counts) {
    final.set(r.value.page, Math.max(final.get(r.value.page) ?? 0, r.value.count))
    actorOf.set(r.value.page, (actorOf.get(r.value.page) ?? new Set()).add(r.value.partition))
  }
  expect(Object.fromEntries(final)).toEqual(Object.fromEntries(expected))
  for (const [page, actors] of actorOf) expect([...actors]).toEqual([partitionForKey(keyBytes(page), KEYED_PARTITIONS)])
  // Each page's counts are 1..n, each once: nothing lost, nothing counted twice.
  for (const [page, n] of expected) expect(counts.filter((r) => r.value.page === page).map((r) => r.value.count).sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i + 1))

  // Unkeyed branch: every record read in the partition its source actor wrote, under its own key.
  const read = await readStageOutput<{ from: number; seq: number; key: string | null; partition: number }>(p, dir, 'where-read')
  expect(read).toHaveLength(SOURCE_PARTITIONS * PER_PARTITION)
  for (const r of read) {
    expect(r.value.partition).toBe(r.value.from)
    expect(r.value.key).toBe(view(r.value.seq, r.value.from, keyedBy).key)
  }
  expect(new Set(read.map((r) => `${r.value.from}/${r.value.seq}`)).size).toBe(SOURCE_PARTITIONS * PER_PARTITION)
}

function branchesOn(pipeName: string, open: (dir: string) => Promise<Pipe> | undefined): void {
  for (const keyedBy of ['key function', 'record key'] as const) {
    it(`a keyed branch (by ${keyedBy}) and an unkeyed branch of one stream each get their partitioning, on ${pipeName}`, async () => {
      const dir = tempDataDir('weir-branches-')
      dirs.push(dir)
      const p = branching(`branches-${randomUUID().slice(0, 8)}`, keyedBy)
      // The stream as written stays the source's; the keyed branch has a topic of its own.
      expect(p.stage('views')!.keyedOutput).toBe(false)
      expect(p.stage('per-page')!.inputs).toEqual(['views.keyBy.1'])
      expect(p.stage('where-read')!.inputs).toEqual(['views'])
      expect(p.stage('per-page')!.parallelism).toBe(KEYED_PARTITIONS)
      expect(p.stage('where-read')!.parallelism).toBe(SOURCE_PARTITIONS)
      const pipe = await open(dir)
      try {
        const run = await startEmbedded(p, { dataDir: dir, pipe, epochIntervalMs: 50 })
        expect((await run.done).outcome).toBe('finished')
        await expectBranchesRight(p, pipe ?? dir, keyedBy)
      } finally {
        await pipe?.close()
      }
    }, 120_000)
  }
}

describe('pipeline branches', () => {
  branchesOn('the embedded pipe', () => undefined)
  describe.skipIf(!kafka.available)('on kafka', () => {
    branchesOn('kafka', () => KafkaPipe.connect({ brokers: kafka.url.split(',') }))
  })

  it('both branches are exactly-once across crashes before and after the pipe commit', async () => {
    const dir = tempDataDir('weir-branches-crash-')
    dirs.push(dir)
    const p = branching('branches-crash', 'key function')
    const run = await runToCompletion(p, {
      dataDir: dir,
      crashes: [
        { point: 'before-commit', hit: 2 },
        { point: 'after-pipe-commit', hit: 1, afterRecords: { stage: 'per-page', records: 100 } },
        { point: 'mid-batch', hit: 3 },
      ],
    })
    expect(run.crashed).toEqual(run.planned)
    await expectBranchesRight(p, dir, 'key function')
  }, 180_000)

  it('a key function that fails dead-letters the record at the writing stage, with none of its outputs', async () => {
    const dir = tempDataDir('weir-branches-badkey-')
    dirs.push(dir)
    const p = new Pipeline('bad-key')
    const read = p.source('views', () => new GeneratorSource<View>({ count: 50, generate: (i, part) => view(i, part, 'key function') }), { partitions: 2 }).process('where-read', WhereRead)
    // Every tenth record has no key: its unit fails, so its record reaches neither branch.
    read.keyBy((r) => (r.seq % 10 === 0 ? (null as unknown as string) : `k${r.seq % 3}`), 2).to('keyed-log', Log)
    read.to('log', Log)
    const run = await runToCompletion(p, { dataDir: dir })
    expect(run.result.outcome).toBe('finished')
    const dead = await readDeadLetters(p, dir, 'where-read')
    expect(dead).toHaveLength(10)
    expect(dead[0]!.value.error.message).toContain('the keyBy key function of stage where-read returned null; it must return a string or a Uint8Array')
    const seqs = async (stage: string): Promise<number[]> => (await readStageOutput<{ seq: number; from: number }>(p, dir, stage)).map((r) => r.value.from * 1000 + r.value.seq).sort((a, b) => a - b)
    const expected = [0, 1].flatMap((from) => Array.from({ length: 50 }, (_, i) => i).filter((i) => i % 10 !== 0).map((i) => from * 1000 + i))
    expect(await seqs('keyed-log')).toEqual(expected)
    expect(await seqs('log')).toEqual(expected)
  }, 120_000)

  it('a side output has branches too: keyed for one reader, as written for another', async () => {
    const dir = tempDataDir('weir-branches-side-')
    dirs.push(dir)
    const p = new Pipeline('side-branches')
    const split = p.source('views', () => new GeneratorSource<View>({ count: 100, generate: (i, part) => view(i, part, 'key function') }), { partitions: 2 })
      .process('split', SplitOdd, { sideOutputs: ['odd'] })
    const odd = split.sideOutput<View>('odd')
    odd.keyBy((v) => v.page, 3).process('odd-per-page', CountPerPage)
    odd.process('odd-where-read', WhereRead)
    split.to('even', Log)
    expect(p.stage('odd-per-page')!.inputs).toEqual(['split.odd.keyBy.1'])
    expect(p.stage('odd-where-read')!.inputs).toEqual(['split.odd'])
    expect(p.stage('split')!.keyedOutput).toBe(false)
    const run = await runToCompletion(p, { dataDir: dir })
    expect(run.result.outcome).toBe('finished')

    const expected = new Map<string, number>()
    for (const from of [0, 1]) for (let i = 1; i < 100; i += 2) expected.set(view(i, from, 'key function').value.page, (expected.get(view(i, from, 'key function').value.page) ?? 0) + 1)
    const counts = await readStageOutput<{ page: string; count: number; partition: number }>(p, dir, 'odd-per-page')
    const final = new Map<string, number>()
    for (const r of counts) {
      final.set(r.value.page, Math.max(final.get(r.value.page) ?? 0, r.value.count))
      expect(r.value.partition).toBe(partitionForKey(keyBytes(r.value.page), 3))
    }
    expect(Object.fromEntries(final)).toEqual(Object.fromEntries(expected))
    const read = await readStageOutput<{ from: number; seq: number; partition: number }>(p, dir, 'odd-where-read')
    expect(read).toHaveLength(100)
    for (const r of read) expect([r.value.partition, r.value.seq % 2]).toEqual([r.value.from, 1])
    expect((await readStageOutput<{ seq: number }>(p, dir, 'even')).every((r) => r.value.seq % 2 === 0)).toBe(true)
  }, 120_000)

  it('the order of the branches does not matter: an unkeyed reader added after the keyed one moves the keyed one to its own topic', () => {
    const p = new Pipeline('late-unkeyed')
    const views = p.source('views', () => new GeneratorSource<View>({ count: 1, generate: (i, part) => view(i, part, 'key function') }), { partitions: 2 })
    views.keyBy((v) => v.page, 3).process('per-page', CountPerPage)
    expect(p.stage('views')!.keyedOutput).toBe(true)
    expect(p.stage('per-page')!.inputs).toEqual(['views'])
    views.process('where-read', WhereRead)
    expect(p.stage('views')!.keyedOutput).toBe(false)
    expect(p.stage('views')!.outputPartitions).toBe(2)
    expect(p.stage('per-page')!.inputs).toEqual(['views.keyBy.1'])
    expect(p.stage('views.keyBy.1')).toMatchObject({ kind: 'keyed', inputs: ['views'], parallelism: 2, outputPartitions: 3, keyedOutput: true })
  })

  it('readers of the same keyBy share one keyed topic; another partition count gets another', () => {
    const p = new Pipeline('shared-keyed')
    const views = p.source('views', () => new GeneratorSource<View>({ count: 1, generate: (i, part) => view(i, part, 'key function') }), { partitions: 2 })
    const byPage = (v: View): string => v.page
    views.process('where-read', WhereRead)
    const keyed = views.keyBy(byPage, 3)
    keyed.process('a', CountPerPage)
    keyed.process('b', CountPerPage)
    views.keyBy(byPage, 3).process('c', CountPerPage)
    views.keyBy(byPage, 4).process('d', CountPerPage)
    expect(['a', 'b', 'c', 'd'].map((s) => p.stage(s)!.inputs[0])).toEqual(['views.keyBy.1', 'views.keyBy.1', 'views.keyBy.1', 'views.keyBy.2'])
    expect(p.topology.filter((s) => s.kind === 'keyed').map((s) => s.outputPartitions)).toEqual([3, 4])
  })

  it('a pipeline keyed the old way keeps its topology, so a data dir made before keyed streams runs it', () => {
    // What the builder recorded for wordcount-shaped pipelines before keyBy returned a new stream.
    const dir = tempDataDir('weir-branches-topology-')
    dirs.push(dir)
    const p = new Pipeline('old-shape')
    p.source('views', () => new GeneratorSource<View>({ count: 1, generate: (i, part) => view(i, part, 'key function') }), { partitions: 2 })
      .keyBy(4)
      .process('count', CountPerPage)
      .keyBy(1)
    expect(p.describe().stages).toEqual([
      { name: 'views', kind: 'source', inputs: [], parallelism: 2, outputPartitions: 4, keyedOutput: true, topic: undefined },
      { name: 'count', kind: 'processor', inputs: ['views'], parallelism: 4, outputPartitions: 1, keyedOutput: true, topic: undefined },
    ])
    recordTopology(dir, p)
    expect(() => checkTopology(dir, p)).not.toThrow()
  })

  it('keyBy on a topic input is refused, naming the stage', () => {
    const p = new Pipeline('topic-keyed')
    const lines = p.fromTopic<string>('lines', { topic: 'text-lines', partitions: 2 })
    expect(() => lines.keyBy(4)).toThrow(/stages\.lines\.keyBy: topic input 'lines' is partitioned by the systems that write text-lines/)
  })
})

describe('stage options', () => {
  it("keeps a codec's functions, timestampOf and a view's projection as given (no wrapper run on every record), and refuses a non-function naming the field", () => {
    const encode = (v: unknown): Buffer => Buffer.from(String(v))
    const decode = (b: Buffer): unknown => b.toString()
    const timestampOf = (_v: unknown, t: number): number => t
    const project = (v: unknown): unknown => v
    const p = new Pipeline('options-kept')
    p.fromTopic<View>('in', { topic: 'ext.in', partitions: 1, codec: { name: 'text', encode, decode }, timestampOf })
      .process('pages', Log as never)
      .keyBy(1)
      .process('count', CountPerPage as never, { codec: { name: 'text', encode, decode }, views: { pages: { state: 'count', project } } })
    for (const name of ['in', 'count']) {
      const codec = p.stage(name)!.codec as { encode: unknown; decode: unknown }
      expect([codec.encode, codec.decode]).toEqual([encode, decode])
      expect(codec.encode).toBe(encode)
    }
    expect(p.stage('in')!.timestampOf).toBe(timestampOf)
    expect(p.stage('count')!.views[0]!.project).toBe(project)
    expect(() => new Pipeline('x').fromTopic('in', { topic: 't', partitions: 1, timestampOf: 'time' as never })).toThrow('stages.in.timestampOf: Expected function, received string')
    expect(() => new Pipeline('x').fromTopic('in', { topic: 't', partitions: 1 }).process('p', Log as never, { views: { v: { state: 's', project: 1 as never } } })).toThrow('stages.p.views.v.project: Expected function, received number')
    expect(() => new Pipeline('x').fromTopic('in', { topic: 't', partitions: 1, codec: { name: 'c', encode, decode: 'no' } as never })).toThrow('stages.in.codec.decode: Expected function, received string')
    expect(() => new Pipeline('x').fromTopic('in', { topic: 't', partitions: 1, codec: 'yaml' as never })).toThrow(/stages\.in\.codec: Invalid enum value\. Expected 'msgpack' \| 'json' \| 'raw' \| 'string', received 'yaml'/)
  })
})

