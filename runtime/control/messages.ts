/**
 * Control messages between the coordinator and workers, with their schemas. Every
 * message is validated on receipt; a malformed one is logged with its subject and dropped.
 */
import { z } from 'zod'
import type { Pipeline } from '../api/pipeline.ts'

/** The actor stages of a pipeline, as a coordinator that never loaded the pipeline file needs them. */
export const pipelineShape = z.object({
  stages: z.array(z.object({ name: z.string().min(1), parallelism: z.number().int().positive() })),
  /** Standby replicas per actor (the pipeline's `standbys` option). */
  standbys: z.number().int().min(0).max(3).default(0),
})
export type PipelineShape = z.infer<typeof pipelineShape>

export const workerHello = z.object({
  v: z.literal(1),
  worker: z.string().min(1),
  pipeline: z.string().min(1),
  fingerprint: z.string().min(1),
  /** Absent from workers that only run with an in-process coordinator. */
  shape: pipelineShape.optional(),
})
export type WorkerHello = z.infer<typeof workerHello>

/** The shape of a loaded pipeline, as workers send it. */
export function pipelineShapeOf(pipeline: Pipeline): PipelineShape {
  return { stages: pipeline.actorStages.map((s) => ({ name: s.name, parallelism: s.parallelism })), standbys: pipeline.options.standbys }
}

/** A worker's hello for `pipeline`. */
export function workerHelloOf(pipeline: Pipeline, worker: string): WorkerHello {
  return { v: 1, worker, pipeline: pipeline.name, fingerprint: pipeline.fingerprint(), shape: pipelineShapeOf(pipeline) }
}

/**
 * A worker is alive, runs these actors under this generation, and its actors committed up
 * to this epoch: a coordinator that just started (or took over) continues from there.
 */
export const workerHeartbeat = z.object({
  v: z.literal(1),
  worker: z.string().min(1),
  fingerprint: z.string().min(1),
  generation: z.number().int().nonnegative(),
  /** The pipeline's shape, so a coordinator that starts after the workers can coordinate it. */
  shape: pipelineShape,
  actors: z.array(z.string()),
  /** Actors of this worker that reached the end of their input. */
  finished: z.array(z.string()),
  lastEpoch: z.number().int().nonnegative(),
  /** Records per second each actor took in since the previous heartbeat (placement balances it). */
  load: z.record(z.number().nonnegative()).optional(),
})
export type WorkerHeartbeat = z.infer<typeof workerHeartbeat>

/** A worker leaves gracefully: its actors are reassigned now, not after the timeout. */
export const workerLeave = z.object({
  v: z.literal(1),
  worker: z.string().min(1),
})

/** The coordinator refuses a worker (a different pipeline topology under the same name). */
export const workerRefused = z.object({
  v: z.literal(1),
  worker: z.string().min(1),
  reason: z.string(),
  expectedFingerprint: z.string(),
  fingerprint: z.string(),
})
export type WorkerRefused = z.infer<typeof workerRefused>

/** A pipe position: the next offset to read of a topic partition. */
const position = z.object({ topic: z.string(), partition: z.number().int().nonnegative(), offset: z.number().int().nonnegative() })

/** An actor's failure as the coordinator keeps it: the workers it failed on, the last error. */
export const actorFailure = z.object({
  /** Workers it failed on, in order. */
  workers: z.array(z.string()),
  error: z.object({ code: z.string(), message: z.string() }),
  /** When it last failed (the reporting worker's clock), ms. */
  at: z.number(),
})
export type ActorFailure = z.infer<typeof actorFailure>

export const assignmentMessage = z.object({
  v: z.literal(1),
  generation: z.number().int().nonnegative(),
  /** actor id → worker id. Actors being released (below) are in neither. */
  actors: z.record(z.string()),
  /** actor id → workers that keep a standby replica of its state */
  standbys: z.record(z.array(z.string())).optional(),
  /**
   * Actors moving in a planned hand-off: `from` stops the actor (final checkpoint, producer
   * closed) and reports `actorReleased`; only then is it assigned to `to` (absent while no
   * worker can take it). Nobody runs it meanwhile.
   */
  releasing: z.record(z.object({ from: z.string(), to: z.string().optional() })).optional(),
  /**
   * Actors that failed for good on two workers (or on every worker there is): assigned to
   * nobody until an operator clears them (`weir actor clear`). Their last worker keeps
   * reporting them failed on the progress channel.
   */
  quarantined: z.record(actorFailure).optional(),
})
export type AssignmentMessage = z.infer<typeof assignmentMessage>

export const epochMessage = z.object({
  v: z.literal(1),
  epoch: z.number().int().positive(),
  generation: z.number().int().nonnegative(),
  finishedStages: z.array(z.string()),
})
export type EpochMessage = z.infer<typeof epochMessage>

export const epochAck = z.object({
  v: z.literal(1),
  actor: z.string(),
  epoch: z.number().int().nonnegative(),
})

export const actorFinished = z.object({
  v: z.literal(1),
  actor: z.string(),
  worker: z.string(),
})

/**
 * A worker no longer runs an actor it was asked to give up: its instance stopped and its
 * producer and state store are closed. `finalCheckpoint` is present when that stop took a
 * final checkpoint and it committed: the next owner starts exactly there.
 */
export const actorReleased = z.object({
  v: z.literal(1),
  actor: z.string(),
  worker: z.string(),
  /** The assignment generation the worker applied when it stopped the actor. */
  generation: z.number().int().nonnegative(),
  finalCheckpoint: z.object({
    /** Epoch of the final checkpoint. */
    epoch: z.number().int().nonnegative(),
    /** Input positions it committed (none for a source). */
    positions: z.array(position),
  }).optional(),
})
export type ActorReleased = z.infer<typeof actorReleased>

/**
 * An actor failed for good on a worker (its processor threw past its `onError` policy, in
 * `open`, `onCheckpoint`, or restore): it stopped alone, its state kept, and the worker
 * runs its other actors. Retriable pipe errors are retried by the worker and never end here.
 */
export const actorFailed = z.object({
  v: z.literal(1),
  actor: z.string(),
  worker: z.string(),
  /** The assignment generation the worker ran it under. */
  generation: z.number().int().nonnegative(),
  error: z.object({ code: z.string(), message: z.string() }),
  at: z.number(),
})
export type ActorFailed = z.infer<typeof actorFailed>

/** An operator asks the leading coordinator to forget an actor's failures (and lift its quarantine). */
export const actorClear = z.object({
  v: z.literal(1),
  actor: z.string().min(1),
  /** Echoed in the answer, so the asking command knows it is about its request. */
  requestId: z.string().min(1).max(100),
})
export type ActorClear = z.infer<typeof actorClear>

/** The coordinator's answer to an `actorClear`. */
export const actorClearAnswer = z.object({
  v: z.literal(1),
  actor: z.string(),
  requestId: z.string(),
  /** `cleared`: its failures are forgotten and it is placed again; `not-failed`: nothing was recorded; `unknown-actor`: no such actor. */
  outcome: z.enum(['cleared', 'not-failed', 'unknown-actor']),
  /** The generation that places it again (when cleared). */
  generation: z.number().int().nonnegative().optional(),
  /** What was cleared. */
  failure: actorFailure.optional(),
})
export type ActorClearAnswer = z.infer<typeof actorClearAnswer>
