/** Small numeric helpers for benchmark reports. */

/** Nearest-rank percentile (p in 0..100) of `values`; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1]!
}

/** The median of `values` (the mean of the middle two for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Rounds for a report: 3 significant decimals below 10, 1 below 1000, integers above. */
export function round(v: number): number {
  if (!Number.isFinite(v)) return v
  const a = Math.abs(v)
  if (a >= 1000) return Math.round(v)
  if (a >= 10) return Math.round(v * 10) / 10
  return Math.round(v * 1000) / 1000
}

/** Peak resident set size of this process so far, MiB (the kernel's high-water mark). */
export function peakRssMiB(): number {
  return process.resourceUsage().maxRSS / 1024
}

/** Milliseconds since the epoch with sub-millisecond precision, comparable across processes. */
export function wallMs(): number {
  return performance.timeOrigin + performance.now()
}

/** Logs a progress line on stderr (stdout carries only the JSON result). */
export function progress(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`)
}

/** CPU seconds (user + system, all threads) this process used since `from` (a process.cpuUsage()). */
export function cpuSecondsSince(from: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(from)
  return (d.user + d.system) / 1e6
}
