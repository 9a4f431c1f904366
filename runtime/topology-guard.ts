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
import type { Pipeline, TopologyDescription } from './api/pipeline.ts'

const FILE = 'topology.json'
const PIPE_FILE = 'pipe.json'

/** Throws TopologyMismatchError naming the first incompatible difference. */
export function checkTopology(dataDir: string, pipeline: Pipeline): void {
  const path = join(dataDir, FILE)
  if (!existsSync(path)) return
  const stored = JSON.parse(readFileSync(path, 'utf8')) as TopologyDescription
  const next = pipeline.describe()
  if (stored.pipeline !== next.pipeline) {
    throw new TopologyMismatchError(`data dir ${dataDir} belongs to pipeline '${stored.pipeline}', not '${next.pipeline}'; use another --data-dir`, { field: 'pipeline.name' })
  }
  for (const old of stored.stages) {
    const now = next.stages.find((s) => s.name === old.name)
    if (now === undefined) {
      throw new TopologyMismatchError(`stage '${old.name}' was removed; its state and offsets in ${dataDir} would be orphaned. To run the new topology, start it from empty state under a new pipeline name (with the embedded pipe, a new --data-dir does too); savepoints, which will carry state across a topology change, are not built yet`, { stage: old.name, field: `stages.${old.name}` })
    }
    for (const field of ['kind', 'parallelism', 'outputPartitions', 'keyedOutput', 'topic'] as const) {
      if (old[field] !== now[field]) {
        throw new TopologyMismatchError(`stage '${old.name}' changed ${field} from ${String(old[field])} to ${String(now[field])}; state in ${dataDir} is partitioned the old way`, { stage: old.name, field: `stages.${old.name}.${field}` })
      }
    }
    if (JSON.stringify(old.inputs) !== JSON.stringify(now.inputs)) {
      throw new TopologyMismatchError(`stage '${old.name}' changed its inputs from [${old.inputs.join(', ')}] to [${now.inputs.join(', ')}]`, { stage: old.name, field: `stages.${old.name}.inputs` })
    }
  }
}

export function recordTopology(dataDir: string, pipeline: Pipeline): void {
  mkdirSync(dataDir, { recursive: true })
  const tmp = join(dataDir, FILE + '.tmp')
  writeFileSync(tmp, JSON.stringify(pipeline.describe(), null, 2))
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
