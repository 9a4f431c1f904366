/**
 * What the joins do with a record that arrives behind the watermark: what it would have
 * joined with may be gone from state (or already emitted without it), so it is dropped,
 * counted, and sent to a side output if there is one, as WindowAggregate does.
 */
import { ConfigError, type Context, type StreamRecord } from '../../index.ts'

/**
 * Where a join's late records go: a side output name (default 'late', used when the stage
 * declares it), or false to only count them.
 */
export type LateOutput = string | false

/** The side output a join sends late records to, from its option. */
export class LateRecords {
  private readonly output: LateOutput
  private readonly explicit: boolean

  constructor(option: LateOutput | undefined) {
    if (option !== undefined && option !== false && (typeof option !== 'string' || option.length === 0)) throw new ConfigError('lateOutput', `must be a side output name or false, got ${String(option)}`)
    this.output = option ?? 'late'
    this.explicit = option !== undefined
  }

  /** Sends a late record to the late output, if there is one (a name given explicitly must be declared: emitTo says so if not). */
  send(record: StreamRecord<unknown>, ctx: Context<unknown>): void {
    if (this.output === false) return
    if (this.explicit || ctx.sideOutputs.includes(this.output)) ctx.emitTo(this.output, record.key, record.value, { timestamp: record.timestamp })
  }
}

/** A per-actor count's rescale: on a savepoint restore to another actor count the total goes to the first actor. */
export function sumToFirst(counts: ReadonlyArray<number | undefined>, actors: number): Array<number | undefined> {
  return [counts.reduce<number>((sum, n) => sum + (n ?? 0), 0), ...new Array<undefined>(actors - 1).fill(undefined)]
}

/** The input a two-input join was given a record on: 0 or 1, else the stage was wired wrong. */
export function sideOf(record: StreamRecord<unknown>, join: string): 0 | 1 {
  if (record.input === 0 || record.input === 1) return record.input
  throw new ConfigError('inputs', `${join} reads two inputs (a.connect(b)); got a record of input ${record.input}`)
}
