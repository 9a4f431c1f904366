/**
 * The monitor's inspect API against a real run on a real NATS: a word count serving views
 * runs embedded (its worker answering inspect requests as workers do), and a monitor on a
 * connection of its own, knowing only what the bus told it, serves the pipeline's views, a
 * key's committed value (the same as a ViewClient reads), a prefix's entries and a sample of
 * a stage's latest records; bad queries, unknown names, absent, slow and broken workers get
 * JSON errors with the right status, and the monitor keeps serving its status meanwhile.
 */
import { randomUUID } from 'node:crypto'
import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { eventually } from '../support/eventually.ts'
import { BusNoResponderError, subjects, type Subscription } from '../../runtime/control/bus.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { progressSubjects } from '../../runtime/control/progress.ts'
import { keyBytes } from '../../runtime/record-keys.ts'
import { partitionForKey } from '../../runtime/partitioner.ts'
import { sampleEdge } from '../../runtime/tail.ts'
import { MAX_SAMPLE } from '../../runtime/views/inspect-protocol.ts'
import { startMonitor, type RunningMonitor } from '../../monitor/monitor.ts'
import { requireService } from '../support/services.ts'
import { health } from './fixtures.ts'
import { expectedCounts, startInspectRun, WORDS, type InspectRun } from './inspect-fixtures.ts'
import { runsAlone } from '../support/file-lock.ts'

// Bounds real processes' timing: no other test file runs beside it (test/support/file-lock.ts).
runsAlone()

const nats = await requireService('nats')
const log = pino({ level: 'silent' })

interface ApiError {
  error: { code: string; message: string }
}

async function api<T = Record<string, unknown>>(m: RunningMonitor, path: string, init: RequestInit = {}): Promise<{ status: number; body: T; headers: Headers }> {
  const res = await fetch(`${m.url}${path}`, { signal: AbortSignal.timeout(8000), ...init })
  return { status: res.status, body: (await res.json()) as T, headers: res.headers }
}


