/**
 * Runs a pipeline in one process: embedded pipe, in-process control bus, a coordinator
 * and one worker behind the same ports the cluster uses. Bounded pipelines run until
 * every actor finished; unbounded ones until `stop()` (a final checkpoint on each actor).
 *
 * An actor that fails for good (past its stage's `onError` policy, or in `open` or
 * `onCheckpoint`) ends the run, bounded or not, as a task failure ends a Flink job once its
 * restart strategy gave up and as Kafka Streams' default exception handler shuts the
 * client down: the other actors take a final checkpoint, then `done` rejects with the
 * ActorFailedError naming the actor. Nothing is lost: a rerun on the same data dir resumes
 * every actor from its last checkpoint. `done` rejects with the actor's error as thrown when
 * it is a WeirError (StateCorruptedError from a sink's open, say), else an ActorFailedError
 * naming it; `failedActor` says which. (In a cluster the actor stops alone instead, and
 * the coordinator moves or quarantines it: docs/operations.md.)
 */
import { randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import { Coordinator, coordinatedPipeline } from '../coordinator/coordinator.ts'
import { actorConfigFor, type ActorConfig, type ActorStats } from '../runtime/actor/actor.ts'
import { checkClusterName, type ControlBus } from '../runtime/control/bus.ts'
import { LocalBus } from '../runtime/control/local/local-bus.ts'
import { Faults } from '../runtime/faults.ts'
import { SinkFencedError, TopicError, WeirError } from '../runtime/errors.ts'
import { createLogger } from '../runtime/log.ts'
import { EmbeddedPipe, type EmbeddedPipeOptions } from '../runtime/pipe/embedded/embedded-pipe.ts'
import type { Pipe } from '../runtime/pipe/pipe.ts'
import { instantiate, type Pipeline } from '../runtime/api/pipeline.ts'
import { constructProcessor } from '../runtime/api/state.ts'
import { naming } from '../runtime/naming.ts'
import { checkPipe, checkTopology, recordPipe, recordTopology } from '../runtime/topology-guard.ts'
import { restoreSavepoint } from '../runtime/savepoint/restore.ts'
import { takeLiveSavepoint, type LiveSavepointResult } from '../runtime/savepoint/live.ts'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { Worker } from '../runtime/worker.ts'
import { workerMetrics } from '../runtime/metrics.ts'
import type { Registry } from 'prom-client'
import { DEFAULT_EPOCH_INTERVAL_MS } from '../coordinator/epochs.ts'

export interface RunOptions {
  /** Where the embedded pipe and actor state live. */
  dataDir: string
  /**
   * What relative paths of the processors resolve against (`LifecycleContext.workDir`: a
   * JsonlFileSink's `out/counts.jsonl` is `<workDir>/out/counts.jsonl`). Default: the
   * process's working directory.
   */
  workDir?: string
  /** Checkpoint interval, ms. Default DEFAULT_EPOCH_INTERVAL_MS (coordinator/epochs.ts). */
  epochIntervalMs?: number
  actorConfig?: Partial<ActorConfig>
  faults?: Faults
  log?: Logger
  /** Use this pipe instead of opening the embedded one in `dataDir`. */
  pipe?: Pipe
  /** Options for the embedded pipe (compaction, retention). */
  pipeOptions?: EmbeddedPipeOptions
  /** Use this control bus (e.g. NATS) instead of the in-process one; the caller closes it. */
  bus?: ControlBus
  /** Namespace of the control subjects (`weir.<cluster>.<pipeline>.…`). Default 'embedded'. */
  cluster?: string
  /** Interval of progress and health events on the bus, ms. Default 1000. */
  progressIntervalMs?: number
  /**
   * Start from this savepoint (a directory made by `createSavepoint` / `weir savepoint
   * create`): its state is written into the pipeline's changelogs before any actor starts.
   * The pipe must hold none of the pipeline's state yet, except that of this same restore
   * (a rerun continues from the data dir). See runtime/savepoint/restore.ts.
   */
  fromSavepoint?: { dir: string; allowDroppedState?: boolean }
  /** Where `RunningPipeline.savepoint` (and a live `weir savepoint create --bus`) writes savepoints. Default `<dataDir>/savepoints`. */
  savepointDir?: string
}

export interface RunResult {
  /** 'finished': every actor reached the end of its input; 'stopped': stop() was called. */
  outcome: 'finished' | 'stopped'
  stats: Record<string, ActorStats>
}

export interface RunningPipeline {
  readonly done: Promise<RunResult>
  readonly pipe: Pipe
  /** Final checkpoint on every actor, then close. */
  stop(): Promise<RunResult>
  /** Per-actor figures, live. */
  stats(): Record<string, ActorStats>
  /** Newest epoch every live actor committed. */
  completedEpoch(): number
  /** Updates every actor's `lag` (end offsets minus positions) and returns the total. */
  measureLag(): Promise<number>
  /** The worker's Prometheus metrics (serve with serveMetrics, or merge into the monitor's). */
  readonly metrics: Registry
  /** The control bus the run coordinates and reports progress on. */
  readonly bus: ControlBus
  /** The run's worker (its readiness: runtime/worker-probes.ts). */
  readonly worker: Worker
  /** The actor whose failure ended the run (its error is what `done` rejects with), if one did. */
  readonly failedActor: string | undefined
  /**
   * Takes a savepoint while the pipeline runs (runtime/savepoint/live.ts): its inputs are
   * held until nothing is in flight, the state is pinned, and processing resumes while the
   * state is written to `<savepointDir>/<name>`.
   */
  savepoint(name?: string): Promise<LiveSavepointResult & { dir: string }>
}

/** Instantiates every stage's processor once, so a wrong factory is refused before anything is written. */
export function validateFactories(pipeline: Pipeline): void {
  for (const spec of pipeline.actorStages) constructProcessor(spec.name, () => instantiate(spec))
}

/** Checks topic inputs exist with their partition count; creates output, changelog and dead-letter topics per stage. */
export async function ensureTopics(pipe: Pipe, pipeline: Pipeline): Promise<void> {
  // In parallel: on Kafka each creation waits for its partition leaders.
  await Promise.all(pipeline.topology.filter((s) => s.kind === 'topic').map(async (s) => {
    const topic = pipeline.outputTopic(s)
    const found = await pipe.describeTopic(topic)
    if (found === undefined) throw new TopicError('WEIR_TOPIC_MISSING', `stages.${s.name}.topic: input topic ${topic} does not exist on the ${pipe.kind} pipe`, { topic, stage: s.name, field: `stages.${s.name}.topic` })
    if (found.partitions !== s.parallelism) throw new TopicError('WEIR_TOPIC_MISMATCH', `stages.${s.name}.partitions: input topic ${topic} has ${found.partitions} partitions, the pipeline says ${s.parallelism}`, { topic, stage: s.name, field: `stages.${s.name}.partitions` })
  }))
  await Promise.all(pipeline.actorStages.flatMap((s) => [
    pipe.ensureTopic({ name: pipeline.outputTopic(s), partitions: s.outputPartitions }),
    pipe.ensureTopic({ name: naming.changelog(pipeline.name, s.name), partitions: s.parallelism, compacted: true }),
    pipe.ensureTopic({ name: naming.deadLetter(pipeline.name, s.name), partitions: s.parallelism }),
  ]).concat(pipeline.topology.filter((s) => s.kind === 'side' || s.kind === 'keyed').map((s) => pipe.ensureTopic({ name: pipeline.outputTopic(s), partitions: s.outputPartitions }))))
}

/**
 * Starts a pipeline in this process: a coordinator and one worker, on the embedded pipe
 * (or `pipe`), coordinated over the in-process bus (or `bus`, e.g. NATS).
 *
 * @example
 * const run = await startEmbedded(pipeline, { dataDir: './.weir' })
 * const result = await run.done
 */
export async function startEmbedded(pipeline: Pipeline, options: RunOptions): Promise<RunningPipeline> {
  const log = options.log ?? createLogger()
  const cluster = options.cluster ?? 'embedded'
  checkClusterName(cluster) // before anything is touched
  checkTopology(options.dataDir, pipeline)
  validateFactories(pipeline)
  const pipe = options.pipe ?? (await EmbeddedPipe.open(options.dataDir, options.pipeOptions))
  const ownsPipe = options.pipe === undefined
  try {
    checkPipe(options.dataDir, pipe)
  } catch (err) {
    if (ownsPipe) await pipe.close()
    throw err
  }
  try {
    await ensureTopics(pipe, pipeline)
    if (options.fromSavepoint !== undefined) await restoreSavepoint(pipeline, pipe, options.fromSavepoint.dir, { allowDroppedState: options.fromSavepoint.allowDroppedState, log })
  } catch (err) {
    if (ownsPipe) await pipe.close()
    throw err
  }
  recordTopology(options.dataDir, pipeline)
  recordPipe(options.dataDir, pipe)

  const bus = options.bus ?? new LocalBus(log)
  const ownsBus = options.bus === undefined
  const coordinator = new Coordinator(bus, coordinatedPipeline(pipeline), {
    cluster,
    epochIntervalMs: options.epochIntervalMs ?? DEFAULT_EPOCH_INTERVAL_MS,
    log,
    onAllFinished: () => {
      if (ending) return
      ending = true
      void shutdown('finished').catch((err: unknown) => settle.reject(err))
    },
  })
  const worker = new Worker(bus, pipe, pipeline, {
    id: `embedded-${randomUUID().slice(0, 8)}`,
    cluster,
    dataDir: options.dataDir,
    workDir: options.workDir,
    log,
    faults: options.faults ?? Faults.none(),
    actorConfig: actorConfigFor(pipe, options.actorConfig),
    savepointDir: options.savepointDir ?? join(options.dataDir, 'savepoints'),
    progressIntervalMs: options.progressIntervalMs,
    epochIntervalMs: options.epochIntervalMs ?? DEFAULT_EPOCH_INTERVAL_MS,
    onActorFailed: (actor, err) => {
      if (ending) return
      failedActor = actor
      void failGracefully(err)
    },
    // A sink's store fenced the actor: another run claimed it (only this run has the pipeline's
    // actors), and a fenced actor would wait forever for an instance that is not this run's.
    onActorFenced: (actor, err) => {
      if (ending || !(err instanceof SinkFencedError)) return
      failedActor = actor
      void failGracefully(new WeirError('WEIR_ACTOR_FENCED', `${actor} was fenced by another instance of it, which this run does not have: another run of pipeline '${pipeline.name}' writes to the same sink store? ${err.message}`, { ...err.context, actor }, { cause: err }))
    },
  })
  const metrics = workerMetrics(pipeline, () => worker.actorList)

  let settle!: { resolve(r: RunResult): void; reject(e: unknown): void }
  const done = new Promise<RunResult>((resolve, reject) => { settle = { resolve, reject } })
  let ending = false
  let failedActor: string | undefined
  const lastStats: Record<string, ActorStats> = {}
  const stats = (): Record<string, ActorStats> => {
    for (const a of worker.actorList) lastStats[a.id] = a.stats
    return lastStats
  }

  const shutdown = async (outcome: RunResult['outcome']): Promise<void> => {
    stats()
    coordinator.stop()
    await worker.stop()
    stats()
    if (ownsBus) await bus.close()
    if (ownsPipe) await pipe.close()
    settle.resolve({ outcome, stats: lastStats })
  }

  const fail = async (err: unknown): Promise<void> => {
    if (ending) return
    ending = true
    stats()
    coordinator.stop()
    // A crash (real or simulated) writes nothing more; any other failure stops actors without a final commit too.
    await worker.abandon()
    if (ownsBus) await bus.close()
    if (ownsPipe) await pipe.close().catch(() => undefined)
    settle.reject(err)
  }

  /** One actor failed for good: the others stop with a final checkpoint, then the run fails with its error. */
  const failGracefully = async (err: unknown): Promise<void> => {
    if (ending) return
    ending = true
    try {
      stats()
      coordinator.stop()
      await worker.stop()
      stats()
      if (ownsBus) await bus.close()
      if (ownsPipe) await pipe.close().catch(() => undefined)
    } finally {
      settle.reject(err)
    }
  }

  coordinator.start()
  worker.start((err) => void fail(err))

  return {
    done,
    pipe,
    bus,
    worker,
    metrics,
    stats,
    completedEpoch: () => coordinator.completedEpoch,
    get failedActor() {
      return failedActor
    },
    async savepoint(name = `sp-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${randomUUID().slice(0, 8)}`) {
      if (ending) throw new WeirError('WEIR_SAVEPOINT_RUN_ENDED', `pipeline ${pipeline.name} has ended: a savepoint of a stopped pipeline is taken with createSavepoint (weir savepoint create)`, { pipeline: pipeline.name })
      const dir = join(options.savepointDir ?? join(options.dataDir, 'savepoints'), name)
      mkdirSync(dir, { recursive: true })
      return { ...(await takeLiveSavepoint({ bus, pipeline, cluster, dir, log })), dir }
    },
    async measureLag() {
      let total = 0
      for (const a of worker.actorList) total += await a.measureLag().catch(() => 0)
      return total
    },
    async stop() {
      if (!ending) {
        ending = true
        await shutdown('stopped')
      }
      return done
    },
  }
}
