/**
 * What a FileSetSource actor keeps in its actor state, committed with the records it
 * emitted: the current job (run id, status, position inside the current object, counts),
 * the objects it pinned at the job's start, and a summary of every earlier job. `weir jobs`
 * reads the same state from the committed changelog.
 */
import { createHash } from 'node:crypto'

/** Actor state names (Source state is per actor: one set per partition of the stage). */
export const JOB_STATE = 'fileset.job'
export const OBJECTS_STATE = 'fileset.objects'
export const RUNS_STATE = 'fileset.runs'

/**
 * - listed: the objects are pinned, nothing read yet;
 * - running: reading (or killed while reading: the committed state cannot tell, `weir status` can);
 * - finished: every pinned object was read; a rerun of this run id emits nothing;
 * - failed: the job refused an object (changed or vanished under the same run id) and stopped;
 *   a rerun checks the object again and goes on if it is back as pinned;
 * - abandoned: a newer run id was started with `onUnfinished: 'abandon'` before this one finished.
 */
export type JobStatus = 'listed' | 'running' | 'finished' | 'failed' | 'abandoned'

/** One pinned object: its key, and the ETag and size it had when the job listed it. */
export interface PinnedObject {
  key: string
  etag: string
  size: number
}

/** Where the job is: the next object to read (index into the pinned list) and, inside it, the next byte and the lines read before it. */
export interface JobPosition {
  object: number
  offset: number
  line: number
  /** The CSV header of the current object, once read. */
  columns?: string[]
}

export interface JobFailure {
  code: string
  message: string
  object: string
  pinned: string
  current: string | null
}

export interface JobState {
  run: string
  status: JobStatus
  /** ms since the epoch: when the objects were listed (also the records' default event time). */
  listedAt: number
  finishedAt?: number
  at: JobPosition
  /** Objects read to their end. */
  done: number
  total: number
  emitted: number
  deadLetters: number
  failure?: JobFailure
}

/** A job as kept in the history once another run id started, or as shown by `weir jobs`. */
export interface JobSummary {
  run: string
  status: JobStatus
  listedAt: number
  finishedAt?: number
  done: number
  total: number
  emitted: number
  deadLetters: number
  failure?: JobFailure
}

export function summaryOf(job: JobState): JobSummary {
  const { at: _at, ...summary } = job
  return summary
}

/**
 * The id of the record on line `line` of `key` (as pinned with `etag`) in run `run`: the
 * same on every rerun and restart, different for any other line, object version or run.
 * Each part is URI-encoded, so the `:` between them cannot occur inside one.
 */
export function eventId(run: string, key: string, etag: string, line: number): string {
  return `${encodeURIComponent(run)}:${encodeURIComponent(key)}:${encodeURIComponent(etag)}:${line}`
}

/** The partition (of `partitions`) whose actor reads the object `key`: a hash of the key, the same in every process. */
export function partitionOfKey(key: string, partitions: number): number {
  return createHash('sha256').update(key).digest().readUInt32BE(0) % partitions
}
