/**
 * A savepoint is a directory: `manifest.json`, written last, and per actor of every stage
 * `stages/<stage>/<partition>/` with one frames file per keyed state
 * (`keyed.<state>.frames`), one for actor-scoped state (`actor.frames`) and one for timers
 * (`timers.frames`). The encoding is the same whatever pipe or state backend made it
 * (docs/savepoints.md): keys are record keys' own bytes, values the MessagePack encoding of
 * the state value, never RocksDB's or the changelog's layout.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { TopologyDescription } from '../api/pipeline.ts'
import type { StateSchema } from '../api/state.ts'
import { WeirError } from '../errors.ts'
import type { FileSummary } from './frames.ts'

export const SAVEPOINT_FORMAT = 'weir-savepoint'
export const SAVEPOINT_FORMAT_VERSION = 1
export const MANIFEST_FILE = 'manifest.json'

export interface SavepointManifest {
  format: typeof SAVEPOINT_FORMAT
  formatVersion: number
  id: string
  createdAt: string
  pipeline: string
  /** `Pipeline.fingerprint()` of the pipeline that took it: equal means the same topology. */
  fingerprint: string
  topology: TopologyDescription
  /** The pipe the state was read from (kind and identity): informational, a savepoint restores onto any pipe. */
  pipe: { kind: string; identity: string }
  stages: Record<string, SavepointStage>
  /** Where the pipeline was in each topic it reads from outside: topic → partition → next offset. */
  topicPositions: Record<string, Record<string, number>>
  /** What the drain before the cut did (runner/create-savepoint.ts): runs, records the processors took in, time from start to manifest. */
  drain: { rounds: number; records: number; ms: number }
  /**
   * Of a savepoint of a running pipeline (live.ts): how long it took no input in, and where
   * each stage's output topic ended at the cut (topic → partition → end offset): the
   * records after it came from the pipeline running on, and a restored run writes them again.
   */
  cut?: { heldMs: number; outputEnds: Record<string, Record<string, number>> }
}

export interface SavepointState {
  name: string
  kind: StateSchema['kind']
  keyed: boolean
  version: number
}

export interface SavepointStage {
  kind: 'source' | 'processor'
  parallelism: number
  /** Whether the stage's state is partitioned by record key (then it can be re-keyed to another parallelism). */
  keyPartitioned: boolean
  states: SavepointState[]
  actors: SavepointActor[]
}

export interface SavepointFile extends FileSummary {
  /** Relative to the savepoint directory. */
  path: string
}

export interface SavepointActor {
  partition: number
  /** Keys per keyed state. */
  keys: Record<string, number>
  timers: number
  /** A source that reached the end of its input. */
  finished: boolean
  /** `keyed.<state>`, `actor` and `timers` → the file. */
  files: Record<string, SavepointFile>
}

/** Why a savepoint cannot be taken, read or restored; `code` says which. */
export class SavepointError extends WeirError {
  constructor(code: string, message: string, context: Record<string, unknown> = {}) {
    super(code, message, context)
  }
}

/** Reads and checks a savepoint's manifest (its files are checked as they are read). */
export function readManifest(dir: string): SavepointManifest {
  const path = join(dir, MANIFEST_FILE)
  if (!existsSync(path)) {
    throw new SavepointError('WEIR_SAVEPOINT_INVALID', existsSync(dir) ? `${dir} is not a savepoint: it has no ${MANIFEST_FILE} (a savepoint whose creation did not finish has none either)` : `savepoint ${dir} does not exist`, { path: dir, field: 'savepoint' })
  }
  let manifest: SavepointManifest
  try {
    manifest = JSON.parse(readFileSync(path, 'utf8')) as SavepointManifest
  } catch (err) {
    throw new SavepointError('WEIR_SAVEPOINT_INVALID', `${path} is not valid JSON: ${(err as Error).message}`, { path })
  }
  if (manifest.format !== SAVEPOINT_FORMAT) throw new SavepointError('WEIR_SAVEPOINT_INVALID', `${path} is not a weir savepoint manifest (format '${String(manifest.format)}')`, { path })
  if (manifest.formatVersion !== SAVEPOINT_FORMAT_VERSION) {
    throw new SavepointError('WEIR_SAVEPOINT_INVALID', `${path} has savepoint format version ${manifest.formatVersion}; this weir reads version ${SAVEPOINT_FORMAT_VERSION}`, { path, formatVersion: manifest.formatVersion })
  }
  return manifest
}
