/**
 * The progress channel's messages: what every actor and worker publishes on the control
 * bus for the monitor, and the alerts the monitor publishes back. Version 1; every message
 * carries `v`, and a reader drops (and counts) what does not parse, so a newer publisher
 * cannot crash an older monitor. docs/monitoring.md documents every field.
 *
 * Subjects (namespaced by cluster and pipeline):
 *   weir.<cluster>.<pipeline>.progress   one ActorProgress per actor, ~1/s and on watermark change
 *   weir.<cluster>.<pipeline>.health     one WorkerHealth per worker, ~1/s (carries the topology)
 *   weir.<cluster>.<pipeline>.alerts     SloAlert from the monitor when an SLO breaks or recovers,
 *                                        ActorAlert when an actor fails for good or runs again
 *
 * @example
 * bus.subscribe(progressSubjects.allProgress('prod'), (raw) => {
 *   const event = actorProgress.safeParse(raw)
 *   if (event.success) console.log(event.data.actor, event.data.watermark)
 * })
 */
import { z } from 'zod'

export const PROGRESS_VERSION = 1

/** Watermarks are event-time ms; `null` before the first one. The end of input is `ended: true`. */
const watermark = z.number().finite().nullable()

const percentiles = z.object({ p50: z.number().nonnegative(), p99: z.number().nonnegative(), max: z.number().nonnegative() })
export type Percentiles = z.infer<typeof percentiles>

export const actorProgress = z.object({
  v: z.literal(PROGRESS_VERSION),
  cluster: z.string(),
  pipeline: z.string(),
  worker: z.string(),
  /** `<stage>/<partition>` */
  actor: z.string(),
  stage: z.string(),
  partition: z.number().int().nonnegative(),
  /** When the event was published, ms since the epoch (publisher's clock). */
  at: z.number(),
  /** When this actor instance started (counters below restart from 0 with it). */
  startedAt: z.number(),
  lifecycle: z.string(),
  /**
   * The actor's event-time watermark: the minimum over every upstream writer of every
   * input partition (a source's: the newest event time it emitted minus its bound on
   * out-of-orderness). Records at or below it are late.
   */
  watermark,
  /** When `watermark` last advanced (publisher's clock); the monitor's view delay is measured from here. */
  watermarkChangedAt: z.number().nullable(),
  /** Every input is idle (no records for the idle timeout): excluded from downstream minimums. */
  idle: z.boolean(),
  /** Every input reached its end (bounded pipelines): the watermark is +infinity. */
  ended: z.boolean(),
  /**
   * Ingest horizon, wall-clock ms: everything the sources ingested before this time has
   * been processed by this actor and committed.
   */
  ingestHorizon: z.number().nullable(),
  /** At the last commit: commit time minus the ingest horizon it carried (end-to-end latency). */
  endToEndMs: z.number().nonnegative().nullable(),
  /** Unprocessed input records: end offset minus position, summed over inputs. */
  lag: z.number().nonnegative(),
  /** Unprocessed records per input stage. */
  lagByInput: z.record(z.number().nonnegative()),
  recordsIn: z.number().nonnegative(),
  recordsOut: z.number().nonnegative(),
  /** Failed attempts to process a record (each retry counts). */
  errors: z.number().nonnegative(),
  deadLettered: z.number().nonnegative(),
  /** Records that arrived with an event time at or below the watermark. */
  late: z.number().nonnegative(),
  /** Time to process one record (sampled), µs; null before the first sample. */
  processingUs: percentiles.nullable(),
  /** Pipe commit time of recent checkpoints, ms. */
  commitMs: percentiles.nullable(),
  /** Newest committed checkpoint epoch and when it committed. */
  lastEpoch: z.number().int().nonnegative(),
  lastCommitAt: z.number().nullable(),
  /** Bytes of the actor's local RocksDB files (sampled every few seconds). */
  stateBytes: z.number().nonnegative().nullable(),
  /**
   * Present while the actor waits on an outside system (`ctx.waitingOn`: a sink's database
   * that is down): `on` names it, `message` is its last error, `since` when the wait began
   * (publisher's clock). The actor takes no checkpoint meanwhile. Absent from older publishers.
   */
  waiting: z.object({ on: z.string(), message: z.string(), since: z.number() }).optional(),
  /** The stage's own figures (`ctx.reportStats`: an HTTP source's requests and rejections, say). Absent when it reports none, and from older publishers. */
  stats: z.record(z.number()).optional(),
  /**
   * Present when the actor failed for good (its lifecycle is then 'failed'): it stopped
   * alone on this worker, its state kept, and runs nowhere until the coordinator moves it or
   * an operator clears its quarantine. Absent from older publishers.
   */
  failure: z.object({
    code: z.string(),
    message: z.string(),
    /** When it failed (publisher's clock). */
    at: z.number(),
    /** The coordinator stopped moving it (it failed on two workers, or on every one there is). */
    quarantined: z.boolean(),
    /** Workers it failed on, as far as this worker knows. */
    failedOn: z.array(z.string()),
  }).optional(),
})
export type ActorProgress = z.infer<typeof actorProgress>
export type ActorFailureProgress = NonNullable<ActorProgress['failure']>

