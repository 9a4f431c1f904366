import { describe, expect, it } from 'vitest'
import {
  combineWatermarks,
  counterRate,
  formatCount,
  holdingBack,
  outputStatus,
  pipelineStalled,
  stageStatus,
  type ActorSnapshot,
  type CounterSample,
  type FailedActor, type WaitingActor,
  type StageStatus,
  type Topology,
} from '../../monitor/timeliness.ts'
import { MonitorView } from '../../monitor/model.ts'
import { buildStatus } from '../../monitor/status.ts'
import { progressSubjects } from '../../runtime/control/progress.ts'
import { health, progress, snapshot, THREE_STAGES } from './fixtures.ts'

const now = 1_700_000_000_000
const wm = (watermark: number | null, extra: { idle?: boolean; ended?: boolean } = {}) => ({ watermark, idle: extra.idle ?? false, ended: extra.ended ?? false })

describe('combined watermarks', () => {
  it('is the minimum over the actors that are not idle', () => {
    expect(combineWatermarks([wm(100), wm(50), wm(10, { idle: true })])).toBe(50)
  })

  it('is the maximum when every actor is idle, so an idle stream reports where it is', () => {
    expect(combineWatermarks([wm(100, { idle: true }), wm(50, { idle: true })])).toBe(100)
  })

  it('counts ended actors as +infinity: all ended is ended, some ended do not hold the rest', () => {
    expect(combineWatermarks([wm(null, { ended: true }), wm(70)])).toBe(70)
    expect(combineWatermarks([wm(null, { ended: true }), wm(5, { ended: true })])).toBe(Infinity)
  })

  it('is null before a counted actor has a watermark, or without actors', () => {
    expect(combineWatermarks([wm(100), wm(null)])).toBeNull()
    expect(combineWatermarks([wm(100), wm(null, { idle: true })])).toBe(100)
    expect(combineWatermarks([])).toBeNull()
  })
})

describe('output timeliness', () => {
  const stages = new Map<string, StageStatus>()

  it('is now minus the output watermark, with the largest end-to-end latency of its actors', () => {
    const actors = [
      snapshot(progress({ stage: 'sink', partition: 0, watermark: now - 4000, endToEndMs: 800 }), now),
      snapshot(progress({ stage: 'sink', partition: 1, watermark: now - 1500, endToEndMs: 1200 }), now),
    ]
    const o = outputStatus('sink', actors, stages, THREE_STAGES, now)
    expect(o).toMatchObject({ timelinessMs: 4000, endToEndMs: 1200, watermark: now - 4000, ended: false })
  })

  it('is 0 once every output actor ended, and null before a watermark', () => {
    const ended = [snapshot(progress({ stage: 'sink', partition: 0, ended: true }), now)]
    expect(outputStatus('sink', ended, stages, THREE_STAGES, now)).toMatchObject({ timelinessMs: 0, ended: true, watermark: null, holdingBack: null })
    const none = [snapshot(progress({ stage: 'sink', partition: 0, watermark: null }), now)]
    expect(outputStatus('sink', none, stages, THREE_STAGES, now).timelinessMs).toBeNull()
  })
})

describe('counter rates', () => {
  const s = (at: number, recordsIn: number, startedAt = 1): CounterSample => ({ at, startedAt, recordsIn, recordsOut: 0, errors: 0, deadLettered: 0, late: 0 })

  it('is the increase per second over the window', () => {
    expect(counterRate([s(now - 2000, 100), s(now - 1000, 150), s(now, 300)], 'recordsIn', now)).toBe(100)
  })

  it('treats a new startedAt or a decrease as a reset and counts the new value as the increase', () => {
    // 100 → 150 (+50), restart: 30 since start (+30), 60 (+30): 110 over 3 s.
    expect(counterRate([s(now - 3000, 100), s(now - 2000, 150), s(now - 1000, 30, 2), s(now, 60, 2)], 'recordsIn', now)).toBeCloseTo(110 / 3)
    // Same instance id but the counter went down (a publisher that reset without a new startedAt).
    expect(counterRate([s(now - 1000, 500), s(now, 20)], 'recordsIn', now)).toBe(20)
  })

  it('ignores samples older than the window, and needs two samples', () => {
    expect(counterRate([s(now - 120_000, 0), s(now - 1000, 1000), s(now, 1010)], 'recordsIn', now)).toBe(10)
    expect(counterRate([s(now, 5)], 'recordsIn', now)).toBeNull()
  })
})

