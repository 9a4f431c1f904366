/**
 * Views on the embedded pipe: lookups, projections, scans with pages, atLeast bounds, and
 * the HTTP face's refusals. The recovery property (test/recovery/views-*.test.ts) proves
 * answers are committed state under crashes; this file proves the API does what it says.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startEmbedded, type RunningPipeline } from '../../../runner/embedded-runner.ts'
import { Pipeline } from '../../../runtime/api/pipeline.ts'
import { Processor, type Context, type StreamRecord } from '../../../runtime/api/processor.ts'
import { ConfigError } from '../../../runtime/errors.ts'
import { createLogger } from '../../../runtime/log.ts'
import { EmbeddedPipe } from '../../../runtime/pipe/embedded/embedded-pipe.ts'
import type { PartitionOffset, Pipe } from '../../../runtime/pipe/pipe.ts'
import { serveViews, VIEWS_FILE, type ViewsServer } from '../../../runtime/views/serve-views.ts'
import { ViewClient, ViewQueryError, parseAtLeast } from '../../../runtime/views/view-client.ts'
import { removeDir, tempDataDir } from '../../../testing/index.ts'

/** Counts records per key and keeps the last value seen. */
class Tally extends Processor<{ v: number }, number> {
  private readonly n = this.state.value<number>('n')
  private readonly last = this.state.value<{ v: number; at: bigint }>('last')
  onRecord(r: StreamRecord<{ v: number }>, ctx: Context<number>): void {
    const n = (this.n.get() ?? 0) + 1
    this.n.set(n)
    this.last.set({ v: r.value.v, at: BigInt(r.value.v) * 10n })
    ctx.emit(r.key, n)
  }
}

const TOPIC = `views.events.${randomUUID().slice(0, 8)}`
const dirs: string[] = []
let run: RunningPipeline
let views: ViewClient
let server: ViewsServer
let pipeline: Pipeline
let dataDir: string
let pipe: Pipe
const token = 'views-test-token'

function build(): Pipeline {
  const p = new Pipeline(`views-${randomUUID().slice(0, 6)}`)
  p.fromTopic<{ v: number }>('events', { topic: TOPIC, partitions: 2, codec: 'json' })
    .process('tally', Tally, { views: { counts: 'n', last: 'last', doubled: { state: 'n', project: (n: number, key) => ({ key, twice: n * 2 }) } } })
  return p
}

/** Writes `keys` (one record each, partition by index) and returns where the writes end, as atLeast positions. */
async function write(pipe: Pipe, keys: string[], v = 1): Promise<PartitionOffset[]> {
  const producer = await pipe.producer(`views-writer-${randomUUID().slice(0, 6)}`)
  producer.begin()
  keys.forEach((k, i) => producer.send(TOPIC, i % 2, { key: Buffer.from(k), value: Buffer.from(JSON.stringify({ v })), timestamp: Date.now() }))
  const ends = await producer.commit()
  await producer.close()
  return ends
}

async function http(path: string, init: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(`${server.url}${path}`, { method: init.method ?? 'GET', body: init.body, headers: { authorization: `Bearer ${token}`, ...init.headers } })
  const text = await res.text()
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text), headers: res.headers }
}

beforeAll(async () => {
  dataDir = tempDataDir('weir-views-')
  dirs.push(dataDir)
  pipeline = build()
  pipe = await EmbeddedPipe.open(dataDir)
  await pipe.ensureTopic({ name: TOPIC, partitions: 2 })
  run = await startEmbedded(pipeline, { dataDir, pipe, epochIntervalMs: 50 })
  views = new ViewClient(run.bus, pipeline, { cluster: 'embedded', timeoutMs: 10_000 })
  server = await serveViews({ pipeline, bus: run.bus, cluster: 'embedded', host: '127.0.0.1', port: 0, token, dir: dataDir, log: createLogger() })
})

afterAll(async () => {
  await server?.close()
  await run?.stop()
  await pipe?.close()
  dirs.forEach(removeDir)
})

