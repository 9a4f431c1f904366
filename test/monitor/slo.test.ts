import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { LocalBus } from '../../runtime/control/local/local-bus.ts'
import { sloAlert, type SloAlert } from '../../runtime/control/progress.ts'
import type { SloConfig } from '../../monitor/config.ts'
import { nextState, SloTracker } from '../../monitor/slo.ts'
import type { PipelineStatus } from '../../monitor/status.ts'

const log = pino({ level: 'silent' })

/** A pipeline status with one output 'sink' at the given timeliness. */
function pipeline(timelinessMs: number | null, stalled = false, cluster = 'prod'): PipelineStatus {
  return {
    cluster,
    pipeline: 'p',
    topologyKnown: true,
    fingerprint: 'f',
    intervalMs: 1000,
    stalled,
    outputs: [{ output: 'sink', timelinessMs, endToEndMs: null, watermark: null, ended: false, holdingBack: { stage: 'ema', reason: 'ema adds 3.0 s of watermark delay' }, slo: null }],
    stages: [],
    workers: [],
    failedActors: [],
  }
}

const buses: LocalBus[] = []
afterEach(async () => {
  await Promise.all(buses.splice(0).map((b) => b.close()))
})

/** A tracker publishing on a real in-process bus, and what arrives on the alerts subject. */
function setup(slos: SloConfig[] = [{ pipeline: 'p', output: 'sink', timelinessMs: 1000 }]): { tracker: SloTracker; received: Array<{ subject: string; alert: SloAlert }> } {
  const bus = new LocalBus(log)
  buses.push(bus)
  const received: Array<{ subject: string; alert: SloAlert }> = []
  bus.subscribe('weir.*.*.alerts', (m, subject) => received.push({ subject, alert: sloAlert.parse(m) }))
  return { tracker: new SloTracker(slos, { publish: (s, a) => bus.publish(s, a), log }), received }
}

const delivered = () => new Promise((r) => setTimeout(r, 5))

describe('SLO alerts', () => {
  it('publishes exactly one alert per transition into and out of broken', async () => {
    const { tracker, received } = setup()
    const steps: Array<[number | null, string]> = [[500, 'ok'], [1500, 'broken'], [1600, 'broken'], [800, 'ok'], [900, 'ok'], [2000, 'broken']]
    for (const [t, state] of steps) {
      tracker.evaluate([pipeline(t)], 1)
      expect(tracker.stateOf('prod', 'p', 'sink')).toEqual({ timelinessMs: 1000, state })
    }
    await delivered()
    expect(received.map((r) => [r.alert.state, r.alert.timelinessMs])).toEqual([['broken', 1500], ['recovered', 800], ['broken', 2000]])
    expect(received[0]).toMatchObject({
      subject: 'weir.prod.p.alerts',
      alert: { v: 1, cluster: 'prod', pipeline: 'p', output: 'sink', timelinessSloMs: 1000, holdingBack: 'ema', reason: 'timeliness 1.5 s exceeds the SLO of 1.0 s; ema adds 3.0 s of watermark delay' },
    })
  })

  it('goes from unknown straight to broken with an alert, but not from unknown to ok', async () => {
    const { tracker, received } = setup()
    expect(tracker.stateOf('prod', 'p', 'sink')?.state).toBe('unknown')
    tracker.evaluate([pipeline(5000)], 1)
    await delivered()
    expect(received.map((r) => r.alert.state)).toEqual(['broken'])
  })

  it('breaks without a watermark only when the pipeline is stalled', async () => {
    const { tracker, received } = setup()
    tracker.evaluate([pipeline(null, false)], 1)
    expect(tracker.stateOf('prod', 'p', 'sink')?.state).toBe('unknown')
    tracker.evaluate([pipeline(null, true)], 2)
    await delivered()
    expect(received.map((r) => [r.alert.state, r.alert.timelinessMs, r.alert.reason.split(';')[0]])).toEqual([['broken', null, 'no output watermark and the pipeline is stalled']])
  })

  it('keeps separate state per cluster, and a cluster-specific SLO beats the general one', async () => {
    const { tracker, received } = setup([
      { pipeline: 'p', output: 'sink', timelinessMs: 1000 },
      { cluster: 'edge', pipeline: 'p', output: 'sink', timelinessMs: 10_000 },
    ])
    tracker.evaluate([pipeline(5000, false, 'prod'), pipeline(5000, false, 'edge')], 1)
    await delivered()
    expect(received.map((r) => r.subject)).toEqual(['weir.prod.p.alerts'])
    expect(tracker.stateOf('edge', 'p', 'sink')).toEqual({ timelinessMs: 10_000, state: 'ok' })
    expect(tracker.stateOf('prod', 'p', 'other')).toBeNull()
  })

  it('has a transition table that keeps its state on no information', () => {
    expect(nextState('ok', null, 1000, false)).toBe('ok')
    expect(nextState('broken', null, 1000, false)).toBe('broken')
    expect(nextState('broken', 1000, 1000, false)).toBe('ok')
  })
})
