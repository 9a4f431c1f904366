/**
 * Restoring a savepoint onto a pipe: every actor's state is written into its changelog, in
 * transactions with the actor's own transactional id, before any actor starts. Actors then
 * restore as after the loss of their local state (changelog replay), and nothing else in
 * the runtime knows about savepoints. Keyed state and timers go to the actor that now owns
 * their key (`partitionForKey` over the stage's new parallelism); values of a state whose
 * schema version rose go through its `migrate`.
 *
 * The pipe must hold no state of the pipeline yet. A marker topic
 * (`weir.<pipeline>.savepoint-restore`) records the restore as started and done, so a
 * restore cut short by a crash is simply run again (the same entries are written over),
 * and a rerun after it finished does nothing.
 *
 * @example
 * await ensureTopics(pipe, pipeline)
 * const report = await restoreSavepoint(pipeline, pipe, './sp-1', { allowDroppedState: false })
 */
import type { Logger } from 'pino'
import type { Pipeline, StageSpec } from '../api/pipeline.ts'
import type { StateSchema } from '../api/state.ts'
import { INPUT_POSITIONS, WATERMARKS } from '../actor/state-keys.ts'
import { stateCodec } from '../codec.ts'
import { naming } from '../naming.ts'
import { partitionForKey } from '../partitioner.ts'
import type { Pipe, TransactionalProducer } from '../pipe/pipe.ts'
import { readRange } from '../pipe/read-range.ts'
import { join } from 'node:path'
import { readFrames } from './frames.ts'
import { readManifest, SavepointError, type SavepointStage } from './manifest.ts'
import { declaredStates, planRestore, type RestorePlan } from './plan.ts'
import { actorStoreKey, keyedKeys, TIMER_VALUE, timerStoreKey, type TimerDomain } from './store-layout.ts'

/** Changelog records per restore transaction. */
const CHUNK = 20_000

export interface RestoreOptions {
  /** Restore although state of the savepoint has nowhere to go (it is dropped); see RestorePlan.dropped. */
  allowDroppedState?: boolean
  log: Logger
}

export interface RestoreReport {
  savepoint: string
  /** The pipe already held this savepoint's state (a rerun): nothing was written. */
  alreadyRestored: boolean
  plan: RestorePlan
  keys: number
  timers: number
  migrated: number
  ms: number
}

type Marker = { savepoint: string; state: 'started' | 'done'; at: string }

export function restoreTopic(pipeline: string): string {
  return `weir.${pipeline}.savepoint-restore`
}

/** Refuses a plan with anything refused, or dropped without `allowDroppedState`, naming each. */
export function checkPlan(plan: RestorePlan, allowDroppedState: boolean): void {
  if (plan.refused.length > 0) {
    throw new SavepointError('WEIR_SAVEPOINT_INCOMPATIBLE', `savepoint ${plan.savepoint} cannot be restored into this pipeline: ${plan.refused.map((r) => r.reason).join('; ')}`, { savepoint: plan.savepoint, refused: plan.refused })
  }
  if (plan.dropped.length > 0 && !allowDroppedState) {
    throw new SavepointError('WEIR_SAVEPOINT_DROPS_STATE', `restoring savepoint ${plan.savepoint} would drop state the pipeline no longer declares: ${plan.dropped.map((d) => d.reason).join('; ')}. Rename it back, or restore with --allow-dropped-state to drop it (weir savepoint diff lists what maps)`, { savepoint: plan.savepoint, dropped: plan.dropped, field: 'allowDroppedState' })
  }
}