describe('stage figures', () => {
  const ctx = { now, intervalMs: 1000, knownForMs: 60_000 }

  it('sums unprocessed records per input, rates over actors, and counts running actors', () => {
    const samples = (errors: number, dl: number): CounterSample[] => [
      { at: now - 10_000, startedAt: 1, recordsIn: 0, recordsOut: 0, errors: 0, deadLettered: 0, late: 0 },
      { at: now, startedAt: 1, recordsIn: 1000, recordsOut: 500, errors, deadLettered: dl, late: 10 },
    ]
    const actors: ActorSnapshot[] = [
      { ...snapshot(progress({ stage: 'ema', partition: 0, lag: 7, lagByInput: { source: 7 }, watermark: now - 2000 }), now), samples: samples(10, 0) },
      { ...snapshot(progress({ stage: 'ema', partition: 1, lag: 5, lagByInput: { source: 5 }, watermark: now - 3000, lifecycle: 'restoring' }), now), samples: samples(0, 20) },
    ]
    const st = stageStatus(THREE_STAGES.stages[1]!, actors, ctx)
    expect(st).toMatchObject({ watermark: now - 3000, watermarkLagMs: 3000, unprocessed: 12, unprocessedByInput: { source: 12 }, failureRate: 3, lateRate: 2, recordsInRate: 200, recordsOutRate: 100 })
    expect(st.actors).toEqual({ running: 1, missing: 0, ended: 0, failed: 0, total: 2 })
    expect(st.stalled).toBe(false)
  })

  it('lists an actor that failed for good with its error, and calls the stage stalled (it reports, but does nothing)', () => {
    const failure = { code: 'WEIR_ACTOR_FAILED', message: 'actor ema/1 stopped: boom', at: now - 5000, quarantined: true, failedOn: ['a', 'b'] }
    const actors = [
      snapshot(progress({ stage: 'ema', partition: 0, watermark: now - 1000 }), now),
      snapshot(progress({ stage: 'ema', partition: 1, worker: 'b', watermark: now - 9000, lifecycle: 'failed', failure }), now),
    ]
    const st = stageStatus(THREE_STAGES.stages[1]!, actors, ctx)
    expect(st.actors).toEqual({ running: 1, missing: 0, ended: 0, failed: 1, total: 2 })
    expect(st.failed).toEqual([{ actor: 'ema/1', worker: 'b', code: 'WEIR_ACTOR_FAILED', message: 'actor ema/1 stopped: boom', quarantined: true, failedOn: ['a', 'b'], at: now - 5000 }])
    expect(st.stalled).toBe(true)
  })

  it('counts silent actors, and never-heard ones once the pipeline is known for a while, as missing', () => {
    const silent = [snapshot(progress({ stage: 'ema', partition: 0, watermark: now }), now, 12_000)]
    expect(stageStatus(THREE_STAGES.stages[1]!, silent, ctx).actors).toMatchObject({ missing: 2, running: 0, total: 2 })
    // Just started: the partition it has not heard from yet is not called missing.
    const fresh = [snapshot(progress({ stage: 'ema', partition: 0, watermark: now }), now)]
    expect(stageStatus(THREE_STAGES.stages[1]!, fresh, { ...ctx, knownForMs: 1000 }).actors.missing).toBe(0)
  })

  it('measures checkpoint age from the oldest last commit of its live actors', () => {
    const actors = [
      snapshot(progress({ stage: 'ema', partition: 0, lastCommitAt: now - 1000 }), now),
      snapshot(progress({ stage: 'ema', partition: 1, lastCommitAt: now - 30_000 }), now),
    ]
    const st = stageStatus(THREE_STAGES.stages[1]!, actors, ctx)
    expect(st.checkpointAgeMs).toBe(30_000)
    expect(st.stalled).toBe(true)
  })
})

/** Stage figures for a topology from per-stage watermark lags and optional missing actors. */
function stagesOf(topology: Topology, lags: Record<string, number | null>, extra: Record<string, { missing?: number; unprocessed?: number; silentMs?: number; failed?: FailedActor[]; waiting?: WaitingActor[] }> = {}): Map<string, StageStatus> {
  const m = new Map<string, StageStatus>()
  for (const s of topology.stages) {
    const e = extra[s.name] ?? {}
    m.set(s.name, {
      name: s.name, kind: s.kind, inputs: s.inputs, parallelism: s.parallelism,
      watermark: null, ended: false, watermarkLagMs: lags[s.name] ?? null,
      unprocessed: e.unprocessed ?? 0, unprocessedByInput: {}, failureRate: 0, lateRate: 0, recordsInRate: 0, recordsOutRate: 0,
      checkpointAgeMs: 500, actors: { running: s.parallelism - (e.missing ?? 0) - (e.failed?.length ?? 0), missing: e.missing ?? 0, ended: 0, failed: e.failed?.length ?? 0, total: s.parallelism },
      failed: e.failed ?? [], waiting: e.waiting ?? [], silentMs: e.silentMs ?? 0, stalled: (e.missing ?? 0) > 0 || (e.failed?.length ?? 0) > 0,
    })
  }
  return m
}

