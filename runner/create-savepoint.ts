/**
 * Taking a savepoint of a stopped pipeline: one consistent cut of every actor's state, with
 * nothing in flight between stages, written in the neutral format of manifest.ts.
 *
 * weir's barriers are not aligned across stages (each edge is a topic, each actor commits on
 * its own), so the actors' newest checkpoints together are a consistent state only with the
 * records still in the topics between them. Rather than carry those records (and re-route
 * them when a stage's parallelism changes), the cut is taken with none: the pipeline runs
 * once more with its inputs held (ActorConfig.holdInputs: sources are not polled, topics
 * from outside are not read) until every stage processed what its upstream committed, then
 * takes its final checkpoints. The state read afterwards is checked: every actor's committed
 * position in each topic of the pipeline is that topic's end, else the drain runs again (a
 * processing-time timer may emit during the stop). Flink's stop-with-savepoint likewise stops
 * the sources first; its aligned barriers make the in-flight buffers empty by construction.
 *
 * @example
 * const manifest = await createSavepoint(pipeline, { dataDir: '.weir/wordcount', target: './sp-1' })
 */
import { randomUUID } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Pipeline, StageSpec } from '../runtime/api/pipeline.ts'
import { INPUT_POSITIONS } from '../runtime/actor/state-keys.ts'
import { stateCodec } from '../runtime/codec.ts'
import { Faults } from '../runtime/faults.ts'
import { createLogger } from '../runtime/log.ts'
import { EmbeddedPipe } from '../runtime/pipe/embedded/embedded-pipe.ts'
import type { Pipe } from '../runtime/pipe/pipe.ts'
import { dataRecordsBetween } from '../runtime/watermarks.ts'
import { naming } from '../runtime/naming.ts'
import { replayChangelog } from '../runtime/state/changelog.ts'
import { StateStore } from '../runtime/state/state-store.ts'
import { startEmbedded } from './embedded-runner.ts'
import { stageStates, writeActorState } from '../runtime/savepoint/write-actor.ts'
import { MANIFEST_FILE, SAVEPOINT_FORMAT, SAVEPOINT_FORMAT_VERSION, SavepointError, type SavepointActor, type SavepointManifest, type SavepointStage } from '../runtime/savepoint/manifest.ts'
import { actorStoreKey } from '../runtime/savepoint/store-layout.ts'

export interface CreateSavepointOptions {
  /** The pipeline's data dir (`weir run --data-dir`), or a state dir for a pipe given in `pipe`. */
  dataDir: string
  /** The pipe the pipeline runs on; default the embedded pipe in `dataDir`. */
  pipe?: Pipe
  /** The savepoint directory to create (absent or empty). */
  target: string
  log?: Logger
  /** Checkpoint interval while draining, ms. Default 100. */
  epochIntervalMs?: number
  /** Drains tried before giving up on a pipeline that keeps emitting. Default 5. */
  maxRounds?: number
  /** How long one drain may take before it is given up (an actor waiting on a store that is down), ms. Default 600000. */
  drainTimeoutMs?: number
}

/**
 * Drains the stopped pipeline (see the file comment) and writes its savepoint to `target`.
 * Nothing else may run the pipeline meanwhile: a running `weir run` holds the embedded pipe,
 * and cluster workers must be stopped first (their actors would be fenced by the drain's).
 */
