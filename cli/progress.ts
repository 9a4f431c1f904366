/**
 * The live progress display on a terminal: per stage records/s, totals and lag, the last
 * completed epoch, redrawn in place on stderr about once a second.
 */
import type { ActorStats } from '../runtime/actor/actor.ts'
import type { Pipeline } from '../runtime/api/pipeline.ts'
import { formatDuration, formatTimeliness, outputTimeliness, stageTotals, throughputOf } from './stats.ts'

/** What the display reads; each actor's `lag` is kept fresh by the worker's progress reporter. */
export interface ProgressSource {
  stats(): Record<string, ActorStats>
  completedEpoch(): number
}

const fmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 })

/** Renders the display's lines; pure, so it can be checked without a terminal. */
export function renderProgress(
  pipeline: Pipeline,
  stats: Record<string, ActorStats>,
  rates: ReadonlyMap<string, number>,
  epoch: number,
  elapsedMs: number,
  status: string,
): string[] {
  const totals = stageTotals(pipeline, stats)
  const rows = totals.map((t) => [
    t.name,
    `${t.actors} actor${t.actors === 1 ? '' : 's'}`,
    `${fmt.format(rates.get(t.name) ?? 0)} rec/s`,
    `total ${fmt.format(throughputOf(t))}`,
    t.kind === 'source' ? '' : `lag ${fmt.format(t.lag)}`,
    t.deadLettered > 0 ? `dead-lettered ${fmt.format(t.deadLettered)}` : '',
    t.errors > 0 ? `errors ${fmt.format(t.errors)}` : '',
  ])
  const widths = rows.length === 0 ? [] : rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)))
  const lines = [`weir: ${pipeline.name}  ${status}  ${formatDuration(elapsedMs)}  epoch ${epoch}`]
  for (const r of rows) lines.push('  ' + r.map((cell, c) => (c === 0 || c === 1 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd())
  for (const t of outputTimeliness(pipeline, stats)) lines.push(`  timeliness of ${t.name}: ${formatTimeliness(t)}`)
  return lines
}

export class ProgressDisplay {
  private timer: NodeJS.Timeout | undefined
  private drawn = 0
  private source: ProgressSource | undefined
  private status = 'starting'
  private last = new Map<string, { total: number; at: number }>()
  private rates = new Map<string, number>()

  constructor(private readonly pipeline: Pipeline, private readonly out: NodeJS.WriteStream, private readonly startedAt: number) {}

  start(source: ProgressSource): void {
    this.source = source
    this.status = 'running'
    this.draw()
    this.timer = setInterval(() => this.draw(true), 1000)
    this.timer.unref()
  }

  setStatus(status: string): void {
    this.status = status
    if (this.source !== undefined) this.draw(false)
  }

  /** Erases the display, so other output (a log line, the summary) starts on a clean line. */
  clear(): void {
    if (this.drawn === 0) return
    this.out.write(`\x1b[${this.drawn}A\r\x1b[J`)
    this.drawn = 0
  }

  stop(): void {
    clearInterval(this.timer)
    this.timer = undefined
    this.clear()
    this.source = undefined
  }

  /** Redraws; rates are taken only on the one-second ticks, so an extra redraw does not skew them. */
  private draw(takeRates = true): void {
    if (this.source === undefined) return
    const now = performance.now()
    const stats = this.source.stats()
    for (const t of takeRates ? stageTotals(this.pipeline, stats) : []) {
      const total = throughputOf(t)
      const prev = this.last.get(t.name)
      if (prev !== undefined && now > prev.at) this.rates.set(t.name, ((total - prev.total) * 1000) / (now - prev.at))
      this.last.set(t.name, { total, at: now })
    }
    const lines = renderProgress(this.pipeline, stats, this.rates, this.source.completedEpoch(), now - this.startedAt, this.status)
    const cols = this.out.columns
    const width = cols !== undefined && cols > 0 ? Math.max(20, cols - 1) : 200
    // Lines are cut to the terminal width: a wrapped line would break the cursor arithmetic.
    const text = lines.map((l) => (l.length > width ? l.slice(0, width) : l) + '\x1b[K\n').join('')
    const up = this.drawn > 0 ? `\x1b[${this.drawn}A\r` : ''
    this.out.write(up + text + '\x1b[J')
    this.drawn = lines.length
  }
}
