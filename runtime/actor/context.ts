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
  emitTo(name: string, key: string | Uint8Array | null, value: unknown, options?: EmitOptions): void {
    this.outputs.emitTo(name, key, value, options)
  }
}
