/**
 * Control messages between the coordinator and workers, with their schemas. Every
 * message is validated on receipt; a malformed one is logged with its subject and dropped.
 * Every field is bounded (names, list lengths, parallelism, safe integers): a message, forged
 * or broken, can make no process allocate without bound; bytes are bounded by the NATS
 * server's max_payload (1 MiB by default). What a field's value may be relative to the
 * receiver's state (a generation of a later term, an actor the pipeline lacks) is checked
 * where it is received (coordinator.ts, worker.ts), and refused with a logged reason.
 */
import { z } from 'zod'
import type { Pipeline } from '../api/pipeline.ts'
import { chainHeads } from '../api/chains.ts'

/** Actors of one stage at most: the pipeline builder's limit on partitions. */
export const MAX_PARALLELISM = 4096
/** Actor stages of one pipeline at most. */
export const MAX_STAGES = 256
/** Actors of one pipeline at most (the sum of its stages' parallelism). */
export const MAX_ACTORS = 16_384
/** Workers of one pipeline a coordinator admits at most (more than its actors can only idle). */
export const MAX_WORKERS = 4096
/** Length of a worker id at most (a default id is the host name and 9 characters). */
export const MAX_WORKER_ID = 300
/**
 * Generations of one leader: a leader of lease term T assigns generations T × this + 1, +2, …
 * (coordinator-service.ts), so a generation's term is `generationTerm(g)`.
 */
export const GENERATIONS_PER_TERM = 1_000_000

/** The lease term of the leader that published generation `g` (0: a coordinator without a lease, like the embedded runner's). */
export function generationTerm(generation: number): number {
  return Math.floor(generation / GENERATIONS_PER_TERM)
}

/** Pipeline and stage names: what the pipeline builder accepts (runtime/api/pipeline.ts). */
const name = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'a name is 1-64 of A-Z a-z 0-9 _ -')
/** `<stage>/<partition>` (runtime/naming.ts). */
const actorId = z.string().regex(/^[A-Za-z0-9_-]{1,64}\/\d{1,4}$/, 'an actor id is <stage>/<partition>')
const workerId = z.string().min(1).max(MAX_WORKER_ID)
const fingerprint = z.string().min(1).max(128)
/** Generations, epochs, counters: whole numbers that stay exact (≤ 2^53 - 1). */
const count = z.number().int().nonnegative().safe()

/** The actor stages of a pipeline, as a coordinator that never loaded the pipeline file needs them. */
export const pipelineShape = z.object({
  stages: z.array(z.object({ name, parallelism: z.number().int().positive().max(MAX_PARALLELISM) })).min(1).max(MAX_STAGES)
    .refine((stages) => new Set(stages.map((s) => s.name)).size === stages.length, 'stage names must be unique')
    .refine((stages) => stages.reduce((n, s) => n + s.parallelism, 0) <= MAX_ACTORS, `at most ${MAX_ACTORS} actors in all`),
  /** Standby replicas per actor (the pipeline's `standbys` option). */
  standbys: z.number().int().min(0).max(3).default(0),
})
export type PipelineShape = z.infer<typeof pipelineShape>

export const workerHello = z.object({
  v: z.literal(1),
  worker: workerId,
  pipeline: name,
  fingerprint,
  /** Absent from workers that only run with an in-process coordinator. */
  shape: pipelineShape.optional(),
  /** It answers liveness probes on `subjects.workerProbe` (absent from workers older than them). */
  answersProbes: z.literal(true).optional(),
})
export type WorkerHello = z.infer<typeof workerHello>

/** The shape of a loaded pipeline, as workers send it. */
export function pipelineShapeOf(pipeline: Pipeline): PipelineShape {
  // A chained stage runs in the actors of its chain's head (runtime/api/chains.ts): the coordinator places, acks and finishes heads only.
  return { stages: chainHeads(pipeline).map((s) => ({ name: s.name, parallelism: s.parallelism })), standbys: pipeline.options.standbys }
}

/** A worker's hello for `pipeline`. */
export function workerHelloOf(pipeline: Pipeline, worker: string): WorkerHello {
  return { v: 1, worker, pipeline: pipeline.name, fingerprint: pipeline.fingerprint(), shape: pipelineShapeOf(pipeline), answersProbes: true }
}

/**
 * A worker is alive, runs these actors under this generation, and its actors committed up
 * to this epoch: a coordinator that just started (or took over) continues from there.
 */
