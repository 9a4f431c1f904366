/**
 * What restoring a savepoint into a pipeline would do, state by state: what maps (and
 * whether it is re-keyed to another parallelism or migrated to a newer schema version),
 * what the pipeline no longer declares (dropped unless the restore is told to), what is
 * new (starts empty), and what cannot be restored at all. `weir savepoint diff` prints it;
 * a restore refuses on anything refused, and on anything dropped without
 * `--allow-dropped-state` (Flink's `--allowNonRestoredState`, but naming what it drops).
 *
 * State is matched by stage name and state name, which every stage and state has (Flink's
 * most common restore failure, operators without a uid, cannot happen).
 */
import { instantiate, type Pipeline, type StageSpec } from '../api/pipeline.ts'
import { constructProcessor, type StateSchema } from '../api/state.ts'
import type { SavepointManifest, SavepointStage } from './manifest.ts'

export interface MappedState {
  stage: string
  state: string
  keyed: boolean
  keys: number
  fromVersion: number
  toVersion: number
  /** Values go through the state's `migrate`. */
  migrated: boolean
  fromParallelism: number
  toParallelism: number
}

export interface PlanItem {
  stage: string
  /** Absent: the whole stage. */
  state?: string
  reason: string
}

export interface RestorePlan {
  savepoint: string
  /** The savepoint's pipeline and this one have the same topology (fingerprint). */
  sameTopology: boolean
  maps: MappedState[]
  /** Stages re-keyed to another parallelism. */
  rekeyed: Array<{ stage: string; from: number; to: number }>
  dropped: PlanItem[]
  added: PlanItem[]
  refused: PlanItem[]
}

/** The states a stage's processor declares, with their versions and migrations (constructs the processor once). */
export function schemasOf(spec: StageSpec): StateSchema[] {
  return (constructProcessor(spec.name, () => instantiate(spec)) as { state: { schemas: StateSchema[] } }).state.schemas
}

/** The declared states of each actor stage of `pipeline`. */
export function declaredStates(pipeline: Pipeline): Map<string, StateSchema[]> {
  return new Map(pipeline.actorStages.map((spec) => [spec.name, schemasOf(spec)]))
}

function keyCount(stage: SavepointStage, state: string): number {
  return stage.actors.reduce((n, a) => n + (a.keys[state] ?? 0), 0)
}

export function planRestore(manifest: SavepointManifest, pipeline: Pipeline, declared = declaredStates(pipeline)): RestorePlan {
  const plan: RestorePlan = { savepoint: manifest.id, sameTopology: manifest.fingerprint === pipeline.fingerprint(), maps: [], rekeyed: [], dropped: [], added: [], refused: [] }
  for (const [name, old] of Object.entries(manifest.stages)) {
    const spec = pipeline.stage(name)
    const timers = old.actors.reduce((n, a) => n + a.timers, 0)
    if (spec === undefined || (spec.kind !== 'source' && spec.kind !== 'processor')) {
      const held = old.states.map((s) => `${s.name} (${s.keyed ? `${keyCount(old, s.name)} keys` : 'actor state'})`)
      plan.dropped.push({ stage: name, reason: `stage '${name}' is not in the pipeline${spec === undefined ? '' : ` as a processor (it is a ${spec.kind})`}: its state ${held.length === 0 ? 'is empty' : held.join(', ')}${timers > 0 ? `, ${timers} timers` : ''} would be dropped` })
      continue
    }
    if (spec.kind !== old.kind) {
      plan.refused.push({ stage: name, reason: `stage '${name}' was a ${old.kind} and is a ${spec.kind} now: a source's state is its read position, a processor's its keyed state; rename the stage to start it empty` })
      continue
    }
    const states = declared.get(name) ?? []
    checkParallelism(plan, spec, old, pipeline, states)
    for (const s of old.states) {
      const now = states.find((d) => d.name === s.name)
      const keys = keyCount(old, s.name)
      if (now === undefined) {
        plan.dropped.push({ stage: name, state: s.name, reason: `state '${s.name}' of stage '${name}' (${s.keyed ? `${keys} keys` : 'actor state'}) is not declared by the stage's processor any more (removed or renamed): it would be dropped` })
        continue
      }
      if (now.kind !== s.kind) {
        plan.refused.push({ stage: name, state: s.name, reason: `state '${s.name}' of stage '${name}' was a ${s.kind} state and is a ${now.kind} state now: declare a new name for the new kind` })
        continue
      }
      if (now.version < s.version) {
        plan.refused.push({ stage: name, state: s.name, reason: `state '${s.name}' of stage '${name}' is at version ${s.version} in the savepoint and ${now.version} in the pipeline: a savepoint is not restored into older code` })
        continue
      }
      if (now.version > s.version && now.migrate === undefined) {
        plan.refused.push({ stage: name, state: s.name, reason: `state '${s.name}' of stage '${name}' went from version ${s.version} to ${now.version} without a migrate function: declare it with { version: ${now.version}, migrate: (value, fromVersion) => … }` })
        continue
      }
      plan.maps.push({ stage: name, state: s.name, keyed: s.keyed, keys, fromVersion: s.version, toVersion: now.version, migrated: now.version > s.version, fromParallelism: old.parallelism, toParallelism: spec.parallelism })
    }
    for (const d of states) {
      if (!old.states.some((s) => s.name === d.name)) plan.added.push({ stage: name, state: d.name, reason: `state '${d.name}' of stage '${name}' is new: it starts empty` })
    }
  }
  for (const spec of pipeline.actorStages) {
    if (manifest.stages[spec.name] === undefined) plan.added.push({ stage: spec.name, reason: `stage '${spec.name}' is new: it starts empty${spec.kind === 'source' ? ' (a source reads from its beginning)' : ''}` })
  }
  return plan
}

