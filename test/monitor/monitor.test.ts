/**
 * The monitor against a real NATS: synthetic workers (fixtures) publish progress and
 * health for a 3-stage pipeline; the monitor under test is the real one, read over HTTP.
 */
import { randomUUID } from 'node:crypto'
import { pino } from 'pino'
import { Counter, Registry } from 'prom-client'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { eventually } from '../support/eventually.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { progressSubjects, sloAlert, type ActorProgress, type SloAlert } from '../../runtime/control/progress.ts'
import { startMonitor, type MonitorOptions, type MonitorStatus, type RunningMonitor } from '../../monitor/monitor.ts'
import { requireService } from '../support/services.ts'
import { health, progress } from './fixtures.ts'

const nats = await requireService('nats')
const log = pino({ level: 'silent' })
const INTERVAL = 200

/** A pipeline's workers as the monitor sees them: progress per actor and one worker's health, every INTERVAL. */
class FakeWorkers {
  /** Per actor: how far behind now its watermark is, and other fields to send. */
  readonly actors = new Map<string, { lagMs: number | null; fields: Partial<ActorProgress> & { stage: string; partition: number } }>()
  private timer: NodeJS.Timeout | undefined
  readonly startedAt = Date.now() - 60_000

  constructor(private readonly bus: NatsBus, readonly cluster: string) {
    for (const stage of ['source', 'ema', 'sink']) for (const partition of [0, 1]) this.set(stage, partition, 0)
  }

  set(stage: string, partition: number, lagMs: number | null, fields: Partial<ActorProgress> = {}): void {
    this.actors.set(`${stage}/${partition}`, { lagMs, fields: { stage, partition, ...fields } })
  }

  publishOnce(): void {
    const now = Date.now()
    this.bus.publish(progressSubjects.health(this.cluster, 'p'), health({ cluster: this.cluster, at: now, startedAt: this.startedAt, intervalMs: INTERVAL, actors: [...this.actors.keys()] }))
    for (const { lagMs, fields } of this.actors.values()) {
      const watermark = lagMs === null ? null : now - lagMs
      this.bus.publish(progressSubjects.progress(this.cluster, 'p'), progress({ cluster: this.cluster, at: now, startedAt: this.startedAt, lastCommitAt: now - 100, watermark, watermarkChangedAt: watermark === null ? null : now - 2, ...fields }))
    }
  }

  start(): void {
    this.publishOnce()
    this.timer = setInterval(() => this.publishOnce(), INTERVAL)
  }

  stop(): void {
    clearInterval(this.timer)
  }
}

async function get(url: string, init: RequestInit = {}): Promise<{ status: number; body: string; headers: Headers }> {
  const res = await fetch(url, { redirect: 'manual', ...init })
  return { status: res.status, body: await res.text(), headers: res.headers }
}

async function status(m: RunningMonitor): Promise<MonitorStatus> {
  const r = await get(`${m.url}api/status`)
  expect(r.status).toBe(200)
  return JSON.parse(r.body) as MonitorStatus
}


/** Actor rows and malformed count, without the time-dependent parts of /api/status. */
async function actorsOf(m: RunningMonitor): Promise<Array<Record<string, unknown>>> {
  const r = await get(`${m.url}api/actors`)
  return (JSON.parse(r.body) as { actors: Array<Record<string, unknown>> }).actors.map(({ state: _s, ...rest }) => rest)
}

