/**
 * Crash injection for recovery tests. A fault plan names a point in the checkpoint
 * protocol and the hit on which to crash there, optionally counted only from a place in
 * the run on (after the sources polled N times, or after a stage processed N records), so a
 * plan can land anywhere in a run, not only in its first epochs. In a child process the
 * crash is a real SIGKILL of the process; in-process (weir/testing) it abandons the run as
 * a kill would.
 *
 * @example
 * WEIR_CRASH_AT=after-pipe-commit:3            weir run pipeline.ts   # SIGKILL at the 3rd commit
 * WEIR_CRASH_AT=source-poll:1@5000             weir run pipeline.ts   # at the 5001st source poll
 * WEIR_CRASH_AT=after-pipe-commit:1@sink:8000  weir run pipeline.ts   # at the 1st commit after stage sink processed 8000 records
 */
import { WeirError } from './errors.ts'

export const CRASH_POINTS = [
  /** In the middle of a micro-batch, after some records were processed. */
  'mid-batch',
  /** At a barrier, before the pipe transaction commits. */
  'before-commit',
  /** After the pipe committed, before local RocksDB holds the new state. */
  'after-pipe-commit',
  /** After local RocksDB was written. */
  'after-local-write',
  /** After the pipe committed, before `onCheckpointCommitted` publishes (actors that have it; also at start). */
  'before-publish',
  /** After `onCheckpointCommitted` published a committed checkpoint. */
  'after-publish',
  /** While replaying the changelog into local state during recovery. */
  'during-replay',
  /** In a source's poll, after it emitted. */
  'source-poll',
] as const

export type CrashPoint = (typeof CRASH_POINTS)[number]

/** Thrown in-process to simulate a kill; the runner abandons everything without writing. */
export class SimulatedCrash extends WeirError {
  constructor(readonly point: CrashPoint, readonly hit: number) {
    super('WEIR_SIMULATED_CRASH', `simulated crash at ${point} (hit ${hit})`, {})
  }
}

export interface CrashSpec {
  point: CrashPoint
  /** Crash on this hit of the point (1 = the first time it is reached), counted from the `after…` place on. */
  hit: number
  /**
   * Count hits only after sources polled this many times in the run (all source actors
   * together; an unpaced generator polls once per record it emits, and once more when it
   * ends). Default 0.
   */
  afterPolls?: number
  /**
   * Count hits only once the actors of `stage` processed this many data records in the run
   * (all its actors together, counted at the end of each micro-batch). Default: from the start.
   */
  afterRecords?: { stage: string; records: number }
}

export class Faults {
  private readonly hits = new Map<CrashPoint, number>()
  private crashed = false
  private polls = 0
  private records = 0

  /** `counting` (with no spec): never crashes, but counts every point (see `hitsOf`). */
  constructor(private readonly spec: CrashSpec | undefined, private readonly mode: 'sigkill' | 'throw', private readonly counting = false) {}

  static none(): Faults {
    return new Faults(undefined, 'throw')
  }

  /** Never crashes; counts how often each point is reached (micro-batches, checkpoints, polls) for test statistics. */
  static counter(): Faults {
    return new Faults(undefined, 'throw', true)
  }

  /** Reads WEIR_CRASH_AT=point:hit[@polls | @stage:records]; a malformed value is refused, not ignored. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): Faults {
    const raw = env.WEIR_CRASH_AT
    if (raw === undefined || raw === '') return Faults.none()
    const m = /^([a-z-]+):(\d+)(?:@(?:([A-Za-z0-9_-]+):)?(\d+))?$/.exec(raw)
    if (m === null || !CRASH_POINTS.includes(m[1] as CrashPoint) || Number(m[2]) < 1) {
      throw new WeirError('WEIR_CONFIG_INVALID', `WEIR_CRASH_AT: expected <point>:<hit>[@<polls>|@<stage>:<records>] with point one of ${CRASH_POINTS.join(', ')} and hit >= 1, got '${raw}'`, { field: 'WEIR_CRASH_AT' })
    }
    const spec: CrashSpec = { point: m[1] as CrashPoint, hit: Number(m[2]) }
    if (m[4] !== undefined) {
      if (m[3] === undefined) spec.afterPolls = Number(m[4])
      else spec.afterRecords = { stage: m[3], records: Number(m[4]) }
    }
    return new Faults(spec, 'sigkill')
  }

  /** The WEIR_CRASH_AT value of a spec (a spec with both `after…` places is refused: the variable holds one). */
  static envValue(spec: CrashSpec): string {
    if (spec.afterPolls && spec.afterRecords) throw new WeirError('WEIR_CONFIG_INVALID', 'WEIR_CRASH_AT holds one place: afterPolls or afterRecords, not both', { field: 'WEIR_CRASH_AT' })
    const after = spec.afterRecords ? `@${spec.afterRecords.stage}:${spec.afterRecords.records}` : spec.afterPolls ? `@${spec.afterPolls}` : ''
    return `${spec.point}:${spec.hit}${after}`
  }

  /** The crash this plans, if any. */
  get plan(): CrashSpec | undefined {
    return this.spec
  }

  /** True while points are observed: a crash is still to come, or hits are being counted. */
  get armed(): boolean {
    return this.counting || (this.spec !== undefined && !this.crashed)
  }

  /** How often `point` was reached (counted for the planned point, or for every point by `counter()`). */
  hitsOf(point: CrashPoint): number {
    return point === 'source-poll' ? this.polls : (this.hits.get(point) ?? 0)
  }

  /** Marks that an actor of `stage` processed `records` data records (at the end of a micro-batch). */
  processed(stage: string, records: number): void {
    if (this.spec?.afterRecords?.stage === stage) this.records += records
  }

  /** Marks reaching `point`; crashes when the plan says so. */
  point(point: CrashPoint): void {
    if (!this.armed) return
    if (point === 'source-poll') this.polls++
    if (this.counting) {
      if (point !== 'source-poll') this.hits.set(point, (this.hits.get(point) ?? 0) + 1)
      return
    }
    const spec = this.spec!
    if (spec.point !== point || this.records < (spec.afterRecords?.records ?? 0)) return
    // A plan at source-poll after N polls crashes at poll N + hit.
    const polls = spec.afterPolls ?? 0
    if (point === 'source-poll' ? this.polls <= polls : this.polls < polls) return
    const n = (this.hits.get(point) ?? 0) + 1
    this.hits.set(point, n)
    if (n !== spec.hit) return
    this.crashed = true
    if (this.mode === 'sigkill') process.kill(process.pid, 'SIGKILL')
    throw new SimulatedCrash(point, n)
  }
}
