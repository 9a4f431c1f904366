/**
 * An actor's side of in-band watermarks: its own watermark (a source's generated one, or
 * the minimum over its inputs' writers), the marks it writes into the partitions a stage
 * of the pipeline reads (at every barrier, after the epoch's records and in the same
 * transaction; also between barriers during a backlog), and the watermark state it
 * checkpoints with its positions, so a restarted actor resumes with the matching watermark.
 */
import type { Pipeline, StageSpec } from '../api/pipeline.ts'
import type { OutgoingRecord } from '../pipe/pipe.ts'
import type { WriteCache } from '../state/write-cache.ts'
import { encodeMark, InputWatermarks, SourceWatermarks, type WatermarkView } from '../watermarks.ts'
import { ACTOR_PREFIX, WATERMARKS } from './state-keys.ts'

/**
 * Between checkpoints, a mark is also written once this many records were emitted and the
 * watermark advanced: a big transaction (a backlog) carries its watermark progress with
 * it, so downstream windows close as it goes. A slow stream's marks come with its
 * checkpoints, so its watermark (and its progress events) move about once an epoch.
 */
const MARK_EVERY_RECORDS = 1000

export interface WatermarkStats {
  watermark: number
  watermarkChangedAt: number | undefined
  idle: boolean
}

export interface ActorWatermarksDeps {
  pipeline: Pipeline
  spec: StageSpec
  partition: number
  actor: string
  cache: WriteCache
  stats: WatermarkStats
  /** Sends a mark into the actor's open transaction. */
  send(topic: string, partition: number, record: OutgoingRecord): void
  /** Called when the watermark advanced (the progress channel reports it promptly). */
  onAdvance?: () => void
}

export class ActorWatermarks {
  /** A source's generated watermark. */
  readonly source: SourceWatermarks | undefined
  /** A processor's input watermarks. */
  readonly inputs: InputWatermarks | undefined
  private stateChanged = false
  /** Partitions this actor writes marks to: outputs some stage of the pipeline reads. */
  private readonly targets: Array<{ topic: string; partition: number }> = []
  /** The last mark written: its watermark and idleness, and records emitted since. */
  private lastMark = { watermark: -Infinity, idle: false, recordsSince: 0 }

  constructor(private readonly deps: ActorWatermarksDeps, stored: unknown, sourceFinished: boolean) {
    const { pipeline, spec, partition } = deps
    // Marks go only where a stage of this pipeline reads: outputs for other systems stay data-only.
    for (const out of pipeline.writtenBy(spec)) {
      if (pipeline.downstreamOf(out.name).length === 0) continue
      const topic = pipeline.outputTopic(out)
      const parts = out.keyedOutput ? Array.from({ length: out.outputPartitions }, (_, p) => p) : [partition % out.outputPartitions]
      for (const p of parts) this.targets.push({ topic, partition: p })
    }
    const now = Date.now()
    if (spec.kind === 'source') {
      this.source = new SourceWatermarks(spec.watermarks, now)
      this.source.restore(stored)
      if (sourceFinished) this.source.end()
    } else {
      this.inputs = new InputWatermarks(
        spec.inputs.map((name) => {
          const input = pipeline.stage(name)!
          return { writers: pipeline.writersOf(input, partition), strategy: input.watermarks }
        }),
        now,
      )
      this.inputs.restore(stored, now)
    }
    this.publish(this.view(now))
  }

  /** The actor's current watermark, as `ctx.watermark` shows it. */
  get watermark(): number {
    return this.source?.watermark ?? this.inputs?.watermark ?? -Infinity
  }

  /** The watermark this actor writes downstream now (sources: generated; processors: of their inputs). */
  view(now: number): WatermarkView {
    if (this.source !== undefined) return this.source.view(now)
    this.inputs!.update(now)
    return this.inputs!.view
  }

  /** Copies the watermark into the stats the progress channel reads. */
  publish(view: WatermarkView): void {
    const stats = this.deps.stats
    const changedAt = (this.source ?? this.inputs)?.changedAt
    const advanced = changedAt !== stats.watermarkChangedAt
    stats.watermark = view.watermark
    stats.idle = view.idle
    stats.watermarkChangedAt = changedAt
    if (advanced) this.deps.onAdvance?.()
  }

  /** Records were emitted: a source's newest event time moved, and a mark may be due. */
  emitted(records: Array<{ record: OutgoingRecord }>): void {
    const n = records.length
    if (n === 0) return
    const source = this.source
    if (source !== undefined) {
      const now = Date.now()
      for (let i = 0; i < n; i++) source.observeEmit(records[i]!.record.timestamp, now)
      this.stateChanged = true
    }
    this.lastMark.recordsSince += n
  }

  /**
   * At the barrier: a mark into every partition this actor writes that a stage reads
   * (after this epoch's records, in the same transaction), and the watermark state into the
   * checkpoint. Returns the ingest horizon the checkpoint carries.
   */
  atBarrier(positionsChanged: boolean): number {
    const now = Date.now()
    const view = this.view(now)
    this.publish(view)
    this.writeMark(view, now)
    if (positionsChanged || this.stateChanged) {
      const state = (this.source ?? this.inputs)!.snapshot()
      this.deps.cache.set(this.deps.cache.getOrCreate(ACTOR_PREFIX, WATERMARKS, true), state)
      this.stateChanged = false
    }
    return view.ingest
  }

  /** Between checkpoints: a mark when the watermark moved and enough was emitted since the last. */
  markIfDue(): void {
    if (this.targets.length === 0 || this.lastMark.recordsSince < MARK_EVERY_RECORDS) return
    const now = Date.now()
    const view = this.view(now)
    if (view.watermark <= this.lastMark.watermark && view.idle === this.lastMark.idle) return
    this.publish(view)
    this.writeMark(view, now)
  }

  /** A mark after the records emitted so far, into every partition a stage reads. */
  private writeMark(view: WatermarkView, now: number): void {
    this.lastMark = { watermark: view.watermark, idle: view.idle, recordsSince: 0 }
    if (this.targets.length === 0) return
    const mark = encodeMark({ writer: this.deps.actor, watermark: view.watermark, idle: view.idle, ingest: view.ingest }, now)
    for (const t of this.targets) this.deps.send(t.topic, t.partition, mark)
  }
}
