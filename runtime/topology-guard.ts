/**
 * Guards a data dir against a pipeline whose topology changed incompatibly: state and
 * offsets are laid out per stage and partition, so a changed partition count or a removed
 * stage would silently misread them. Checked before anything in the data dir is written.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync, renameSync } from 'node:fs'
import { join } from 'node:path'
import { TopologyMismatchError } from './errors.ts'
import type { Pipeline, TopologyDescription } from './api/pipeline.ts'

const FILE = 'topology.json'

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