describe('holding back', () => {
  it('is the stage adding the most watermark delay over its inputs, with a readable reason', () => {
    const hb = holdingBack('sink', stagesOf(THREE_STAGES, { source: 1000, ema: 4200, sink: 4500 }, { ema: { unprocessed: 12_400 } }), THREE_STAGES)
    expect(hb).toEqual({ stage: 'ema', reason: 'ema adds 3.2 s of watermark delay; 12 400 unprocessed records' })
  })

  it('charges a source its whole lag', () => {
    expect(holdingBack('sink', stagesOf(THREE_STAGES, { source: 5000, ema: 5100, sink: 5200 }), THREE_STAGES)?.stage).toBe('source')
  })

  it('prefers a stage with missing actors over any delay', () => {
    const hb = holdingBack('sink', stagesOf(THREE_STAGES, { source: 100, ema: 200, sink: 9000 }, { ema: { missing: 1, silentMs: 12_000 } }), THREE_STAGES)
    expect(hb).toEqual({ stage: 'ema', reason: 'ema: 1 of 2 actors send no progress for 12 s' })
  })

  it('names a failed actor before any missing actor or delay, downstream of it too', () => {
    const failed: FailedActor = { actor: 'ema/1', worker: 'b', code: 'WEIR_ACTOR_FAILED', message: 'actor ema/1 stopped: boom', quarantined: true, failedOn: ['a', 'b'], at: 0 }
    const stages = stagesOf(THREE_STAGES, { source: 100, ema: 9000, sink: 9500 }, { ema: { failed: [failed] }, sink: { missing: 1, silentMs: 12_000 } })
    expect(holdingBack('sink', stages, THREE_STAGES)).toEqual({ stage: 'ema', reason: 'ema: ema/1 failed (quarantined after failing on a and b): actor ema/1 stopped: boom', failedActors: ['ema/1'] })
    const moving = stagesOf(THREE_STAGES, { source: 100, ema: 9000, sink: 9500 }, { ema: { failed: [{ ...failed, quarantined: false, failedOn: ['b'] }] } })
    expect(holdingBack('sink', moving, THREE_STAGES)?.reason).toBe('ema: ema/1 failed on b: actor ema/1 stopped: boom')
  })

  it('names a stage waiting on an outside system before a missing actor or delay, with what it waits for', () => {
    const waiting: WaitingActor = { actor: 'sink/0', on: 'PostgreSQL 127.0.0.1:5432', message: 'connect ECONNREFUSED 127.0.0.1:5432', since: 1_000 }
    const stages = stagesOf(THREE_STAGES, { source: 100, ema: 9000, sink: 9500 }, { sink: { waiting: [waiting] }, ema: { missing: 1, silentMs: 12_000 } })
    // Missing actors upstream come first on the path; a waiting stage downstream of them still explains why nothing commits there.
    expect(holdingBack('sink', stages, THREE_STAGES, 13_400)).toEqual({ stage: 'sink', reason: 'sink: sink/0 waits for PostgreSQL 127.0.0.1:5432 for 12.4 s: connect ECONNREFUSED 127.0.0.1:5432', waitingActors: ['sink/0'] })
    const failed: FailedActor = { actor: 'ema/1', worker: 'b', code: 'WEIR_ACTOR_FAILED', message: 'boom', quarantined: false, failedOn: ['b'], at: 0 }
    expect(holdingBack('sink', stagesOf(THREE_STAGES, { source: 100, ema: 9000, sink: 9500 }, { sink: { waiting: [waiting] }, ema: { failed: [failed] } }), THREE_STAGES, 13_400)?.stage).toBe('ema')
  })

  it('breaks ties toward the most upstream stage, and takes the slowest of several inputs', () => {
    const diamond: Topology = {
      stages: [
        { name: 'a', kind: 'source', inputs: [], parallelism: 1, topic: 't.a' },
        { name: 'b', kind: 'source', inputs: [], parallelism: 1, topic: 't.b' },
        { name: 'join', kind: 'processor', inputs: ['a', 'b'], parallelism: 1, topic: 't.j' },
        { name: 'out', kind: 'processor', inputs: ['join'], parallelism: 1, topic: 't.o' },
      ],
      outputs: ['out'],
      fingerprint: 'd',
    }
    // join adds 8000 − max(1000, 5000) = 3000; out adds 3000 too; b adds 5000: b wins.
    expect(holdingBack('out', stagesOf(diamond, { a: 1000, b: 5000, join: 8000, out: 11_000 }), diamond)?.stage).toBe('b')
    // Equal additions: join (3000) and out (3000) with sources at 0: the upstream one.
    expect(holdingBack('out', stagesOf(diamond, { a: 0, b: 0, join: 3000, out: 6000 }), diamond)?.stage).toBe('join')
  })

  it('blames the first stage without a watermark whose inputs have one', () => {
    const hb = holdingBack('sink', stagesOf(THREE_STAGES, { source: 100, ema: null, sink: null }), THREE_STAGES)
    expect(hb).toEqual({ stage: 'ema', reason: 'ema has no watermark yet' })
  })

  it('neither waits for actors of a side output or keyed stream nor blames them: the stage writing them is charged', () => {
    // source → views.keyBy.1 (written by source's actors, none of its own) → count.
    const keyed: Topology = {
      stages: [
        { name: 'source', kind: 'source', inputs: [], parallelism: 2, topic: 'weir.p.source' },
        { name: 'source.keyBy.1', kind: 'keyed', inputs: ['source'], parallelism: 2, topic: 'weir.p.source.keyBy.1' },
        { name: 'count', kind: 'processor', inputs: ['source.keyBy.1'], parallelism: 3, topic: 'weir.p.count' },
        { name: 'count.late', kind: 'side', inputs: ['count'], parallelism: 3, topic: 'weir.p.count.side.late' },
        { name: 'late-sink', kind: 'processor', inputs: ['count.late'], parallelism: 3, topic: 'weir.p.late-sink' },
      ],
      outputs: ['late-sink'],
      fingerprint: 'f2',
    }
    const ctx = { now, intervalMs: 1000, knownForMs: 60_000 }
    for (const s of [keyed.stages[1]!, keyed.stages[3]!]) {
      const st = stageStatus(s, [], ctx)
      expect(st.actors).toMatchObject({ missing: 0, total: 0 })
      expect(st.stalled).toBe(false)
    }
    const stages = new Map([...stagesOf(keyed, { source: 1000, count: 4000, 'late-sink': 4500 })].map(([n, s]) => [n, n.includes('.') ? stageStatus(keyed.stages.find((k) => k.name === n)!, [], ctx) : s]))
    expect(holdingBack('late-sink', stages, keyed)).toEqual({ stage: 'count', reason: 'count adds 3.0 s of watermark delay' })
  })

  it('is null when nothing adds delay', () => {
    expect(holdingBack('sink', stagesOf(THREE_STAGES, { source: 0, ema: 0, sink: 0 }), THREE_STAGES)).toBeNull()
  })
})