export async function createSavepoint(pipeline: Pipeline, options: CreateSavepointOptions): Promise<SavepointManifest> {
  const log = options.log ?? createLogger()
  const started = performance.now()
  checkTarget(options.target)
  const pipe = options.pipe ?? (await EmbeddedPipe.open(options.dataDir))
  try {
    const maxRounds = options.maxRounds ?? 5
    let rounds = 0
    let drained = 0
    const timings = { drainMs: 0, checkMs: 0, writeMs: 0 }
    for (;;) {
      rounds++
      const t0 = performance.now()
      drained += await drain(pipeline, pipe, options, log)
      const t1 = performance.now()
      const behind = await inFlight(pipeline, pipe, options.dataDir, log)
      timings.drainMs += t1 - t0
      timings.checkMs += performance.now() - t1
      if (behind.length === 0) break
      if (rounds >= maxRounds) {
        throw new SavepointError('WEIR_SAVEPOINT_NOT_QUIESCED', `records were still in flight after ${rounds} drains: ${behind.slice(0, 5).join('; ')}${behind.length > 5 ? ` (and ${behind.length - 5} more)` : ''}. A processing-time timer that emits on every firing keeps a pipeline from going quiet: take the savepoint when it does not fire, or stop it emitting`, { pipeline: pipeline.name, inFlight: behind })
      }
      log.info({ round: rounds, inFlight: behind }, 'savepoint: records still in flight after the drain; draining again')
    }
    mkdirSync(options.target, { recursive: true })
    const writeStarted = performance.now()
    const stages: Record<string, SavepointStage> = {}
    const topicPositions: Record<string, Record<string, number>> = {}
    for (const spec of pipeline.actorStages) stages[spec.name] = await saveStage(pipeline, spec, pipe, options, topicPositions, log)
    const manifest: SavepointManifest = {
      format: SAVEPOINT_FORMAT,
      formatVersion: SAVEPOINT_FORMAT_VERSION,
      id: `sp-${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*/, '')}-${randomUUID().slice(0, 8)}`,
      createdAt: new Date().toISOString(),
      pipeline: pipeline.name,
      fingerprint: pipeline.fingerprint(),
      topology: pipeline.describe(),
      pipe: { kind: pipe.kind, identity: pipe.identity },
      stages,
      topicPositions,
      drain: { rounds, records: drained, ms: Math.round(performance.now() - started) },
    }
    timings.writeMs = performance.now() - writeStarted
    // The manifest comes last: a directory without one is a savepoint that did not finish.
    const tmp = join(options.target, `${MANIFEST_FILE}.tmp`)
    writeFileSync(tmp, JSON.stringify(manifest, null, 2))
    renameSync(tmp, join(options.target, MANIFEST_FILE))
    log.info({ savepoint: manifest.id, target: options.target, rounds, ms: Math.round(performance.now() - started), drainMs: Math.round(timings.drainMs), checkMs: Math.round(timings.checkMs), writeMs: Math.round(timings.writeMs) }, 'savepoint written')
    return manifest
  } finally {
    if (options.pipe === undefined) await pipe.close()
  }
}

function checkTarget(target: string): void {
  if (existsSync(target) && readdirSync(target).length > 0) {
    throw new SavepointError('WEIR_SAVEPOINT_TARGET_EXISTS', `savepoint target ${target} exists and is not empty: a savepoint goes into a new directory`, { field: 'target', path: target })
  }
}

/** Runs the pipeline with its inputs held until nothing moves, then stops it (final checkpoints); returns the records its processors took in. */
async function drain(pipeline: Pipeline, pipe: Pipe, options: CreateSavepointOptions, log: Logger): Promise<number> {
  const run = await startEmbedded(pipeline, { dataDir: options.dataDir, pipe, actorConfig: { holdInputs: true }, epochIntervalMs: options.epochIntervalMs ?? 100, log, faults: Faults.none(), cluster: 'savepoint' })
  let finished = false
  void run.done.then(() => { finished = true }, () => { finished = true })
  const activity = (): number => Object.values(run.stats()).reduce((n, s) => n + s.recordsIn + s.recordsOut + s.deadLettered, 0)
  // Quiet: no record moved while two more epochs completed everywhere (each commits what the one before emitted).
  let last = -1
  let quietSince = run.completedEpoch()
  const deadline = Date.now() + (options.drainTimeoutMs ?? 600_000)
  while (!finished) {
    if (Date.now() > deadline) {
      const waiting = Object.entries(run.stats()).filter(([, s]) => s.waiting !== undefined).map(([id, s]) => `${id} waits for ${s.waiting!.on}: ${s.waiting!.message}`)
      await run.stop().catch(() => undefined)
      throw new SavepointError('WEIR_SAVEPOINT_DRAIN_TIMEOUT', `the pipeline did not go quiet within ${Math.round((options.drainTimeoutMs ?? 600_000) / 1000)} s of draining (epoch ${run.completedEpoch()} completed)${waiting.length > 0 ? `: ${waiting.join('; ')}` : ''}`, { pipeline: pipeline.name, waiting })
    }
    await new Promise((r) => setTimeout(r, 50))
    const now = activity()
    if (now !== last) {
      last = now
      quietSince = run.completedEpoch()
    } else if (run.completedEpoch() >= quietSince + 2) break
  }
  const result = await run.stop().catch(async () => ({ stats: run.stats() }))
  await run.done
  return Object.entries(result.stats).filter(([id]) => pipeline.stage(id.split('/')[0]!)?.kind === 'processor').reduce((n, [, s]) => n + s.recordsIn, 0)
}