/** Writes the savepoint in `dir` into the changelogs of `pipeline` on `pipe` (whose topics exist: ensureTopics). */
export async function restoreSavepoint(pipeline: Pipeline, pipe: Pipe, dir: string, options: RestoreOptions): Promise<RestoreReport> {
  const started = performance.now()
  const manifest = readManifest(dir)
  const declared = declaredStates(pipeline)
  const plan = planRestore(manifest, pipeline, declared)
  const report: RestoreReport = { savepoint: manifest.id, alreadyRestored: false, plan, keys: 0, timers: 0, migrated: 0, ms: 0 }
  const marker = restoreTopic(pipeline.name)
  await pipe.ensureTopic({ name: marker, partitions: 1 })
  const markers = await readMarkers(pipe, marker)
  const done = markers.find((m) => m.state === 'done')
  // A rerun after the restore finished continues from the pipe's state, whatever the savepoint would say of this code now.
  if (done?.savepoint === manifest.id) return { ...report, alreadyRestored: true, ms: performance.now() - started }
  checkPlan(plan, options.allowDroppedState === true)
  if (done !== undefined) {
    throw new SavepointError('WEIR_SAVEPOINT_TARGET_HAS_STATE', `pipeline '${pipeline.name}' on this pipe was restored from savepoint ${done.savepoint} at ${done.at} and has state of its own since: restore ${manifest.id} onto a pipe (or data dir) without the pipeline's state`, { savepoint: manifest.id, restored: done.savepoint })
  }
  if (!markers.some((m) => m.state === 'started' && m.savepoint === manifest.id)) {
    for (const spec of pipeline.actorStages) {
      const topic = naming.changelog(pipeline.name, spec.name)
      for (let p = 0; p < spec.parallelism; p++) {
        const end = await pipe.endOffset(topic, p)
        if (end > 0) {
          throw new SavepointError('WEIR_SAVEPOINT_TARGET_HAS_STATE', `the pipe already holds state of pipeline '${pipeline.name}' (${topic} partition ${p} has records up to offset ${end}): a savepoint is restored onto a pipe without the pipeline's state. Use a new data dir (embedded pipe), or restore under a new pipeline name, or delete the pipeline's topics (weir.${pipeline.name}.*) on Kafka`, { topic, partition: p, offset: end, field: 'fromSavepoint' })
        }
      }
    }
  }
  await writeMarker(pipe, marker, pipeline.name, { savepoint: manifest.id, state: 'started', at: new Date().toISOString() })
  for (const spec of pipeline.actorStages) {
    const old = manifest.stages[spec.name]
    if (old === undefined || old.kind !== spec.kind) continue
    const counts = await restoreStage(pipeline, spec, old, dir, pipe, declared.get(spec.name) ?? [], options.log)
    report.keys += counts.keys
    report.timers += counts.timers
    report.migrated += counts.migrated
  }
  await writeMarker(pipe, marker, pipeline.name, { savepoint: manifest.id, state: 'done', at: new Date().toISOString() })
  report.ms = performance.now() - started
  options.log.info({ savepoint: manifest.id, keys: report.keys, timers: report.timers, migrated: report.migrated, ms: Math.round(report.ms) }, 'savepoint restored')
  return report
}

async function readMarkers(pipe: Pipe, topic: string): Promise<Marker[]> {
  const out: Marker[] = []
  const end = await pipe.endOffset(topic, 0)
  const start = await pipe.startOffset(topic, 0)
  if (end <= start) return out
  await readRange(pipe, topic, 0, start, end, (batch) => {
    for (const r of batch) if (r.value !== null) out.push(JSON.parse(r.value.toString('utf8')) as Marker)
  })
  return out
}

async function writeMarker(pipe: Pipe, topic: string, pipeline: string, m: Marker): Promise<void> {
  const producer = await pipe.producer(`weir.${pipeline}.savepoint-restore`)
  try {
    producer.begin()
    producer.send(topic, 0, { key: Buffer.from(m.savepoint), value: Buffer.from(JSON.stringify(m)), timestamp: Date.now() })
    await producer.commit()
  } finally {
    await producer.close()
  }
}

/** One changelog writer per actor of the stage, committing every CHUNK records. */
class ChangelogWriters {
  private readonly producers = new Map<number, { producer: TransactionalProducer; pending: number; commits: Promise<unknown> }>()
  private readonly topic: string
  constructor(private readonly pipe: Pipe, private readonly pipeline: string, private readonly stage: string) {
    this.topic = naming.changelog(pipeline, stage)
  }