export const workerHeartbeat = z.object({
  v: z.literal(1),
  worker: workerId,
  fingerprint,
  generation: count,
  /** The pipeline's shape, so a coordinator that starts after the workers can coordinate it. */
  shape: pipelineShape,
  actors: z.array(actorId).max(MAX_ACTORS),
  /** Actors of this worker that reached the end of their input. */
  finished: z.array(actorId).max(MAX_ACTORS),
  lastEpoch: count,
  /** Records per second each actor took in since the previous heartbeat (placement balances it). */
  load: z.record(actorId, z.number().nonnegative().finite()).refine((l) => Object.keys(l).length <= MAX_ACTORS, `at most ${MAX_ACTORS} entries`).optional(),
  /** As in the hello: it answers liveness probes. */
  answersProbes: z.literal(true).optional(),
})
export type WorkerHeartbeat = z.infer<typeof workerHeartbeat>

/** A worker's answer to a liveness probe. */
export const workerProbeAnswer = z.object({ v: z.literal(1), worker: workerId })
export type WorkerProbeAnswer = z.infer<typeof workerProbeAnswer>

/** A worker leaves gracefully: its actors are reassigned now, not after the timeout. */
export const workerLeave = z.object({
  v: z.literal(1),
  worker: workerId,
})

/** The coordinator refuses a worker (a different pipeline topology under the same name). */
export const workerRefused = z.object({
  v: z.literal(1),
  worker: workerId,
  reason: z.string().max(2000),
  expectedFingerprint: fingerprint,
  fingerprint,
  /** The cluster's shape, so the refused worker can name the stages that differ from its own. */
  shape: pipelineShape.optional(),
})
export type WorkerRefused = z.infer<typeof workerRefused>

/** A pipe position: the next offset to read of a topic partition (Kafka topic names are at most 249 characters). */
const position = z.object({ topic: z.string().min(1).max(249), partition: z.number().int().nonnegative().max(MAX_PARALLELISM), offset: count })
/** An error as messages carry it: its stable code and its message. */
const errorSummary = z.object({ code: z.string().max(100), message: z.string().max(4000) })

/** An actor's failure as the coordinator keeps it: the workers it failed on, the last error. */
export const actorFailure = z.object({
  /** Workers it failed on, in order. */
  workers: z.array(workerId).max(MAX_WORKERS),
  error: errorSummary,
  /** When it last failed (the reporting worker's clock), ms. */
  at: count,
})
export type ActorFailure = z.infer<typeof actorFailure>

export const assignmentMessage = z.object({
  v: z.literal(1),
  generation: count,
  /** actor id → worker id. Actors being released (below) are in neither. */
  actors: z.record(actorId, workerId).refine((a) => Object.keys(a).length <= MAX_ACTORS, `at most ${MAX_ACTORS} actors`),
  /** actor id → workers that keep a standby replica of its state (at most 3 each: the pipeline's `standbys`) */
  standbys: z.record(actorId, z.array(workerId).max(3)).refine((a) => Object.keys(a).length <= MAX_ACTORS, `at most ${MAX_ACTORS} actors`).optional(),
  /**
   * Actors moving in a planned hand-off: `from` stops the actor (final checkpoint, producer
   * closed) and reports `actorReleased`; only then is it assigned to `to` (absent while no
   * worker can take it). Nobody runs it meanwhile.
   */
  releasing: z.record(actorId, z.object({ from: workerId, to: workerId.optional() })).refine((a) => Object.keys(a).length <= MAX_ACTORS, `at most ${MAX_ACTORS} actors`).optional(),
  /**
   * Actors that failed for good on two workers (or on every worker there is): assigned to
   * nobody until an operator clears them (`weir actor clear`). Their last worker keeps
   * reporting them failed on the progress channel.
   */
  quarantined: z.record(actorId, actorFailure).refine((a) => Object.keys(a).length <= MAX_ACTORS, `at most ${MAX_ACTORS} actors`).optional(),
})
export type AssignmentMessage = z.infer<typeof assignmentMessage>

export const epochMessage = z.object({
  v: z.literal(1),
  epoch: count.positive(),
  generation: count,
  finishedStages: z.array(name).max(MAX_STAGES),
})
export type EpochMessage = z.infer<typeof epochMessage>

