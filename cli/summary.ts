/** The summary `weir run` prints on stdout when a run ends. */
import type { ActorStats } from '../runtime/actor/actor.ts'
import { type Pipeline } from '../runtime/api/pipeline.ts'
import { naming } from '../runtime/naming.ts'
import { formatDuration, formatTimeliness, outputTimeliness, stageTotals } from './stats.ts'

export interface SummaryInput {
  pipeline: Pipeline
  outcome: 'finished' | 'stopped' | 'failed'
  elapsedMs: number
  stats: Record<string, ActorStats>
  lastEpoch: number
  dataDir: string
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)))
  // Names left-aligned, figures right-aligned.
  return rows.map((r) => '  ' + r.map((cell, c) => (c <= 1 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ').trimEnd())
}

export function formatSummary(s: SummaryInput): string {
  const totals = stageTotals(s.pipeline, s.stats)
  const lines: string[] = []
  const note = s.outcome === 'stopped' ? ' (final checkpoint taken; run again to resume)' : s.outcome === 'failed' ? ' (nothing after the last checkpoint was committed)' : ''
  lines.push(`pipeline:   ${s.pipeline.name}`)
  lines.push(`outcome:    ${s.outcome}${note}`)
  lines.push(`elapsed:    ${formatDuration(s.elapsedMs)}`)
  lines.push(`last epoch: ${s.lastEpoch}`)
  lines.push(`data dir:   ${s.dataDir}`)
  lines.push('stages:')
  lines.push(
    ...table([
      ['stage', 'kind', 'actors', 'records in', 'records out', 'dead-lettered', 'errors'],
      ...totals.map((t) => [t.name, t.kind, String(t.actors), String(t.recordsIn), String(t.recordsOut), String(t.deadLettered), String(t.errors)]),
    ]),
  )
  const dead = totals.filter((t) => t.deadLettered > 0)
  if (dead.length > 0) {
    const n = dead.reduce((a, t) => a + t.deadLettered, 0)
    lines.push(`dead letters: ${n} record${n === 1 ? '' : 's'} dead-lettered`)
    for (const t of dead) lines.push(`  ${t.name}: ${t.deadLettered} in topic ${naming.deadLetter(s.pipeline.name, t.name)}`)
  }
  lines.push('timeliness:')
  for (const t of outputTimeliness(s.pipeline, s.stats)) lines.push(`  ${t.name}: ${formatTimeliness(t)}`)
  lines.push('output:')
  if (s.pipeline.outputDescriptions.length > 0) {
    for (const d of s.pipeline.outputDescriptions) lines.push(`  ${d}`)
  } else {
    for (const o of s.pipeline.outputs) lines.push(`  ${o.name}: topic ${s.pipeline.outputTopic(o)}`)
  }
  return lines.join('\n') + '\n'
}