/** Topics of the pipeline whose readers' committed positions are short of the end: "stage/p reads t: 10 of 12". */
async function inFlight(pipeline: Pipeline, pipe: Pipe, dataDir: string, log: Logger): Promise<string[]> {
  const behind: string[] = []
  for (const spec of pipeline.actorStages) {
    const internal = spec.inputs.map((i) => pipeline.stage(i)!).filter((s) => s.kind !== 'topic')
    if (internal.length === 0) continue
    for (let p = 0; p < spec.parallelism; p++) {
      const positions = await withCurrentStore(pipeline, spec, p, pipe, dataDir, log, async (store) => {
        const [raw] = await store.getMany([actorStoreKey(INPUT_POSITIONS)])
        return raw ? (stateCodec.decode(raw) as Record<string, number>) : {}
      })
      for (const input of internal) {
        const topic = pipeline.outputTopic(input)
        const end = await pipe.endOffset(topic, p)
        const at = positions[topic] ?? (await pipe.committedOffset(naming.group(pipeline.name, spec.name), topic, p)) ?? (await pipe.startOffset(topic, p))
        // Watermark marks past the position are no loss: every writer marks again at its first barrier after the restore.
        const data = await dataRecordsBetween(pipe, topic, p, at, end)
        if (data > 0) behind.push(`${naming.actor(spec.name, p)} reads ${topic}: ${data} records after its position ${at}`)
      }
    }
  }
  return behind
}

/** Opens an actor's local store and brings it to the end of its changelog, as the actor's restore does. */
async function withCurrentStore<T>(pipeline: Pipeline, spec: StageSpec, partition: number, pipe: Pipe, dataDir: string, log: Logger, use: (store: StateStore) => Promise<T>): Promise<T> {
  const path = join(dataDir, 'state', spec.name, String(partition))
  let store = await StateStore.open(path)
  try {
    await replayChangelog({
      pipe, topic: naming.changelog(pipeline.name, spec.name), partition, store, storePath: path, log, faults: Faults.none(),
      reopen: async () => {
        await store.close()
        StateStore.destroy(path)
        store = await StateStore.open(path)
        return store
      },
    })
    return await use(store)
  } finally {
    await store.close()
  }
}

async function saveStage(pipeline: Pipeline, spec: StageSpec, pipe: Pipe, options: CreateSavepointOptions, topicPositions: Record<string, Record<string, number>>, log: Logger): Promise<SavepointStage> {
  const actors: SavepointActor[] = []
  for (let p = 0; p < spec.parallelism; p++) {
    const written = await withCurrentStore(pipeline, spec, p, pipe, options.dataDir, log, (store) => writeActorState({ pipeline, spec, partition: p, entries: store.entries(), target: options.target }))
    for (const [t, offset] of Object.entries(written.topicPositions)) (topicPositions[t] ??= {})[String(p)] = offset
    actors.push(written.actor)
  }
  return { kind: spec.kind as 'source' | 'processor', parallelism: spec.parallelism, keyPartitioned: pipeline.isKeyPartitioned(spec), states: stageStates(spec), actors }
}