export const epochAck = z.object({
  v: z.literal(1),
  actor: actorId,
  epoch: count,
})

export const actorFinished = z.object({
  v: z.literal(1),
  actor: actorId,
  worker: workerId,
})

/**
 * A worker no longer runs an actor it was asked to give up: its instance stopped and its
 * producer and state store are closed. `finalCheckpoint` is present when that stop took a
 * final checkpoint and it committed: the next owner starts exactly there.
 */
export const actorReleased = z.object({
  v: z.literal(1),
  actor: actorId,
  worker: workerId,
  /** The assignment generation the worker applied when it stopped the actor. */
  generation: count,
  finalCheckpoint: z.object({
    /** Epoch of the final checkpoint (0: this instance was restored and stopped without running). */
    epoch: count,
    /** Input positions it committed (none for a source). */
    positions: z.array(position).max(MAX_STAGES),
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
  actor: actorId,
  worker: workerId,
  /** The assignment generation the worker ran it under. */
  generation: count,
  error: errorSummary,
  at: count,
})
export type ActorFailed = z.infer<typeof actorFailed>

/** An operator asks the leading coordinator to forget an actor's failures (and lift its quarantine). */
export const actorClear = z.object({
  v: z.literal(1),
  actor: actorId,
  /** Echoed in the answer, so the asking command knows it is about its request. */
  requestId: z.string().min(1).max(100),
})
export type ActorClear = z.infer<typeof actorClear>

/** The coordinator's answer to an `actorClear`. */
export const actorClearAnswer = z.object({
  v: z.literal(1),
  actor: actorId,
  requestId: z.string().min(1).max(100),
  /** `cleared`: its failures are forgotten and it is placed again; `not-failed`: nothing was recorded; `unknown-actor`: no such actor. */
  outcome: z.enum(['cleared', 'not-failed', 'unknown-actor']),
  /** The generation that places it again (when cleared). */
  generation: count.optional(),
  /** What was cleared. */
  failure: actorFailure.optional(),
})
export type ActorClearAnswer = z.infer<typeof actorClearAnswer>

/** A savepoint's name: the directory it is written to under each worker's savepoint dir. */
export const savepointName = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'a savepoint name is 1-128 of A-Z a-z 0-9 _ . -').refine((n) => n !== '.' && n !== '..', 'a savepoint name is not . or ..')

/**
 * A step of a live savepoint, sent by its client to every worker of the pipeline
 * (runtime/savepoint/live.ts): hold the inputs, report drained, freeze, pin a snapshot,
 * release, write the pinned state. Every step renews the hold's lease: a client that dies
 * leaves the pipeline held for `leaseMs` at most.
 */
export const savepointCommand = z.object({
  v: z.literal(1),
  name: savepointName,
  seq: count,
  op: z.enum(['hold', 'status', 'freeze', 'unfreeze', 'snapshot', 'release', 'write']),
  leaseMs: z.number().int().min(1000).max(600_000),
})
export type SavepointCommand = z.infer<typeof savepointCommand>

const savepointFile = z.object({ path: z.string().max(1000), entries: count, bytes: count, sha256: z.string().regex(/^[0-9a-f]{64}$/) })

/** One worker's answer to a savepoint step, per actor it holds. */
export const savepointReply = z.object({
  v: z.literal(1),
  name: savepointName,
  seq: count,
  worker: workerId,
  pipe: z.object({ kind: z.string().max(100), identity: z.string().max(1000) }),
  /** Why this worker cannot take part (no savepoint dir): the client fails naming it. */
  refused: z.string().max(4000).optional(),
  actors: z.array(z.object({
    actor: actorId,
    drained: z.boolean().optional(),
    error: z.string().max(4000).optional(),
    /** Of `write`: the actor's manifest entry and its positions in outside topics. */
    state: z.object({
      partition: z.number().int().nonnegative().max(MAX_PARALLELISM),
      keys: z.record(z.string().max(128), count),
      timers: count,
      finished: z.boolean(),
      files: z.record(z.string().max(200), savepointFile),
    }).optional(),
    topicPositions: z.record(z.string().max(249), count).optional(),
    /** Of `snapshot`: the end offset of each partition of the actor's stage's output topic at the cut. */
    outputEnds: z.record(z.string().max(5), count).optional(),
  })).max(MAX_ACTORS),
})
export type SavepointReply = z.infer<typeof savepointReply>
