/**
 * tailEdge and sampleEdge on the embedded pipe, after a real run of the tail fixture (every
 * kind of edge: a json source output with headers, a msgpack stage output, a side output, a
 * dead-letter topic), compared with what weir/testing reads from the same topics.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readDeadLetters, readStageOutput, readTopic, removeTempDirs, runToCompletion, tempDataDir, type ReadRecord } from '../../testing/index.ts'
import type { Pipeline } from '../../runtime/api/pipeline.ts'
import { EmbeddedPipe } from '../../runtime/pipe/embedded/embedded-pipe.ts'
import { CONTROL_HEADER, type StoredRecord } from '../../runtime/pipe/pipe.ts'
import { readRange } from '../../runtime/pipe/read-range.ts'
import { edgeOf, jsonSafe, parseFrom, sampleEdge, tailEdge, type TailOptions, type TailedRecord, type DeadLetterView } from '../../runtime/tail.ts'
import tailing, { BASE_TIME } from '../cli/fixtures/tail.ts'

const N = 20
let pipeline: Pipeline
let dataDir: string
let pipe: EmbeddedPipe

beforeAll(async () => {
  pipeline = tailing({ n: String(N) })
  dataDir = tempDataDir('weir-tail-')
  await runToCompletion(pipeline, { dataDir })
  pipe = await EmbeddedPipe.open(dataDir, { readOnly: true, refreshMs: 0 })
})

afterAll(async () => {
  await pipe?.close()
  removeTempDirs()
})

async function tail(options: TailOptions, on: EmbeddedPipe = pipe): Promise<TailedRecord[]> {
  const out: TailedRecord[] = []
  await tailEdge(on, pipeline, options, (r) => { out.push(r) })
  return out
}

const brief = (r: { partition: number; offset: number; key: string | null; value?: unknown; timestamp: number }): unknown => ({ partition: r.partition, offset: r.offset, key: r.key, value: r.value, timestamp: r.timestamp })
const byTime = (a: ReadRecord, b: ReadRecord): number => a.timestamp - b.timestamp || a.partition - b.partition || a.offset - b.offset

describe('tailEdge', () => {
  it('shows every committed record of a stage output, decoded, merged across partitions by time', async () => {
    const expected = (await readStageOutput(pipeline, pipe, 'route')).sort(byTime)
    // The values the fixture's route stage passes on: every n but those it refuses (n % 7 == 3).
    expect(expected.map((r) => (r.value as { n: number }).n).sort((a, b) => a - b)).toEqual(Array.from({ length: 2 * N }, (_, n) => n).filter((n) => n % 7 !== 3))
    const got = await tail({ stage: 'route' })
    expect(got.map(brief)).toEqual(expected.map(brief))
    expect(got.every((r) => r.stage === 'route' && r.topic === 'weir.tailing.route')).toBe(true)
  })

  it('leaves out the watermark marks an edge carries', async () => {
    const topic = 'weir.tailing.events'
    const marks: StoredRecord[] = []
    for (let p = 0; p < 2; p++) await readRange(pipe, topic, p, 0, await pipe.endOffset(topic, p), (b) => { marks.push(...b.filter((r) => r.headers?.[CONTROL_HEADER] !== undefined)) })
    expect(marks.length).toBeGreaterThan(0)
    const got = await tail({ stage: 'events' })
    expect(got).toHaveLength(2 * N)
    expect(got.every((r) => r.headers[CONTROL_HEADER] === undefined)).toBe(true)
  })

  it('shows headers (UTF-8 as text, other bytes as base64:) and json values of a source output', async () => {
    const got = await tail({ stage: 'events', partitions: [1], limit: 2 })
    expect(got.map((r) => [r.partition, r.key, r.value, r.timestamp, r.headers])).toEqual([
      [1, 'k1', { n: 1, p: 1, word: 'w1' }, BASE_TIME + 1000, { src: 'fixture', bin: `base64:${Buffer.from([0xff, 0, 1]).toString('base64')}` }],
      [1, 'k0', { n: 3, p: 1, word: 'w3' }, BASE_TIME + 3000, { src: 'fixture', bin: `base64:${Buffer.from([0xff, 0, 3]).toString('base64')}` }],
    ])
  })

  it('filters by key, stops at the limit, and starts from a time, now or the earliest record', async () => {
    const all = await tail({ stage: 'route' })
    const k1 = await tail({ stage: 'route', key: 'k1' })
    expect(k1.map(brief)).toEqual(all.filter((r) => r.key === 'k1').map(brief))
    expect(k1.length).toBeGreaterThan(3)
    expect((await tail({ stage: 'route', key: 'k1', limit: 3 })).map(brief)).toEqual(k1.slice(0, 3).map(brief))
    expect(await tail({ stage: 'route', from: 'now' })).toEqual([])
    // Event times are BASE_TIME + n s: from n = 25 on.
    const later = await tail({ stage: 'route', from: BASE_TIME + 25_000 })
    expect(later.map(brief)).toEqual(all.filter((r) => r.timestamp >= BASE_TIME + 25_000).map(brief))
    expect(later.length).toBeGreaterThan(0)
    expect(await tail({ stage: 'route', from: BASE_TIME + 1e9 })).toEqual([])
    expect((await tail({ stage: 'route', from: 'earliest', partitions: [0] })).map(brief)).toEqual(all.filter((r) => r.partition === 0).map(brief))
  })

  it('shows a side output and a dead-letter topic, whose records carry the error, the origin and the original record decoded', async () => {
    const fives = await tail({ stage: 'route.fives' })
    expect(fives.map((r) => r.value).sort((a, b) => (a as number) - (b as number))).toEqual([0, 5, 15, 20, 25, 30, 35]) // 10 % 7 === 3: refused
    expect(fives.every((r) => r.topic === 'weir.tailing.route.side.fives')).toBe(true)
    const dead = await tail({ stage: 'route', deadLetter: true })
    const expected = await readDeadLetters(pipeline, pipe, 'route')
    expect(dead.map((r) => [r.partition, r.offset, r.key])).toEqual(expected.sort(byTime).map((r) => [r.partition, r.offset, r.key]))
    const refused = Array.from({ length: 2 * N }, (_, n) => n).filter((n) => n % 7 === 3)
    expect(dead.map((r) => (r.value as DeadLetterView).value)).toEqual(refused.map((n) => ({ n, p: n % 2, word: `w${n}` })))
    const first = dead[0]!.value as DeadLetterView
    expect(first.error.code).toBe('WEIR_PROCESSING_FAILED')
    expect(first.error.message).toContain('route refuses 3')
    expect(first.origin).toMatchObject({ topic: 'weir.tailing.events', partition: 1 })
    expect(first.key).toBe('k0')
    expect(JSON.parse(JSON.stringify(jsonSafe(first)))).toMatchObject({ stage: 'route', attempts: 1 })
  })

  it('refuses an unknown stage naming the closest one, a stage without a dead-letter topic, a bad limit or partition', async () => {
    await expect(tail({ stage: 'rout' })).rejects.toMatchObject({ code: 'WEIR_CONFIG_INVALID', context: { field: 'stage', suggestion: 'route' }, message: expect.stringContaining("did you mean 'route'") })
    await expect(tail({ stage: 'route.fives', deadLetter: true })).rejects.toMatchObject({ context: { field: 'stage' }, message: expect.stringContaining("stage 'route'") })
    await expect(tail({ stage: 'route', limit: 0 })).rejects.toMatchObject({ context: { field: 'limit' } })
    await expect(tail({ stage: 'route', partitions: [2] })).rejects.toMatchObject({ context: { field: 'partitions' } })
    expect(() => parseFrom('yesterday')).toThrow(/--from: 'yesterday' is not a start/)
    expect(parseFrom('2023-11-14T22:13:20Z')).toBe(BASE_TIME)
    expect(parseFrom(String(BASE_TIME))).toBe(BASE_TIME)
    expect(edgeOf(pipeline, 'route', true).topic).toBe('weir.tailing.route.dlq')
  })

  it('refuses the edge into a chained stage, which is no topic, naming the stage to tail instead (and so does readStageOutput)', () => {
    const chained = tailing({ chain: '1' })
    expect(() => edgeOf(chained, 'events')).toThrow(/stage 'events' is chained to 'route' .*nothing to tail; tail 'route', or give 'route' \{ chain: false \}/)
    expect(edgeOf(chained, 'route').topic).toBe('weir.tailing.route')
    expect(edgeOf(chained, 'events', true).topic).toBe('weir.tailing.events.dlq')
    let refused: unknown
    try {
      void readStageOutput(chained, dataDir, 'events')
    } catch (err) {
      refused = err
    }
    expect(refused).toMatchObject({ code: 'WEIR_STAGE_CHAINED', message: expect.stringContaining("read 'route'") })
  })

  it('shows a value its codec cannot decode as the error and its raw bytes, and follows new commits until aborted', async () => {
    const dir = tempDataDir('weir-tail-follow-')
    await runToCompletion(pipeline, { dataDir: dir })
    const rw = await EmbeddedPipe.open(dir)
    try {
      const ctl = new AbortController()
      const seen: TailedRecord[] = []
      const following = tailEdge(rw, pipeline, { stage: 'events', from: 'now', follow: true, signal: ctl.signal }, (r) => { seen.push(r) })
      await new Promise((r) => setTimeout(r, 100))
      const producer = await rw.producer('test-writer')
      producer.begin()
      producer.send('weir.tailing.events', 0, { key: Buffer.from('bad'), value: Buffer.from('{not json'), timestamp: 5 })
      producer.send('weir.tailing.events', 1, { key: Buffer.from('good'), value: Buffer.from('{"ok":true}'), timestamp: 6 })
      await producer.commit()
      const deadline = Date.now() + 5000
      while (seen.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
      ctl.abort()
      const result = await following
      expect(result.reason).toBe('aborted')
      const bad = seen.find((r) => r.key === 'bad')!
      expect(bad.value).toBeUndefined()
      expect(bad.decodeError).toMatch(/^json: /)
      expect(Buffer.from(bad.raw!, 'base64').toString()).toBe('{not json')
      expect(seen.find((r) => r.key === 'good')!.value).toEqual({ ok: true })
      await producer.close()
    } finally {
      await rw.close()
    }
  })
})

describe('sampleEdge', () => {
  it('returns the latest committed records across partitions, newest last', async () => {
    const all = (await readTopic(pipe, 'weir.tailing.route')).sort(byTime)
    const sample = await sampleEdge(pipe, pipeline, 'route', 5)
    expect(sample.map(brief)).toEqual(all.slice(-5).map(brief))
    expect((await sampleEdge(pipe, pipeline, 'route', 1000)).map(brief)).toEqual(all.map(brief))
    expect((await sampleEdge(pipe, pipeline, 'route', 2, { deadLetter: true })).map((r) => (r.value as DeadLetterView).origin?.offset)).toHaveLength(2)
  })

  it('reads further back when watermark marks fill the last offsets', async () => {
    // The source's output ends with marks (the end-of-input mark at least): a window of n offsets holds fewer than n records.
    const all = (await readTopic(pipe, 'weir.tailing.events', { name: 'json', encode: JSON.stringify as never, decode: (b: Buffer) => JSON.parse(b.toString()) as unknown })).sort(byTime)
    expect(all).toHaveLength(2 * N)
    for (const n of [1, 3, 2 * N]) expect((await sampleEdge(pipe, pipeline, 'events', n)).map(brief)).toEqual(all.slice(-n).map(brief))
  })
})