  /**
   * Queues one entry; returns a promise only when the caller must wait (a producer to open,
   * or a transaction that filled up while the one before it still commits), so the common
   * case costs no await per entry.
   */
  send(partition: number, key: Buffer, value: Buffer, timestamp: number): Promise<void> | undefined {
    const w = this.producers.get(partition)
    if (w === undefined) return this.open(partition).then(() => this.send(partition, key, value, timestamp))
    w.producer.send(this.topic, partition, { key, value, timestamp })
    if (++w.pending < CHUNK) return undefined
    const commit = w.producer.commit()
    w.producer.begin()
    w.pending = 0
    const previous = w.commits
    w.commits = Promise.all([previous, commit])
    // One transaction commits while the next fills; a third waits for the first.
    return previous.then(() => w.producer.whenWritable())
  }

  private async open(partition: number): Promise<void> {
    if (this.producers.has(partition)) return
    const producer = await this.pipe.producer(naming.transactionalId(this.pipeline, this.stage, partition))
    if (this.producers.has(partition)) {
      await producer.close()
      return
    }
    producer.begin()
    this.producers.set(partition, { producer, pending: 0, commits: Promise.resolve() })
  }

  async close(): Promise<void> {
    for (const w of this.producers.values()) {
      try {
        await w.commits
        await w.producer.commit()
      } finally {
        await w.producer.close()
      }
    }
  }
}

async function restoreStage(pipeline: Pipeline, spec: StageSpec, old: SavepointStage, dir: string, pipe: Pipe, states: StateSchema[], log: Logger): Promise<{ keys: number; timers: number; migrated: number }> {
  const n = spec.parallelism
  const rekey = n !== old.parallelism
  const route = (key: Buffer | null, from: number): number => (rekey && key !== null ? partitionForKey(key, n) : from % n)
  const byName = new Map(states.map((s) => [s.name, s]))
  const oldVersion = new Map(old.states.map((s) => [s.name, s.version]))
  const upgrade = (name: string, value: Buffer): { value: Buffer; migrated: boolean } => {
    const now = byName.get(name)
    const from = oldVersion.get(name) ?? 1
    if (now === undefined || now.version === from || now.migrate === undefined) return { value, migrated: false }
    return { value: stateCodec.encode(now.migrate(stateCodec.decode(value), from)), migrated: true }
  }
  const writers = new ChangelogWriters(pipe, pipeline.name, spec.name)
  const keyed = keyedKeys()
  const now = Date.now()
  const counts = { keys: 0, timers: 0, migrated: 0 }
  const watermarks: unknown[] = []
  const rescaled = new Map<string, unknown[]>()
  try {
    for (const actor of old.actors) {
      for (const [name, file] of Object.entries(actor.files)) {
        for await (const frame of readFrames(join(dir, file.path), file)) {
          for (const entry of frame) {
            if (name.startsWith('keyed.')) {
              const state = name.slice('keyed.'.length)
              if (!byName.has(state)) continue
              const [key, raw] = entry as [Buffer | null, Buffer]
              const { value, migrated } = upgrade(state, raw)
              if (migrated) counts.migrated++
              const wait = writers.send(route(key, actor.partition), keyed(state, key), value, now)
              if (wait !== undefined) await wait
              counts.keys++
            } else if (name === 'timers') {
              const [domain, time, key] = entry as [TimerDomain, number, Buffer | null]
              const wait = writers.send(route(key, actor.partition), timerStoreKey(domain, time, key), TIMER_VALUE, now)
              if (wait !== undefined) await wait
              counts.timers++
            } else if (name === 'actor') {
              const [state, raw] = entry as [string, Buffer]
              if (state === WATERMARKS) {
                watermarks[actor.partition] = stateCodec.decode(raw)
                continue
              }
              if (!state.startsWith('#') && !byName.has(state)) continue
              const { value, migrated } = state.startsWith('#') ? { value: raw, migrated: false } : upgrade(state, raw)
              if (migrated) counts.migrated++
              if (rekey && !state.startsWith('#')) {
                // Redistributed below by the state's rescale, once every old actor's value is in.
                ;(rescaled.get(state) ?? rescaled.set(state, new Array(old.parallelism).fill(undefined)).get(state)!)[actor.partition] = stateCodec.decode(value)
                continue
              }
              // Actor state never changes parallelism (the plan refuses it), except the runtime's input positions, kept per partition.
              if (state === INPUT_POSITIONS && rekey) continue
              await writers.send(actor.partition % n, actorStoreKey(state), value, now)
            }
          }
        }
      }
    }
    for (const [state, values] of rescaled) {
      const next = byName.get(state)!.rescale!(values, n)
      if (!Array.isArray(next) || next.length !== n) throw new SavepointError('WEIR_SAVEPOINT_RESCALE', `stage ${spec.name}: the rescale of actor state '${state}' returned ${Array.isArray(next) ? `${next.length} values` : String(next)} for ${n} actors; it must return one value (or undefined) per new actor`, { stage: spec.name, state })
      for (let q = 0; q < n; q++) if (next[q] !== undefined) await writers.send(q, actorStoreKey(state), stateCodec.encode(next[q]), now)
    }
    for (let q = 0; q < n; q++) {
      const wm = restoredWatermarks(pipeline, spec, old, watermarks, q)
      if (wm !== undefined) await writers.send(q, actorStoreKey(WATERMARKS), stateCodec.encode(wm), now)
    }
  } finally {
    await writers.close()
  }
  log.debug({ stage: spec.name, ...counts, from: old.parallelism, to: n }, 'savepoint: stage restored')
  return counts
}