describe.skipIf(!nats.available)('the monitor asks a pipeline\'s workers (inspect API, NATS)', () => {
  const cluster = `i${randomUUID().slice(0, 8)}`
  let workerBus: NatsBus
  let monitorBus: NatsBus
  let fx: InspectRun
  let monitor: RunningMonitor
  let q: (extra: Record<string, string>) => string
  const extra: Subscription[] = []
  const monitors: RunningMonitor[] = []
  /** A monitor of its own on the same bus (another timeout, a token). */
  const another = async (options: { inspectTimeoutMs?: number; token?: string }): Promise<RunningMonitor> => {
    const m = await startMonitor({ bus: monitorBus, cluster, port: 0, log, intervalMs: 100, ...options })
    monitors.push(m)
    return m
  }
  /** Health of a pipeline no worker answers for, so the monitor knows its name. */
  const announce = (pipeline: string): void => workerBus.publish(progressSubjects.health(cluster, pipeline), health({ cluster, pipeline, actors: [] }))
  const known = async (m: RunningMonitor, pipeline: string): Promise<void> => {
    await eventually(async () => {
      announce(pipeline)
      expect(m.view.pipelines().some((p) => p.pipeline === pipeline)).toBe(true)
    }, 5000)
  }

  beforeAll(async () => {
    workerBus = await NatsBus.connect({ servers: [nats.url], name: 'inspect-test-worker', log })
    monitorBus = await NatsBus.connect({ servers: [nats.url], name: 'inspect-test-monitor', log })
    fx = await startInspectRun(workerBus, { cluster })
    monitor = await startMonitor({ bus: monitorBus, cluster, port: 0, log, intervalMs: 100 })
    q = (more) => new URLSearchParams({ pipeline: fx.pipeline.name, ...more }).toString()
    await fx.settled()
    await eventually(async () => expect(monitor.view.pipelines().map((p) => p.pipeline)).toContain(fx.pipeline.name), 5000)
  }, 30_000)
  afterAll(async () => {
    extra.forEach((s) => s.unsubscribe())
    await Promise.all(monitors.map((m) => m.close()))
    await monitor?.close()
    await fx?.stop()
    await workerBus?.close()
    await monitorBus?.close()
  })

  it('lists the views a pipeline serves, with their stage, state, partitions and keying', async () => {
    const r = await api(monitor, `api/views?${q({})}`)
    expect(r.status).toBe(200)
    expect(r.body).toEqual({
      cluster,
      pipeline: fx.pipeline.name,
      kind: 'views',
      views: [
        { name: 'counts', stage: 'count', state: 'count', parallelism: 3, keyed: true },
        { name: 'totals', stage: 'count', state: 'count', parallelism: 3, keyed: true },
      ],
    })
  })

  it('a key\'s lookup answers what a ViewClient reads: the committed value, its partition, epoch and positions', async () => {
    const expected = expectedCounts()
    for (const word of ['ant', 'fox', 'gnu']) {
      const before = await fx.views.get('counts', word)
      const r = await api(monitor, `api/views/lookup?${q({ view: 'counts', key: word, cluster })}`)
      const after = await fx.views.get('counts', word)
      expect(r.status, JSON.stringify(r.body)).toBe(200)
      const body = r.body as { kind: string; found: boolean; value: unknown; partition: number; epoch: number; positions: Record<string, number>; committedAt: number; stage: string }
      expect(body).toMatchObject({ kind: 'lookup', view: 'counts', stage: 'count', key: word, found: true, value: expected[word], partition: before.partition })
      expect(before.value).toBe(expected[word])
      expect(body.partition).toBe(partitionForKey(keyBytes(word), 3))
      // Checkpoints go on every epoch: the monitor's answer lies between the two direct reads.
      expect(body.epoch).toBeGreaterThanOrEqual(before.epoch)
      expect(body.epoch).toBeLessThanOrEqual(after.epoch)
      // Positions move on with each epoch's watermark marks, between the two reads too.
      expect(Object.keys(body.positions)).toEqual(Object.keys(after.positions))
      for (const [topic, offset] of Object.entries(body.positions)) {
        expect(offset).toBeGreaterThanOrEqual(before.positions[topic]!)
        expect(offset).toBeLessThanOrEqual(after.positions[topic]!)
      }
      expect(Object.values(body.positions).reduce((a, b) => a + b, 0)).toBeGreaterThan(0)
    }
  })

  it('a projected view serves its projection; an absent key is not found, with the partition that would hold it', async () => {
    const totals = await api(monitor, `api/views/lookup?${q({ view: 'totals', key: 'bee' })}`)
    expect(totals.body).toMatchObject({ found: true, value: { word: 'bee', n: expectedCounts().bee } })
    const absent = await api(monitor, `api/views/lookup?${q({ view: 'counts', key: 'zebra' })}`)
    expect(absent.status).toBe(200)
    expect(absent.body).toMatchObject({ kind: 'lookup', found: false, partition: partitionForKey(keyBytes('zebra'), 3) })
    expect(absent.body).not.toHaveProperty('value')
  })

  it('a prefix lists the entries in key order as a ViewClient scan does, a page at a time', async () => {
    const direct = await fx.views.scan('counts', { prefix: 'ant' })
    const r = await api<{ kind: string; entries: Array<{ key: string; value: unknown; partition: number }>; next?: string; partitions: unknown[] }>(monitor, `api/views/lookup?${q({ view: 'counts', prefix: 'ant' })}`)
    expect(r.status).toBe(200)
    expect(r.body.kind).toBe('scan')
    expect(r.body.entries).toEqual(direct.entries)
    expect(r.body.entries.map((e) => e.key)).toEqual(['ant', 'antelope', 'anthem'])
    expect(r.body.partitions).toHaveLength(3)
    expect(r.body.next).toBeUndefined()
    // Pages of 4 through every key.
    const keys: string[] = []
    let after: string | undefined
    for (let page = 0; page < 10; page++) {
      const p = await api<{ entries: Array<{ key: string }>; next?: string }>(monitor, `api/views/lookup?${q({ view: 'counts', prefix: '', limit: '4', ...(after === undefined ? {} : { after }) })}`)
      expect(p.body.entries.length).toBeLessThanOrEqual(4)
      keys.push(...p.body.entries.map((e) => e.key))
      if (p.body.next === undefined) break
      after = p.body.next
    }
    expect(keys).toEqual([...WORDS].sort())
  })

  it('samples a stage\'s latest committed records: the same records its output topic ends with, decoded, headers included', async () => {
    const r = await api<{ kind: string; stage: string; topic: string; omitted: number; records: Array<Record<string, unknown>> }>(monitor, `api/sample?${q({ stage: 'count', n: '5' })}`)
    expect(r.status, JSON.stringify(r.body)).toBe(200)
    expect(r.body).toMatchObject({ kind: 'sample', stage: 'count', topic: fx.pipeline.outputTopic(fx.pipeline.stage('count')!), omitted: 0, purged: false })
    const direct = await sampleEdge(fx.run.pipe, fx.pipeline, 'count', 5)
    expect(r.body.records).toEqual(direct.map((d) => ({ partition: d.partition, offset: d.offset, key: d.key, timestamp: d.timestamp, headers: d.headers, value: d.value })))
    for (const rec of r.body.records) {
      expect(rec.headers).toEqual({ 'x-counted-by': 'count' })
      expect(rec.value).toMatchObject({ word: rec.key })
    }
    // A source's output too, 20 records by default.
    const words = await api<{ records: Array<{ key: string; value: unknown }> }>(monitor, `api/sample?${q({ stage: 'words' })}`)
    expect(words.status).toBe(200)
    expect(words.body.records).toHaveLength(20)
    for (const rec of words.body.records) {
      expect(WORDS).toContain(rec.key)
      expect(rec.value).toBe(1)
    }
  })

  it('refuses bad queries with 400 and names what is wrong, before asking any worker', async () => {
    const cases: Array<[string, RegExp]> = [
      [`api/sample?${q({ stage: 'count', n: String(MAX_SAMPLE + 1) })}`, /^n: Number must be less than or equal to 50/],
      [`api/sample?${q({ stage: 'count', n: '0' })}`, /^n: /],
      [`api/sample?${q({ stage: 'count', n: 'many' })}`, /^n: a whole number/],
      [`api/sample?${q({ stage: 'no such' })}`, /^stage: a stage name/],
      [`api/sample?${q({ stage: 'count', extra: '1' })}`, /Unrecognized key/],
      [`api/views/lookup?${q({ view: 'counts' })}`, /^key: give either key= or prefix=/],
      [`api/views/lookup?${q({ view: 'counts', key: 'a', prefix: 'a' })}`, /^key: give either key= or prefix=/],
      [`api/views/lookup?${q({ view: 'counts', key: 'a', limit: '3' })}`, /^after: after= and limit= go with prefix=/],
      [`api/views/lookup?${q({ view: 'counts', prefix: 'a', limit: '51' })}`, /^limit: /],
      ['api/views', /^pipeline: Required/],
      [`api/views?${q({ cluster: 'a.b' })}`, /^cluster: a name is/],
    ]
    for (const [path, message] of cases) {
      const r = await api<ApiError>(monitor, path)
      expect(r.status, path).toBe(400)
      expect(r.body.error.code, path).toBe('WEIR_MONITOR_BAD_REQUEST')
      expect(r.body.error.message, path).toMatch(message)
    }
  })

  it('an unknown view, stage or pipeline is a 404 naming what there is', async () => {
    const view = await api<ApiError>(monitor, `api/views/lookup?${q({ view: 'tally', key: 'a' })}`)
    expect(view.status).toBe(404)
    expect(view.body.error).toMatchObject({ code: 'WEIR_VIEW_UNKNOWN' })
    expect(view.body.error.message).toMatch(/views: counts, totals/)
    const stage = await api<ApiError>(monitor, `api/sample?${q({ stage: 'cont' })}`)
    expect(stage.status).toBe(404)
    expect(stage.body.error).toMatchObject({ code: 'WEIR_STAGE_UNKNOWN' })
    expect(stage.body.error.message).toMatch(/did you mean 'count'\?/)
    const pipeline = await api<ApiError>(monitor, 'api/sample?pipeline=nope&stage=count')
    expect(pipeline.status).toBe(404)
    expect(pipeline.body.error.code).toBe('WEIR_MONITOR_NOT_FOUND')
    const elsewhere = await api<ApiError>(monitor, `api/views?${q({ cluster: 'other' })}`)
    expect(elsewhere.status).toBe(404)
  })

  it('the inspect API needs the token like every other path', async () => {
    const m = await another({ token: 'sesame' })
    await eventually(async () => expect(m.view.pipelines().map((p) => p.pipeline)).toContain(fx.pipeline.name), 5000)
    expect((await fetch(`${m.url}api/views?${q({})}`)).status).toBe(401)
    expect((await fetch(`${m.url}api/sample?${q({ stage: 'count' })}`)).status).toBe(401)
    const ok = await api(m, `api/sample?${q({ stage: 'count', n: '1' })}`, { headers: { authorization: 'Bearer sesame' } })
    expect(ok.status).toBe(200)
  })

  it('a pipeline whose workers do not answer is a quick 503, a slow one a 504 within the timeout, a broken reply a 502', async () => {
    const m = await another({ inspectTimeoutMs: 600 })
    // Nobody answers: NATS says so at once.
    await known(m, 'ghost')
    let started = Date.now()
    const ghost = await api<ApiError>(m, 'api/views?pipeline=ghost')
    expect(ghost.status).toBe(503)
    expect(ghost.headers.get('retry-after')).toBe('1')
    expect(ghost.body.error.code).toBe('WEIR_MONITOR_NO_WORKER')
    expect(ghost.body.error.message).toMatch(/no worker of pipeline ghost .* answers/)
    expect(Date.now() - started).toBeLessThan(500)

    // A worker that never answers.
    let slowAsked = 0
    extra.push(workerBus.respond(subjects.inspect(cluster, 'slow'), () => {
      slowAsked++
      return new Promise(() => undefined)
    }))
    await known(m, 'slow')
    started = Date.now()
    const slow = await api<ApiError>(m, 'api/sample?pipeline=slow&stage=count')
    const took = Date.now() - started
    expect(slow.status).toBe(504)
    expect(slow.body.error.code).toBe('WEIR_MONITOR_INSPECT_TIMEOUT')
    expect(took).toBeGreaterThanOrEqual(550)
    expect(took).toBeLessThan(2000)

    // Too many questions at once: the monitor refuses more rather than queueing them. A monitor
    // with a longer timeout, so the 16 are still waiting when the 17th comes however slowly
    // they reach the worker on a busy machine.
    const patient = await another({ inspectTimeoutMs: 4000 })
    await known(patient, 'slow')
    const askedBefore = slowAsked
    const pending = Array.from({ length: 16 }, () => api(patient, 'api/views?pipeline=slow'))
    await eventually(async () => expect(slowAsked - askedBefore).toBe(16), 3000)
    const busy = await api<ApiError>(patient, 'api/views?pipeline=slow')
    expect(busy.status).toBe(503)
    expect(busy.body.error.code).toBe('WEIR_MONITOR_BUSY')
    expect((await Promise.all(pending)).map((p) => p.status)).toEqual(Array(16).fill(504))
    expect(await (await fetch(`${patient.url}metrics`)).text()).toContain('weir_monitor_inspect_requests_total{kind="views",status="503"} 1')

    // A reply that breaks the protocol is not passed on.
    // A views reply that is not one, and a well-formed views reply to a sample request.
    extra.push(workerBus.respond(subjects.inspect(cluster, 'odd'), (raw) => ({ ok: true, kind: 'views', pipeline: 'odd', views: (raw as { kind: string }).kind === 'views' ? 'all of them' : [] })))
    await known(m, 'odd')
    const odd = await api<ApiError>(m, 'api/views?pipeline=odd')
    expect(odd.status).toBe(502)
    expect(odd.body.error.code).toBe('WEIR_MONITOR_BAD_REPLY')
    const wrongKind = await api<ApiError>(m, 'api/sample?pipeline=odd&stage=x')
    expect(wrongKind.status).toBe(502)

    // The monitor's own figures never wait on any of that, and count it.
    expect((await api(m, 'api/status')).status).toBe(200)
    const metrics = await (await fetch(`${m.url}metrics`)).text()
    expect(metrics).toContain('weir_monitor_inspect_requests_total{kind="views",status="503"} 1')
    expect(metrics).toContain('weir_monitor_inspect_requests_total{kind="sample",status="504"} 1')
    expect(metrics).toContain('weir_monitor_inspect_requests_total{kind="views",status="502"} 1')
  })

  it('when the workers are gone the monitor still serves its status and says no worker answers', async () => {
    await fx.stopWorkers()
    // NATS hears of the unsubscription a moment later; until then a request would wait for a reply that never comes.
    await eventually(async () => {
      await expect(workerBus.request(subjects.inspect(cluster, fx.pipeline.name), { v: 1, kind: 'views' }, { timeoutMs: 300 })).rejects.toBeInstanceOf(BusNoResponderError)
    }, 5000)
    const views = await api<ApiError>(monitor, `api/views?${q({})}`)
    expect(views.status).toBe(503)
    expect(views.body.error.code).toBe('WEIR_MONITOR_NO_WORKER')
    const status = await api<{ pipelines: Array<{ pipeline: string }> }>(monitor, 'api/status')
    expect(status.status).toBe(200)
    expect(status.body.pipelines.map((p) => p.pipeline)).toContain(fx.pipeline.name)
  })
})
