/**
 * Guards a data dir against a pipeline whose topology changed incompatibly (state and
 * offsets are laid out per stage and partition, so a changed partition count or a removed
 * stage would silently misread them), and against another pipe than the one its state
 * reflects (local state follows that log's changelogs). Checked before anything in the
 * data dir is written.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { TopologyMismatchError, WeirError } from './errors.ts'
import type { Pipe } from './pipe/pipe.ts'
import { instantiate, type Pipeline, type TopologyDescription } from './api/pipeline.ts'
import { constructProcessor } from './api/state.ts'
import { pipelineShapeOf, type PipelineShape, type WorkerRefused } from './control/messages.ts'

const FILE = 'topology.json'
const PIPE_FILE = 'pipe.json'

/**
 * What to do instead, in every refusal of a topology change: the savepoint commands carry
 * state across it (stage and state names are the identity state is matched by).
 */
export const TOPOLOGY_CHANGE_ADVICE = 'to change the topology and keep its state, stop the pipeline, take a savepoint of it (weir savepoint create) and start the new pipeline file from it on a new data dir (weir run --from-savepoint <savepoint>; a cluster: weir savepoint restore onto a pipe without its state, docs/savepoints.md); to start the new topology from empty state, run it under a new pipeline name'

/** The topology a data dir records: the pipeline's description and, per actor stage, its state names. */
export interface RecordedTopology extends TopologyDescription {
  /** Stage → its state names (keyed and actor state), sorted. Absent in files written before weir recorded them. */
  states?: Record<string, string[]>
}

/** The pipeline's topology with its state names (constructs each stage's processor once, as the start checks do). */
export function topologyOf(pipeline: Pipeline): RecordedTopology {
  const states: Record<string, string[]> = {}
  for (const spec of pipeline.actorStages) {
    const p = constructProcessor(spec.name, () => instantiate(spec))
    states[spec.name] = [...p.state.keyedNames, ...p.state.actorNames].sort()
  }
  return { ...pipeline.describe(), states }
}

/** One way two topologies differ: where, and in words. */
export interface TopologyDifference {
  stage: string
  field: string
  text: string
}

/**
 * Every difference between the recorded topology and the new one: stages removed, added,
 * or changed (kind, partitions, keyed output, topic, inputs), and states removed or added
 * per stage (a renamed state is one of each: its state would be orphaned, the new one empty).
 *
 * @example
 * diffTopology(recorded, topologyOf(pipeline)).map((d) => d.text) // ["stage 'again' was removed"]
 */
export function diffTopology(before: RecordedTopology, after: RecordedTopology): TopologyDifference[] {
  const out: TopologyDifference[] = []
  // Chaining follows from the rest of the topology (a second reader unchains a stage): its changes come last.
  const chained: TopologyDifference[] = []
  const add = (stage: string, field: string, text: string): void => void (field === 'chain' ? chained : out).push({ stage, field: `stages.${stage}${field === '' ? '' : `.${field}`}`, text })
  for (const old of before.stages) {
    const now = after.stages.find((s) => s.name === old.name)
    if (now === undefined) {
      add(old.name, '', `stage '${old.name}' was removed`)
      continue
    }
    for (const field of ['kind', 'parallelism', 'outputPartitions', 'keyedOutput', 'topic'] as const) {
      if (old[field] !== now[field]) add(old.name, field, `stage '${old.name}' changed ${field} from ${String(old[field])} to ${String(now[field])}`)
    }
    if (old.chainedTo !== now.chainedTo) {
      const text = now.chainedTo !== undefined
        ? `stage '${old.name}' is now chained to '${now.chainedTo}' (runs in its actors; the topic between them is no longer read)`
        : `stage '${old.name}' is no longer chained to '${old.chainedTo!}' (it reads a topic again, whose records were never written)`
      add(old.name, 'chain', text)
    }
    if (JSON.stringify(old.inputs) !== JSON.stringify(now.inputs)) add(old.name, 'inputs', `stage '${old.name}' changed its inputs from [${old.inputs.join(', ')}] to [${now.inputs.join(', ')}]`)
    const was = before.states?.[old.name]
    const is = after.states?.[old.name]
    if (was === undefined || is === undefined) continue
    const removed = was.filter((n) => !is.includes(n))
    const added = is.filter((n) => !was.includes(n))
    if (removed.length > 0) add(old.name, 'state', `stage '${old.name}' no longer declares state ${removed.map((n) => `'${n}'`).join(', ')}${added.length > 0 ? ` and declares ${added.map((n) => `'${n}'`).join(', ')} instead (a renamed state starts empty: state is matched by name)` : ''}`)
    else if (added.length > 0) add(old.name, 'state', `stage '${old.name}' declares new state ${added.map((n) => `'${n}'`).join(', ')}`)
  }
  for (const now of after.stages) if (!before.stages.some((s) => s.name === now.name)) add(now.name, '', `stage '${now.name}' is new`)
  return [...out, ...chained]
}