describe('views on the embedded pipe', () => {
  it('answers a key with its committed value, the epoch and the positions it reflects; atLeast waits for a write', async () => {
    const ends = await write(run.pipe, ['ant', 'bee', 'ant', 'ant'])
    const atLeast = { positions: ends }
    const ant = await views.get('counts', 'ant', { atLeast })
    // 'ant' went to partitions 0, 0 and 1 (by index): the stage's input is not keyed, so every partition is asked and the one holding it answers.
    expect(ant.found).toBe(true)
    expect(ant.epoch).toBeGreaterThan(0)
    const topicEnd = ends.find((e) => e.partition === ant.partition)!.offset
    expect(ant.positions[TOPIC]).toBeGreaterThanOrEqual(topicEnd)
    expect([1, 2]).toContain(ant.value)
    const bee = await views.get('counts', 'bee', { atLeast })
    expect(bee).toMatchObject({ found: true, value: 1, partition: 1 })
    const none = await views.get('counts', 'wasp', { atLeast })
    expect(none.found).toBe(false)
    expect(none.value).toBeUndefined()
  })

  it('serves projections and values of every type (BigInt as a string over HTTP)', async () => {
    const ends = await write(run.pipe, ['cat'], 7)
    const doubled = await views.get('doubled', 'cat', { atLeast: { positions: ends } })
    expect(doubled.value).toEqual({ key: 'cat', twice: 2 })
    const last = await views.get('last', 'cat')
    expect(last.value).toEqual({ v: 7, at: 70n })
    const over = await http(`/views/${pipeline.name}/last/cat`)
    expect(over.status).toBe(200)
    expect(over.body).toMatchObject({ pipeline: pipeline.name, view: 'last', key: 'cat', found: true, value: { v: 7, at: '70' } })
  })

  it('scans in key order, page by page, across partitions; prefix and range bounds hold', async () => {
    const keys = Array.from({ length: 250 }, (_, i) => `k${String(i).padStart(3, '0')}`)
    const ends = await write(run.pipe, keys)
    await views.get('counts', 'k000', { atLeast: { positions: ends } })
    const seen: string[] = []
    let after: string | undefined
    for (let page = 0; page < 10; page++) {
      const res = await views.scan('counts', { prefix: 'k', limit: 60, after })
      seen.push(...res.entries.map((e) => e.key))
      for (const e of res.entries) expect(e.value).toBe(1)
      expect(res.partitions.map((p) => p.partition).sort()).toEqual([0, 1])
      if (res.next === undefined) break
      after = res.next
    }
    expect(seen).toEqual(keys)
    const prefixed = await views.scan('counts', { prefix: 'k1', limit: 1000 })
    expect(prefixed.entries.map((e) => e.key)).toEqual(keys.filter((k) => k.startsWith('k1')))
    expect(prefixed.next).toBeUndefined()
    const ranged = await views.scan('counts', { gte: 'k010', lt: 'k020' })
    expect(ranged.entries.map((e) => e.key)).toEqual(keys.slice(10, 20))
    // Over HTTP, with the same paging.
    const first = await http(`/views/${pipeline.name}/counts?prefix=k2&limit=20`)
    expect(first.status).toBe(200)
    expect(first.body.entries).toHaveLength(20)
    const second = await http(`/views/${pipeline.name}/counts?prefix=k2&limit=40&after=${encodeURIComponent(first.body.next)}`)
    expect([...first.body.entries, ...second.body.entries].map((e: { key: string }) => e.key)).toEqual(keys.filter((k) => k.startsWith('k2')))
    expect(second.body.next).toBeUndefined()
  })

  it('refuses an atLeast it cannot reach in time with 504 and where the state is', async () => {
    const res = await http(`/views/${pipeline.name}/counts/ant?atLeast=events:0:999999999&timeoutMs=300`)
    expect(res.status).toBe(504)
    expect(res.body.error.code).toBe('WEIR_VIEW_NOT_YET')
    expect(res.body.error.message).toContain('positions')
    await expect(views.get('counts', 'ant', { atLeast: { epoch: 1e12 }, timeoutMs: 200 })).rejects.toMatchObject({ code: 'WEIR_VIEW_NOT_YET', status: 504 })
  })

  it('lists the views, and names what is wrong in a bad request', async () => {
    const list = await http(`/views/${pipeline.name}`)
    expect(list.body.views.map((v: { name: string }) => v.name)).toEqual(['counts', 'last', 'doubled'])
    expect(list.body.views[0]).toMatchObject({ stage: 'tally', state: 'n', partitions: 2, keyed: false, projected: false })
    const unknown = await http(`/views/${pipeline.name}/nope/x`)
    expect(unknown.status).toBe(404)
    expect(unknown.body.error.message).toContain('views: counts, last, doubled')
    expect((await http('/views/other-pipeline')).status).toBe(404)
    const badBound = await http(`/views/${pipeline.name}/counts/x?atLeast=nowhere:0:1`)
    expect(badBound.status).toBe(400)
    expect(badBound.body.error.message).toMatch(/atLeast: 'nowhere' is not an input of stage tally/)
    const badLimit = await http(`/views/${pipeline.name}/counts?limit=5000`)
    expect(badLimit.status).toBe(400)
    expect(badLimit.body.error.message).toMatch(/^limit/)
    const both = await http(`/views/${pipeline.name}/counts?prefix=a&gte=b`)
    expect(both.status).toBe(400)
    const stray = await http(`/views/${pipeline.name}/counts/x?colour=red`)
    expect(stray.status).toBe(400)
    expect(stray.body.error.message).toContain('colour')
  })

  it('is read-only, body-less and token-guarded', async () => {
    expect((await http(`/views/${pipeline.name}/counts/ant`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })).status).toBe(405)
    const noToken = await fetch(`${server.url}/views/${pipeline.name}/counts/ant`)
    expect(noToken.status).toBe(401)
    expect(noToken.headers.get('www-authenticate')).toContain('Bearer')
    const wrong = await fetch(`${server.url}/views/${pipeline.name}/counts/ant`, { headers: { authorization: 'Bearer nope' } })
    expect(wrong.status).toBe(401)
    const longKey = 'x'.repeat(9000)
    expect((await http(`/views/${pipeline.name}/counts/${longKey}`)).status).toBe(414)
  })

  it('names the server in the data dir for weir peek', () => {
    const file = JSON.parse(readFileSync(join(dataDir, VIEWS_FILE), 'utf8')) as { url: string; pipeline: string; token: boolean }
    expect(file).toMatchObject({ url: server.url, pipeline: pipeline.name, token: true })
  })

  it('parses atLeast forms and refuses malformed ones naming the field', () => {
    expect(parseAtLeast(pipeline, 'counts', 'epoch:12')).toEqual({ epoch: 12 })
    expect(parseAtLeast(pipeline, 'counts', `events:1:40,${TOPIC}:0:3`)).toEqual({ positions: [{ topic: TOPIC, partition: 1, offset: 40 }, { topic: TOPIC, partition: 0, offset: 3 }] })
    expect(() => parseAtLeast(pipeline, 'counts', 'epoch:x')).toThrow(ViewQueryError)
    expect(() => parseAtLeast(pipeline, 'counts', 'events:1')).toThrow(/neither epoch:N nor/)
  })
})

