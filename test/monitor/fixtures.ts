/**
 * Builders for synthetic progress-channel messages: the publishers in monitor tests are
 * fixtures, the monitor under test is real.
 *
 * @example
 * const e = progress({ stage: 'ema', partition: 1, watermark: now - 3000 })
 */
import type { ActorProgress, WorkerHealth } from '../../runtime/control/progress.ts'
import type { ActorSnapshot, Topology } from '../../monitor/timeliness.ts'

/** source → ema → sink, 2 actors each. */
export const THREE_STAGES: Topology = {
  stages: [
    { name: 'source', kind: 'source', inputs: [], parallelism: 2, topic: 'weir.p.source' },
    { name: 'ema', kind: 'processor', inputs: ['source'], parallelism: 2, topic: 'weir.p.ema' },
    { name: 'sink', kind: 'processor', inputs: ['ema'], parallelism: 2, topic: 'weir.p.sink' },
  ],
  outputs: ['sink'],
  fingerprint: 'f1',
}

export function progress(fields: Partial<ActorProgress> & { stage: string; partition: number }): ActorProgress {
  const at = fields.at ?? Date.now()
  return {
    v: 1,
    cluster: 'test',
    pipeline: 'p',
    worker: 'w1',
    actor: `${fields.stage}/${fields.partition}`,
    at,
    startedAt: at - 60_000,
    lifecycle: 'running',
    watermark: null,
    watermarkChangedAt: null,
    idle: false,
    ended: false,
    ingestHorizon: null,
    endToEndMs: null,
    lag: 0,
    lagByInput: {},
    recordsIn: 0,
    recordsOut: 0,
    errors: 0,
    deadLettered: 0,
    late: 0,
    processingUs: null,
    commitMs: null,
    lastEpoch: 1,
    lastCommitAt: at,
    stateBytes: null,
    ...fields,
  }
}

export function health(fields: Partial<WorkerHealth> = {}): WorkerHealth {
  const at = fields.at ?? Date.now()
  return {
    v: 1,
    cluster: 'test',
    pipeline: 'p',
    worker: 'w1',
    at,
    startedAt: at - 60_000,
    pid: 4242,
    hostname: 'host-a',
    intervalMs: 1000,
    rssBytes: 100 << 20,
    heapUsedBytes: 50 << 20,
    eventLoopDelayMs: { p50: 1, p99: 2, max: 3 },
    actors: [],
    topology: THREE_STAGES,
    ...fields,
  }
}

/** An actor as the timeliness rules see it, seen `ageMs` ago. */
export function snapshot(p: ActorProgress, now: number, ageMs = 0, intervalMs = 1000): ActorSnapshot {
  return { progress: p, seenAt: now - ageMs, intervalMs, samples: [] }
}