/**
 * Throws TopologyMismatchError naming every difference between the topology recorded in
 * the data dir and the pipeline's, and what to do instead.
 */
export function checkTopology(dataDir: string, pipeline: Pipeline): void {
  const path = join(dataDir, FILE)
  if (!existsSync(path)) return
  const stored = JSON.parse(readFileSync(path, 'utf8')) as RecordedTopology
  if (stored.pipeline !== pipeline.name) {
    throw new TopologyMismatchError(`data dir ${dataDir} belongs to pipeline '${stored.pipeline}', not '${pipeline.name}'; use another --data-dir`, { field: 'pipeline.name' })
  }
  const differences = diffTopology(stored, topologyOf(pipeline))
  if (differences.length === 0) return
  throw new TopologyMismatchError(
    `the topology of pipeline '${pipeline.name}' changed since ${dataDir} was written (its state and offsets are laid out by stage, partition and state name): ${differences.map((d) => d.text).join('; ')}. Processor code may change in place (a rolling upgrade); a topology may not: ${TOPOLOGY_CHANGE_ADVICE}`,
    { stage: differences[0]!.stage, field: differences[0]!.field, differences: differences.map((d) => d.text) },
  )
}

/**
 * The differences a coordinator's refusal can name: it knows the cluster's stages and their
 * partition counts (the shape workers send), not their state names or edges.
 */
export function diffShapes(cluster: PipelineShape, mine: PipelineShape): string[] {
  const out: string[] = []
  for (const s of cluster.stages) {
    const now = mine.stages.find((x) => x.name === s.name)
    if (now === undefined) out.push(`stage '${s.name}' was removed`)
    else if (now.parallelism !== s.parallelism) out.push(`stage '${s.name}' has ${now.parallelism} partitions, the cluster's ${s.parallelism}`)
  }
  for (const s of mine.stages) if (!cluster.stages.some((x) => x.name === s.name)) out.push(`stage '${s.name}' is new`)
  return out
}

/** A coordinator's refusal of this worker, with the stages that differ from the cluster's when it sent its shape. */
export function refusalReason(refusal: WorkerRefused, pipeline: Pipeline): string {
  if (refusal.shape === undefined) return refusal.reason
  const differences = diffShapes(refusal.shape, pipelineShapeOf(pipeline))
  return differences.length > 0
    ? `${refusal.reason}. This pipeline file differs from the cluster's: ${differences.join('; ')}`
    : `${refusal.reason}. Its stages and partition counts are the cluster's: the difference is in stage kinds, edges, output partitions or topics`
}

export function recordTopology(dataDir: string, pipeline: Pipeline): void {
  mkdirSync(dataDir, { recursive: true })
  const tmp = join(dataDir, FILE + '.tmp')
  writeFileSync(tmp, JSON.stringify(topologyOf(pipeline), null, 2))
  renameSync(tmp, join(dataDir, FILE))
}

/** The data dir holds state of another log than `pipe`: its positions and changelog offsets mean nothing there. */
export class DataDirPipeMismatchError extends WeirError {
  constructor(message: string, context: Record<string, unknown>) {
    super('WEIR_DATA_DIR_PIPE', message, { field: 'dataDir', ...context })
  }
}

interface PipeRecordFile {
  identity: string
  kind: string
  since: string
}

/** Throws DataDirPipeMismatchError when the data dir's state was made against another log. */
export function checkPipe(dataDir: string, pipe: Pipe): void {
  const path = join(dataDir, PIPE_FILE)
  if (!existsSync(path)) return
  const stored = JSON.parse(readFileSync(path, 'utf8')) as PipeRecordFile
  if (stored.identity === pipe.identity) return
  const other = stored.kind === pipe.kind ? `another ${pipe.kind} log (${stored.identity})` : `the ${stored.kind} pipe (${stored.identity})`
  throw new DataDirPipeMismatchError(
    `data dir ${dataDir} holds state made with ${other} since ${stored.since}, not with this ${pipe.kind} pipe (${pipe.identity}): its positions and changelog offsets belong to that log and would be mixed with this one's. Use another data dir for this pipe (--data-dir, or --state-dir for weir worker), or run on the pipe it was made with`,
    { dataDir, stored: stored.identity, pipe: pipe.identity },
  )
}

/** Remembers which log the data dir's state belongs to (first use only). */
export function recordPipe(dataDir: string, pipe: Pipe): void {
  const path = join(dataDir, PIPE_FILE)
  if (existsSync(path)) return
  mkdirSync(dataDir, { recursive: true })
  const record: PipeRecordFile = { identity: pipe.identity, kind: pipe.kind, since: new Date().toISOString() }
  writeFileSync(path + '.tmp', JSON.stringify(record, null, 2))
  renameSync(path + '.tmp', path)
}