describe('view declarations', () => {
  it('refuses a view of a state the processor does not declare, naming the field, when the run starts', async () => {
    const p = new Pipeline(`views-bad-${randomUUID().slice(0, 6)}`)
    p.fromTopic<{ v: number }>('events', { topic: `views.bad.${randomUUID().slice(0, 6)}`, partitions: 1, codec: 'json' }).process('tally', Tally, { views: { counts: 'count' } })
    const dir = tempDataDir('weir-views-bad-')
    dirs.push(dir)
    const badPipe = await EmbeddedPipe.open(dir)
    await badPipe.ensureTopic({ name: p.stage('events')!.topic!, partitions: 1 })
    const started = await startEmbedded(p, { dataDir: dir, pipe: badPipe, epochIntervalMs: 50 })
    const err = await started.done.then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).context.field).toBe('stages.tally.views.counts.state')
    expect((err as Error).message).toContain('it declares n, last')
    await badPipe.close()
  })

  it('refuses duplicate and malformed view names when the pipeline is built', () => {
    const p = new Pipeline('views-dup')
    const events = p.fromTopic<{ v: number }>('events', { topic: 'views.dup', partitions: 1, codec: 'json' })
    events.process('a', Tally, { views: { counts: 'n' } })
    expect(() => events.process('b', Tally, { views: { counts: 'n' } })).toThrow(/stage a already serves a view 'counts'/)
    expect(() => events.process('c', Tally, { views: { 'has space': 'n' } })).toThrow(ConfigError)
    expect(() => events.process('d', Tally, { views: { ok: { state: 'n', extra: 1 } as never } })).toThrow(/stages\.d\.views/)
  })
})