export const topologyStage = z.object({
  name: z.string(),
  /**
   * 'topic': an existing topic read as input; 'side': a side output of the stage in
   * `inputs[0]`; 'keyed': the stream of `inputs[0]` partitioned by key (both written by
   * another stage's actors, no actors of their own).
   */
  kind: z.enum(['source', 'processor', 'topic', 'side', 'keyed']),
  inputs: z.array(z.string()),
  parallelism: z.number().int().positive(),
  /** The stage's output topic. */
  topic: z.string(),
})

export const workerHealth = z.object({
  v: z.literal(PROGRESS_VERSION),
  cluster: z.string(),
  pipeline: z.string(),
  worker: z.string(),
  at: z.number(),
  startedAt: z.number(),
  pid: z.number().int(),
  hostname: z.string(),
  /** How often this worker publishes health and progress, ms: the monitor's staleness unit. */
  intervalMs: z.number().positive(),
  rssBytes: z.number().nonnegative(),
  heapUsedBytes: z.number().nonnegative(),
  /** Event-loop delay over the last interval, ms. */
  eventLoopDelayMs: percentiles,
  /** Actors this worker runs now. */
  actors: z.array(z.string()),
  /**
   * Standby replicas this worker keeps warm: how far each trails its actor's changelog
   * (records not applied yet, null before the first measurement). A failover to this
   * worker replays about `lag` records.
   */
  standbys: z.array(z.object({ actor: z.string(), position: z.number().int().nonnegative(), lag: z.number().int().nonnegative().nullable() })).optional(),
  /** The pipeline's DAG, so a monitor that just started can draw it. */
  topology: z.object({
    stages: z.array(topologyStage),
    /** Stages whose output nobody in the pipeline reads. */
    outputs: z.array(z.string()),
    fingerprint: z.string(),
  }),
})
export type WorkerHealth = z.infer<typeof workerHealth>

export const sloAlert = z.object({
  v: z.literal(PROGRESS_VERSION),
  cluster: z.string(),
  pipeline: z.string(),
  /** The output stage the SLO is about. */
  output: z.string(),
  state: z.enum(['broken', 'recovered']),
  /** The SLO: output timeliness (now minus output watermark) at most this, ms. */
  timelinessSloMs: z.number().positive(),
  /** Timeliness when the alert fired, ms (null: no watermark seen). */
  timelinessMs: z.number().nullable(),
  /** The stage the monitor found holding the output back. */
  holdingBack: z.string().nullable(),
  reason: z.string(),
  at: z.number(),
})
export type SloAlert = z.infer<typeof sloAlert>

/** The monitor saw an actor fail for good (`failed`), or run again after it had (`recovered`). */
export const actorAlert = z.object({
  v: z.literal(PROGRESS_VERSION),
  kind: z.literal('actor'),
  cluster: z.string(),
  pipeline: z.string(),
  actor: z.string(),
  stage: z.string(),
  /** The worker that reported it. */
  worker: z.string(),
  state: z.enum(['failed', 'recovered']),
  quarantined: z.boolean(),
  /** The actor's error (failed), null once recovered. */
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  reason: z.string(),
  at: z.number(),
})
export type ActorAlert = z.infer<typeof actorAlert>

/** Subjects of the progress channel. `cluster`/`pipeline` may be `*` in subscriptions. */
export const progressSubjects = {
  progress: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.progress`,
  health: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.health`,
  alerts: (cluster: string, pipeline: string): string => `weir.${cluster}.${pipeline}.alerts`,
  allProgress: (cluster = '*'): string => `weir.${cluster}.*.progress`,
  allHealth: (cluster = '*'): string => `weir.${cluster}.*.health`,
}