type WriterState = [number, boolean, number]
type InputSnapshot = { writers?: Record<string, WriterState>; maxTimestamp?: number }

/**
 * The watermark state of new actor `q`. Unchanged parallelism and writers: the old actor's.
 * Otherwise each writer of each input starts at the lowest watermark any old actor held for
 * any writer of that input. The cut is drained, so every reader heard every writer's last
 * mark: that minimum is the input's watermark as it was, neither ahead (windows would fire
 * early) nor behind it.
 */
function restoredWatermarks(pipeline: Pipeline, spec: StageSpec, old: SavepointStage, stored: unknown[], q: number): unknown {
  if (spec.kind === 'source') return stored[q]
  const snapshots = stored.filter((s): s is InputSnapshot[] => Array.isArray(s))
  if (snapshots.length === 0) return undefined
  const inputs = spec.inputs.map((name) => pipeline.writersOf(pipeline.stage(name)!, q))
  const own = stored[q]
  const unchanged = spec.parallelism === old.parallelism && Array.isArray(own) && own.length === inputs.length &&
    inputs.every((writers, i) => {
      const s = (own as InputSnapshot[])[i]
      return writers === undefined ? s?.writers === undefined : s?.writers !== undefined && JSON.stringify(Object.keys(s.writers).sort()) === JSON.stringify([...writers].sort())
    })
  if (unchanged) return own
  if (snapshots.some((s) => s.length !== inputs.length)) return undefined
  return inputs.map((writers, i) => {
    const all = snapshots.map((s) => s[i]!)
    if (writers === undefined) return { maxTimestamp: Math.min(...all.map((s) => s.maxTimestamp ?? -Infinity)) }
    const states = all.flatMap((s) => Object.values(s.writers ?? {}))
    const wm = states.length === 0 ? -Infinity : Math.min(...states.map((w) => w[0]))
    const ingest = states.length === 0 ? -Infinity : Math.min(...states.map((w) => w[2]))
    return { writers: Object.fromEntries(writers.map((w) => [w, [wm, false, ingest] satisfies WriterState])) }
  })
}

