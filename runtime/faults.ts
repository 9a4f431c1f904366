/**
 * Crash injection for recovery tests. A fault plan names a point in the checkpoint
 * protocol and the hit on which to crash there. In a child process the crash is a real
 * SIGKILL of the process; in-process (weir/testing) it abandons the run as a kill would.
 *
 * @example
 * WEIR_CRASH_AT=after-pipe-commit:3 weir run pipeline.ts   # SIGKILL at the 3rd commit
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
  /** Crash on this hit of the point (1 = the first time it is reached). */
  hit: number
}

export class Faults {
  private readonly hits = new Map<CrashPoint, number>()
  private crashed = false

  constructor(private readonly spec: CrashSpec | undefined, private readonly mode: 'sigkill' | 'throw') {}

  static none(): Faults {
    return new Faults(undefined, 'throw')
  }

  /** Reads WEIR_CRASH_AT=point:hit; a malformed value is refused, not ignored. */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): Faults {
    const raw = env.WEIR_CRASH_AT
    if (raw === undefined || raw === '') return Faults.none()
    const [point, hit] = raw.split(':')
    if (!CRASH_POINTS.includes(point as CrashPoint) || !/^\d+$/.test(hit ?? '') || Number(hit) < 1) {
      throw new WeirError('WEIR_CONFIG_INVALID', `WEIR_CRASH_AT: expected <point>:<hit> with point one of ${CRASH_POINTS.join(', ')}, got '${raw}'`, { field: 'WEIR_CRASH_AT' })
    }
    return new Faults({ point: point as CrashPoint, hit: Number(hit) }, 'sigkill')
  }

  get armed(): boolean {
    return this.spec !== undefined && !this.crashed
  }

  /** Marks reaching `point`; crashes when the plan says so. */
  point(point: CrashPoint): void {
    if (this.spec === undefined || this.spec.point !== point || this.crashed) return
    const n = (this.hits.get(point) ?? 0) + 1
    this.hits.set(point, n)
    if (n !== this.spec.hit) return
    this.crashed = true
    if (this.mode === 'sigkill') process.kill(process.pid, 'SIGKILL')
    throw new SimulatedCrash(point, n)
  }
}