/** A stage whose parallelism changed can be restored only if its state can be split by record key. */
function checkParallelism(plan: RestorePlan, spec: StageSpec, old: SavepointStage, pipeline: Pipeline, declared: StateSchema[]): void {
  if (spec.parallelism === old.parallelism) return
  const what = `stage '${spec.name}' goes from ${old.parallelism} to ${spec.parallelism} actors`
  if (spec.kind === 'source') {
    plan.refused.push({ stage: spec.name, reason: `${what}: a source's state is per source partition (its read position), which cannot be split or merged; keep its partitions and rescale the stages after it` })
    return
  }
  // Actor state the new code still declares must say how it is redistributed; state it dropped is listed as dropped.
  const actorStates = old.states.filter((s) => !s.keyed && declared.some((d) => d.name === s.name && d.rescale === undefined))
  if (actorStates.length > 0) {
    plan.refused.push({ stage: spec.name, reason: `${what}, but its actor state (${actorStates.map((s) => s.name).join(', ')}) is one value per actor, which cannot be split or merged by key: keep its parallelism, or declare the state with a rescale function (StateOptions.rescale)` })
    return
  }
  const hasKeyed = old.actors.some((a) => Object.values(a.keys).some((n) => n > 0) || a.timers > 0)
  if (hasKeyed && !(old.keyPartitioned && pipeline.isKeyPartitioned(spec))) {
    plan.refused.push({ stage: spec.name, reason: `${what}, but its input is not partitioned by key (keyBy), so its keyed state cannot be re-keyed to the new actors; keep its parallelism or key its input` })
    return
  }
  plan.rekeyed.push({ stage: spec.name, from: old.parallelism, to: spec.parallelism })
}

/** The plan as lines for people (`weir savepoint diff`). */
export function formatPlan(plan: RestorePlan): string {
  const lines: string[] = [`savepoint ${plan.savepoint}: ${plan.sameTopology ? 'same topology as the pipeline' : 'the topology differs from the pipeline'}`]
  const section = (title: string, items: string[]): void => {
    if (items.length === 0) return
    lines.push(`${title}:`)
    for (const i of items) lines.push(`  ${i}`)
  }
  section('maps', plan.maps.map((m) => `${m.stage}.${m.state}: ${m.keyed ? `${m.keys} keys` : 'actor state'}${m.migrated ? `, migrated from version ${m.fromVersion} to ${m.toVersion}` : ''}${m.fromParallelism !== m.toParallelism ? `, re-keyed from ${m.fromParallelism} to ${m.toParallelism} actors` : ''}`))
  section('re-keyed', plan.rekeyed.map((r) => `${r.stage}: ${r.from} → ${r.to} actors`))
  section('dropped (restore needs --allow-dropped-state)', plan.dropped.map((d) => d.reason))
  section('new (starts empty)', plan.added.map((a) => a.reason))
  section('refused (cannot be restored)', plan.refused.map((r) => r.reason))
  lines.push(plan.refused.length > 0 ? 'result: refused' : plan.dropped.length > 0 ? 'result: restorable only with --allow-dropped-state' : 'result: restorable')
  return lines.join('\n') + '\n'
}
