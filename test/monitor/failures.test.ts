/**
 * The monitor's view of actors that failed for good: /api/status lists them per pipeline
 * with their error and names the failed stage as what holds the outputs back; one alert
 * goes out when an actor fails, one more when it is quarantined, and one when it runs
 * again, none while nothing changes, and none for an actor that merely went silent.
 */
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { FailureAlerts } from '../../monitor/failures.ts'
import { MonitorView } from '../../monitor/model.ts'
import { buildStatus } from '../../monitor/status.ts'
import { actorAlert, progressSubjects, type ActorAlert, type ActorProgress } from '../../runtime/control/progress.ts'
import { health, progress } from './fixtures.ts'

const log = pino({ level: 'silent' })

function setUp(): { view: MonitorView; apply(p: ActorProgress): void; evaluate(): ActorAlert[]; published: Array<{ subject: string; alert: ActorAlert }>; now(): number } {
  let clock = Date.now()
  const view = new MonitorView({ now: () => clock })
  const published: Array<{ subject: string; alert: ActorAlert }> = []
  const alerts = new FailureAlerts({ publish: (subject, alert) => void published.push({ subject, alert }), log })
  view.apply(progressSubjects.health('test', 'p'), health({ worker: 'w1', at: clock }))
  view.apply(progressSubjects.health('test', 'p'), health({ worker: 'w2', at: clock }))
  return {
    view,
    published,
    now: () => clock,
    apply: (p) => {
      clock += 10
      expect(view.apply(progressSubjects.progress('test', 'p'), { ...p, at: clock })).toBe('applied')
    },
    evaluate: () => alerts.evaluate(buildStatus(view, clock, 0, () => null).pipelines, view, clock),
  }
}

const boom = { code: 'WEIR_ACTOR_FAILED', message: 'actor ema/1 stopped: ema failed in onTimer (processing-time timer at 5): boom' }

describe('failed actors in the monitor', () => {
  it('are listed with their error, named as what holds the output back, and alerted once per change', () => {
    const s = setUp()
    for (const stage of ['source', 'ema', 'sink']) for (const partition of [0, 1]) s.apply(progress({ stage, partition, watermark: s.now() - 500 }))
    expect(s.evaluate()).toEqual([])

    // ema/1 fails on w2: reported failed, not quarantined yet.
    s.apply(progress({ stage: 'ema', partition: 1, worker: 'w2', lifecycle: 'failed', watermark: s.now() - 500, failure: { ...boom, at: s.now(), quarantined: false, failedOn: ['w2'] } }))
    const status = buildStatus(s.view, s.now(), 0, () => null).pipelines[0]!
    expect(status.failedActors).toMatchObject([{ actor: 'ema/1', stage: 'ema', worker: 'w2', quarantined: false, message: boom.message }])
    expect(status.outputs[0]!.holdingBack).toMatchObject({ stage: 'ema', failedActors: ['ema/1'] })
    expect(status.stages.find((x) => x.name === 'ema')).toMatchObject({ stalled: true, actors: { failed: 1 } })
    const first = s.evaluate()
    expect(first).toHaveLength(1)
    expect(actorAlert.parse(first[0])).toMatchObject({ kind: 'actor', actor: 'ema/1', stage: 'ema', worker: 'w2', state: 'failed', quarantined: false, error: { code: 'WEIR_ACTOR_FAILED' } })
    expect(s.published[0]!.subject).toBe('weir.test.p.alerts')
    expect(s.evaluate()).toEqual([])

    // It failed on w1 too: quarantined.
    s.apply(progress({ stage: 'ema', partition: 1, worker: 'w1', lifecycle: 'failed', failure: { ...boom, at: s.now(), quarantined: true, failedOn: ['w2', 'w1'] } }))
    const quarantined = s.evaluate()
    expect(quarantined).toMatchObject([{ state: 'failed', quarantined: true }])
    expect(quarantined[0]!.reason).toMatch(/quarantined after failing on w2 and w1; it runs nowhere until cleared \(weir actor clear p ema\/1\)/)

    // Cleared, it runs again on w2.
    s.apply(progress({ stage: 'ema', partition: 1, worker: 'w2', lifecycle: 'running', startedAt: s.now() }))
    expect(s.evaluate()).toMatchObject([{ actor: 'ema/1', state: 'recovered', worker: 'w2', error: null }])
    expect(buildStatus(s.view, s.now(), 0, () => null).pipelines[0]!.failedActors).toEqual([])
    expect(s.evaluate()).toEqual([])
  })

  it('a failed actor that goes silent is not reported recovered', () => {
    const s = setUp()
    s.apply(progress({ stage: 'ema', partition: 1, worker: 'w2', lifecycle: 'failed', failure: { ...boom, at: s.now(), quarantined: false, failedOn: ['w2'] } }))
    expect(s.evaluate()).toHaveLength(1)
    s.view.prune(s.now() + 10 * 60_000)
    expect(s.evaluate()).toEqual([])
  })
})
