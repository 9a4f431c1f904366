/**
 * The last minutes of each output's timeliness, one point per evaluation, in memory only
 * (a restarted monitor starts an empty chart; the dashboard shows where it begins).
 *
 * @example
 * const history = new TimelinessHistory()
 * history.record(status)
 * history.series('prod', 'wordcount', 'count') // [{ at, timelinessMs }, …]
 */
import type { MonitorStatus } from './status.ts'

export interface HistoryPoint {
  /** Monitor clock, ms. */
  at: number
  timelinessMs: number | null
}

/** 10 minutes at one point per second. */
const KEEP_MS = 10 * 60_000

export class TimelinessHistory {
  private readonly series_ = new Map<string, HistoryPoint[]>()

  constructor(private readonly keepMs = KEEP_MS) {}

  record(status: MonitorStatus): void {
    const live = new Set<string>()
    for (const p of status.pipelines) {
      for (const o of p.outputs) {
        const k = key(p.cluster, p.pipeline, o.output)
        live.add(k)
        const points = this.series_.get(k) ?? []
        points.push({ at: status.at, timelinessMs: o.timelinessMs })
        while (points.length > 0 && points[0]!.at < status.at - this.keepMs) points.shift()
        this.series_.set(k, points)
      }
    }
    // Outputs of forgotten pipelines (or a changed topology) go with them.
    for (const k of this.series_.keys()) if (!live.has(k)) this.series_.delete(k)
  }

  series(cluster: string, pipeline: string, output: string): HistoryPoint[] | undefined {
    return this.series_.get(key(cluster, pipeline, output))
  }
}

function key(cluster: string, pipeline: string, output: string): string {
  return `${cluster}\0${pipeline}\0${output}`
}