describe.skipIf(!nats.available)('weir monitor on NATS', () => {
  let pub: NatsBus
  let bus: NatsBus
  const monitors: RunningMonitor[] = []
  const workers: FakeWorkers[] = []
  const cluster = (): string => `m${randomUUID().slice(0, 8)}`
  const start = async (options: Partial<MonitorOptions> & { cluster: string }): Promise<RunningMonitor> => {
    const m = await startMonitor({ bus, port: 0, log, intervalMs: 100, ...options })
    monitors.push(m)
    return m
  }
  const fake = (c: string): FakeWorkers => {
    const f = new FakeWorkers(pub, c)
    workers.push(f)
    return f
  }

  beforeAll(async () => {
    pub = await NatsBus.connect({ servers: [nats.url], name: 'monitor-test-publisher', log })
    bus = await NatsBus.connect({ servers: [nats.url], name: 'monitor-test-monitor', log })
  })
  afterEach(async () => {
    workers.splice(0).forEach((w) => w.stop())
    await Promise.all(monitors.splice(0).map((m) => m.close()))
  })
  afterAll(async () => {
    await pub?.close()
    await bus?.close()
  })

  it('shows each output, its stages and the stage holding it back, and alerts on a broken SLO', async () => {
    const c = cluster()
    const alerts: SloAlert[] = []
    pub.subscribe(progressSubjects.alerts(c, 'p'), (m) => alerts.push(sloAlert.parse(m)))
    const m = await start({ cluster: c, slos: [{ pipeline: 'p', output: 'sink', timelinessMs: 2000 }] })
    const w = fake(c)
    for (const p of [0, 1]) {
      w.set('source', p, 500)
      w.set('ema', p, 4000 - p * 500, { lag: 6200, lagByInput: { source: 6200 }, errors: 0 })
      w.set('sink', p, 4200 - p * 500, { lag: 3, lagByInput: { ema: 3 }, endToEndMs: 900 + p * 100 })
    }
    w.start()
    const s = await eventually(async () => {
      const s = await status(m)
      expect(s.pipelines).toHaveLength(1)
      expect(s.pipelines[0]!.stages.map((st) => st.actors.running)).toEqual([2, 2, 2])
      expect(s.pipelines[0]!.outputs[0]!.slo?.state).toBe('broken')
      return s
    })
    const p = s.pipelines[0]!
    expect(p).toMatchObject({ cluster: c, pipeline: 'p', topologyKnown: true, stalled: false })
    const out = p.outputs[0]!
    expect(out.output).toBe('sink')
    expect(out.timelinessMs).toBeGreaterThanOrEqual(4200)
    expect(out.timelinessMs).toBeLessThan(4200 + 1000)
    expect(out.endToEndMs).toBe(1000)
    expect(out.holdingBack?.stage).toBe('ema')
    expect(out.holdingBack?.reason).toMatch(/^ema adds 3\.\d s of watermark delay; 12 400 unprocessed records$/)
    const ema = p.stages.find((st) => st.name === 'ema')!
    expect(ema).toMatchObject({ kind: 'processor', inputs: ['source'], parallelism: 2, unprocessed: 12_400, unprocessedByInput: { source: 12_400 }, actors: { running: 2, missing: 0, total: 2 } })
    expect(ema.watermarkLagMs).toBeGreaterThanOrEqual(4000)
    expect(p.workers).toMatchObject([{ worker: 'w1', hostname: 'host-a', state: 'ok' }])
    await eventually(async () => expect(alerts.map((a) => [a.state, a.output, a.holdingBack])).toEqual([['broken', 'sink', 'ema']]))
  })

  it('shows an actor that falls silent as missing and blames its stage', async () => {
    const c = cluster()
    const m = await start({ cluster: c })
    const w = fake(c)
    w.start()
    await eventually(async () => expect((await status(m)).pipelines[0]?.stages.map((st) => st.actors.running)).toEqual([2, 2, 2]))
    w.actors.delete('ema/1')
    const s = await eventually(async () => {
      const s = await status(m)
      // Before it counts as missing, its stale watermark shows as delay; then silence wins.
      expect(s.pipelines[0]!.outputs[0]!.holdingBack?.reason).toMatch(/^ema: 1 of 2 actors send no progress for \d+ s$/)
      return s
    })
    expect(s.pipelines[0]!.stages.find((st) => st.name === 'ema')!.actors).toMatchObject({ running: 1, missing: 1, total: 2 })
  })

  it('drops and counts a malformed message, which changes nothing', async () => {
    const c = cluster()
    const m = await start({ cluster: c })
    const w = fake(c)
    // Published until seen: the monitor's subscription reaches the server a moment after start
    // returns, and a message published before that is not delivered (the next interval's would be).
    await eventually(async () => {
      w.publishOnce()
      expect(await actorsOf(m)).toHaveLength(6)
    })
    const before = await actorsOf(m)
    const subject = progressSubjects.progress(c, 'p')
    const valid = progress({ cluster: c, stage: 'ema', partition: 0, watermark: Date.now() })
    pub.publish(subject, { ...valid, watermark: 'soon' })
    pub.publish(subject, { ...valid, v: 2 })
    pub.publish(subject, { ...valid, pipeline: 'other' }) // does not match its subject
    await eventually(async () => expect((await status(m)).monitor.malformed).toBe(3))
    expect(await actorsOf(m)).toEqual(before)
    expect((await get(`${m.url}metrics`)).body).toMatch(/^weir_monitor_events_malformed_total 3$/m)
  })

  it('shows the full picture again within a few intervals after a restart', async () => {
    const c = cluster()
    const w = fake(c)
    w.set('ema', 0, 3000, { lag: 50, lagByInput: { source: 50 } })
    w.set('sink', 0, 3100)
    w.start()
    const first = await start({ cluster: c })
    await eventually(async () => expect((await status(first)).pipelines[0]?.outputs[0]?.holdingBack?.stage).toBe('ema'))
    await first.close()
    const restartedAt = Date.now()
    const second = await start({ cluster: c })
    const s = await eventually(async () => {
      const s = await status(second)
      const p = s.pipelines[0]!
      expect(p.topologyKnown).toBe(true)
      expect(p.stages.map((st) => st.actors.running)).toEqual([2, 2, 2])
      expect(p.outputs[0]!.holdingBack?.stage).toBe('ema')
      return s
    }, 3 * INTERVAL + 500)
    expect(Date.now() - restartedAt).toBeLessThan(3 * INTERVAL + 500)
    expect(s.pipelines[0]!.outputs[0]!.timelinessMs).toBeGreaterThanOrEqual(3000)
  })

  it('requires the bearer token on every endpoint when one is set', async () => {
    const m = await start({ cluster: cluster(), token: 's3cret' })
    for (const path of ['api/status', 'api/actors', 'metrics', '', 'app.js', 'nope']) {
      const r = await get(`${m.url}${path}`)
      expect(r.status, path).toBe(401)
      expect(JSON.parse(r.body).error.code).toBe('WEIR_MONITOR_UNAUTHORIZED')
    }
    expect((await get(`${m.url}api/status`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401)
    expect((await get(`${m.url}api/status`, { headers: { authorization: 'Bearer s3cret' } })).status).toBe(200)
    // The dashboard link trades ?token= for an HttpOnly cookie and drops it from the address.
    const link = await get(`${m.url}?token=s3cret`)
    expect(link.status).toBe(303)
    expect(link.headers.get('location')).toBe('/')
    const cookie = link.headers.get('set-cookie')!
    expect(cookie).toMatch(/HttpOnly/)
    expect((await get(`${m.url}app.js`, { headers: { cookie: cookie.split(';')[0]! } })).status).toBe(200)
    expect((await get(`${m.url}?token=wrong`)).status).toBe(401)
  })

  it('answers /livez and /readyz without the token: ready while its bus is connected, failed once the bus is closed for good', async () => {
    const own = await NatsBus.connect({ servers: [nats.url], name: 'monitor-test-probes', log })
    const m = await start({ cluster: cluster(), token: 's3cret', bus: own })
    expect((await get(`${m.url}api/status`)).status).toBe(401)
    for (const [path, status] of [['livez', 'live'], ['readyz', 'ready']] as const) {
      const r = await get(`${m.url}${path}`)
      expect(r.status, path).toBe(200)
      expect(JSON.parse(r.body), path).toEqual({ status })
    }
    await own.close()
    const ready = await get(`${m.url}readyz`)
    expect(ready.status).toBe(503)
    expect(JSON.parse(ready.body)).toEqual({ status: 'not ready', reason: 'the control bus is closed' })
    expect((await get(`${m.url}livez`)).status).toBe(503)
  })

  it('refuses a non-loopback host without a token, bodies, other methods and long URLs', async () => {
    await expect(start({ cluster: cluster(), host: '0.0.0.0' })).rejects.toMatchObject({ code: 'WEIR_CONFIG_INVALID', message: expect.stringContaining('--host') })
    const m = await start({ cluster: cluster() })
    expect((await get(`${m.url}api/status`, { method: 'POST', body: 'x' })).status).toBe(405)
    expect((await get(`${m.url}api/status?${'a'.repeat(3000)}`)).status).toBe(414)
    expect((await get(`${m.url}api/history`)).status).toBe(400)
    const page = await get(m.url)
    expect(page.status).toBe(200)
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
    expect(page.body).toContain('id="app"')
  })

  it('serves the output gauges, its own metrics and merged registries on /metrics, and the history', async () => {
    const c = cluster()
    const extra = new Registry()
    new Counter({ name: 'weir_worker_test_total', help: 'from the embedded worker', registers: [extra] }).inc(7)
    const m = await start({ cluster: c, extraRegistries: [extra], slos: [{ pipeline: 'p', output: 'sink', timelinessMs: 60_000 }] })
    const w = fake(c)
    w.set('sink', 0, 1500)
    w.start()
    // A watermark change after the monitor knows the actor feeds the view-delay histogram.
    await eventually(async () => expect((await status(m)).pipelines[0]?.outputs[0]?.slo?.state).toBe('ok'))
    const text = await eventually(async () => {
      const t = (await get(`${m.url}metrics`)).body
      expect(t).toMatch(new RegExp(`^weir_output_timeliness_seconds\\{cluster="${c}",pipeline="p",output="sink"\\} 1\\.\\d+$`, 'm'))
      expect(t).toMatch(/^weir_monitor_view_delay_seconds_count [1-9]\d*$/m)
      return t
    })
    expect(text).toMatch(new RegExp(`^weir_output_slo_broken\\{cluster="${c}",pipeline="p",output="sink"\\} 0$`, 'm'))
    expect(text).toMatch(new RegExp(`^weir_stage_watermark_lag_seconds\\{cluster="${c}",pipeline="p",stage="ema"\\}`, 'm'))
    expect(text).toContain('weir_output_end_to_end_seconds')
    expect(text).toMatch(/^weir_worker_test_total 7$/m)
    expect(text).toContain('process_cpu_user_seconds_total')
    const h = JSON.parse((await get(`${m.url}api/history?pipeline=p&output=sink`)).body)
    expect(h).toMatchObject({ cluster: c, pipeline: 'p', output: 'sink', slo: { timelinessMs: 60_000 } })
    expect(h.points.length).toBeGreaterThan(0)
    expect(h.points.at(-1).timelinessMs).toBeGreaterThanOrEqual(1500)
  })
})