describe('pipeline stall', () => {
  it('is stalled when no actor committed for max(10 s, 5 intervals) while actors still report', () => {
    const old = (p: number) => snapshot(progress({ stage: 'ema', partition: p, lastCommitAt: now - 11_000 }), now)
    expect(pipelineStalled([old(0), old(1)], now, 1000)).toBe(true)
    expect(pipelineStalled([old(0), snapshot(progress({ stage: 'ema', partition: 1, lastCommitAt: now - 500 }), now)], now, 1000)).toBe(false)
    // Nobody reports: that is missing actors, not a stall.
    expect(pipelineStalled([snapshot(progress({ stage: 'ema', partition: 0, lastCommitAt: now - 60_000 }), now, 30_000)], now, 1000)).toBe(false)
  })

  it('is stalled when actors restart in a loop without committing (their pipe is down): a restart does not reset the clock', () => {
    let clock = now
    const view = new MonitorView({ now: () => clock })
    view.apply(progressSubjects.health('test', 'p'), health({ at: clock }))
    const lastCommitAt = clock - 1000
    const report = (partition: number, startedAt: number, committedAt: number | null): void => {
      expect(view.apply(progressSubjects.progress('test', 'p'), progress({ stage: 'source', partition, at: clock, startedAt, lastCommitAt: committedAt }))).toBe('applied')
    }
    report(0, clock - 60_000, lastCommitAt)
    report(1, clock - 60_000, lastCommitAt)
    const stalled = (): boolean => buildStatus(view, clock, 0, () => null).pipelines[0]!.stalled
    // Every 4 s each actor fails and starts again: a new instance that has not committed.
    for (let t = 0; t < 4; t++) {
      clock += 4000
      view.apply(progressSubjects.health('test', 'p'), health({ at: clock }))
      report(0, clock, null)
      report(1, clock, null)
    }
    expect(stalled(), '16 s after the last commit').toBe(true)
    // A first run that has not committed yet counts from its start.
    clock += 1000
    view.apply(progressSubjects.health('test', 'p'), health({ at: clock, pipeline: 'q' }))
    expect(view.apply(progressSubjects.progress('test', 'q'), progress({ pipeline: 'q', stage: 'source', partition: 0, at: clock, startedAt: clock - 2000, lastCommitAt: null }))).toBe('applied')
    expect(buildStatus(view, clock, 0, () => null).pipelines.find((p) => p.pipeline === 'q')!.stalled).toBe(false)
  })
})

it('formats counts with thin groups', () => {
  expect(formatCount(12400)).toBe('12 400')
  expect(formatCount(999)).toBe('999')
})
