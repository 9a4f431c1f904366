/**
 * A weir process's log as data: its pino JSON lines on stderr, parsed as they come, for the
 * figures the runtime logs and publishes nowhere else (an actor's restore time and the
 * changelog records it replayed are logged at debug level: runtime/actor.ts, 'actor restored').
 *
 * @example
 * const w = startWeirProcess('w1', ['worker', …], { logLevel: 'debug' })
 * onLogEntry(w, (e) => { if (e.msg === 'actor restored') console.error(e.actor, e.ms, e.replayed) })
 */
import type { WeirProcess } from './scaling-cluster.ts'

/** One pino line: `time` is the writer's wall clock, ms since the epoch. */
export interface LogEntry {
  level: number
  time: number
  msg: string
  [field: string]: unknown
}

/** Calls `handler` with every JSON log line `p` writes on stderr from now on (other lines are skipped). */
export function onLogEntry(p: WeirProcess, handler: (entry: LogEntry) => void): void {
  let partial = ''
  p.child.stderr!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n')
    partial = lines.pop()!
    for (const line of lines) {
      if (!line.startsWith('{')) continue
      let entry: unknown
      try {
        entry = JSON.parse(line)
      } catch {
        continue
      }
      const e = entry as Partial<LogEntry>
      if (typeof e.msg === 'string' && typeof e.time === 'number') handler(e as LogEntry)
    }
  })
}
