/**
 * The `ctx` user code sees in `onRecord`, `onTimer` and `poll`: the current unit's key and
 * time, timers, the watermark and emit. Processors never see transactions, offsets or
 * RocksDB handles.
 */
import type { Logger } from 'pino'
import type { StageSpec } from '../api/pipeline.ts'
import type { ActorReports, Context, DeadLetterRecord, EmitOptions, SourceContext, StreamRecord, TimerService } from '../api/processor.ts'
import type { Outputs } from './outputs.ts'
import type { UnitScope } from './scope.ts'
import { WeirError } from '../errors.ts'

export class ActorContext implements SourceContext<unknown>, Context<unknown> {
  constructor(
    private readonly spec: StageSpec,
    readonly partition: number,
    private readonly scope: UnitScope,
    private readonly outputs: Outputs,
    readonly timers: TimerService,
    readonly log: Logger,
    private readonly watermarkOf: () => number,
    private readonly reports: ActorReports,
    private readonly keyedState: { load(keys: Iterable<string>): Promise<void>; loaded(key: string): boolean },
  ) {}
  get key(): string | null {
    return this.scope.key
  }
  get timestamp(): number {
    return this.scope.timestamp
  }
  get stage(): string {
    return this.spec.name
  }
  get partitions(): number {
    return this.spec.parallelism
  }
  get watermark(): number {
    return this.watermarkOf()
  }
  get sideOutputs(): readonly string[] {
    return this.spec.sideOutputs
  }
  emit(key: string | Uint8Array | null, value: unknown, options?: EmitOptions): void {
    this.outputs.emit(key, value, options)
  }
  deadLetter(record: StreamRecord<unknown> | DeadLetterRecord, error: unknown, detail?: unknown): void {
    this.reports.deadLetter(record, error, detail)
  }
  waitingOn(on: string | undefined, error?: unknown): void {
    this.reports.waitingOn(on, error)
  }
  reportStats(stats: Readonly<Record<string, number>>): void {
    this.reports.reportStats(stats)
  }
  async loadKeys(keys: Iterable<string>): Promise<void> {
    this.scope.requireUnit('ctx.loadKeys')
    await this.keyedState.load(keys)
  }
  withKey<R>(key: string, fn: () => R): R {
    this.scope.requireUnit('ctx.withKey')
    if (typeof key !== 'string') throw new WeirError('WEIR_STATE_KEY', `stage ${this.spec.name}: ctx.withKey takes a string key, got ${typeof key}`, { stage: this.spec.name, actor: this.scope.actor })
    if (!this.keyedState.loaded(key)) {
      throw new WeirError('WEIR_STATE_NOT_LOADED', `stage ${this.spec.name}: ctx.withKey(${JSON.stringify(key)}) before its state was loaded: call await ctx.loadKeys([...]) with the key earlier in the same poll`, { stage: this.spec.name, actor: this.scope.actor, key })
    }
    const outer = this.scope.key
    this.scope.key = key
    try {
      const r = fn()
      if (r instanceof Promise) throw new WeirError('WEIR_STATE_ASYNC', `stage ${this.spec.name}: ctx.withKey's function returned a Promise: it must be synchronous (load what it needs with ctx.loadKeys before)`, { stage: this.spec.name, actor: this.scope.actor, key })
      return r
    } finally {
      this.scope.key = outer
    }
  }
  emitTo(name: string, key: string | Uint8Array | null, value: unknown, options?: EmitOptions): void {
    this.outputs.emitTo(name, key, value, options)
  }
}
