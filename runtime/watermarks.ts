/**
 * Event-time watermarks of one actor. Watermarks travel in-band: at every checkpoint an
 * actor writes a watermark mark (a control record) into each partition it writes, inside
 * the checkpoint's transaction, after the records it describes. A reading actor keeps the
 * newest mark of every upstream writer of every input partition and takes the minimum;
 * this state is checkpointed with its input positions, so a restart resumes with the
 * watermark that matches them.
 */
import { CONTROL_HEADER, type Pipe, type PipeRecord, type StoredRecord } from './pipe/pipe.ts'
import { readRange } from './pipe/read-range.ts'
import { stateCodec } from './codec.ts'
import type { WatermarkOptions } from './api/pipeline.ts'

/** The control header's value on a watermark mark. */
const MARK_KIND = 'watermark'
const MARK_KIND_BYTES = Buffer.from(MARK_KIND)

/** What one writer says about everything it wrote before this mark. */
export interface WatermarkMark {
  writer: string
  /** No record at or below this event time follows from this writer; +Infinity: it ended. */
  watermark: number
  /** The writer brings no records for now: do not wait for it. */
  idle: boolean
  /** Wall-clock ms: everything the sources ingested before it has been written (upstream of here). */
  ingest: number
}

/** The actor's combined view. */
export interface WatermarkView {
  watermark: number
  idle: boolean
  ended: boolean
  /** -Infinity while unknown. */
  ingest: number
}

export function isControlRecord(r: PipeRecord): boolean {
  return r.headers !== undefined && r.headers[CONTROL_HEADER] !== undefined
}

/** Data records (watermark marks left out) of a partition in [from, end): what a reader past `from` has still to process. */
export async function dataRecordsBetween(pipe: Pipe, topic: string, partition: number, from: number, end: number): Promise<number> {
  let data = 0
  await readRange(pipe, topic, partition, from, end, (batch) => {
    for (const r of batch) if (!isControlRecord(r)) data++
  })
  return data
}

export function encodeMark(mark: WatermarkMark, now: number): PipeRecord {
  const wm = mark.watermark
  return {
    key: null,
    value: stateCodec.encode({ w: mark.writer, wm: Number.isFinite(wm) ? wm : null, e: wm === Infinity, i: mark.idle, t: Number.isFinite(mark.ingest) ? mark.ingest : null }),
    timestamp: Number.isFinite(wm) && wm >= 0 ? wm : now,
    headers: { [CONTROL_HEADER]: MARK_KIND_BYTES },
  }
}

/** The mark in a control record, or undefined for other control records (skipped by readers). */
export function decodeMark(r: StoredRecord): WatermarkMark | undefined {
  if (r.value === null || !r.headers?.[CONTROL_HEADER]?.equals(MARK_KIND_BYTES)) return undefined
  const m = stateCodec.decode(r.value) as { w?: unknown; wm?: unknown; e?: unknown; i?: unknown; t?: unknown }
  if (typeof m?.w !== 'string') return undefined
  return {
    writer: m.w,
    watermark: m.e === true ? Infinity : typeof m.wm === 'number' ? m.wm : -Infinity,
    idle: m.i === true,
    ingest: m.e === true ? Infinity : typeof m.t === 'number' ? m.t : -Infinity,
  }
}

type WriterState = [watermark: number, idle: boolean, ingest: number]

/** One input partition written by weir actors: the newest mark of each writer. */
class WrittenInput {
  readonly writers = new Map<string, WriterState>()
  constructor(writers: string[]) {
    for (const w of writers) this.writers.set(w, [-Infinity, false, -Infinity])
  }
  apply(mark: WatermarkMark): void {
    const prev = this.writers.get(mark.writer)
    // Monotonic per writer: a mark re-read after a restart never moves it back.
    this.writers.set(mark.writer, [Math.max(prev?.[0] ?? -Infinity, mark.watermark), mark.idle, Math.max(prev?.[2] ?? -Infinity, mark.ingest)])
  }
  view(): { watermark: number; idle: boolean; ingest: number } {
    let active = Infinity
    let all = -Infinity
    let anyActive = false
    let ingest = Infinity
    for (const [wm, idle, ing] of this.writers.values()) {
      all = Math.max(all, wm)
      ingest = Math.min(ingest, ing)
      if (idle && wm !== Infinity) continue
      anyActive = true
      active = Math.min(active, wm)
    }
    if (this.writers.size === 0) return { watermark: -Infinity, idle: false, ingest: -Infinity }
    return anyActive ? { watermark: active, idle: false, ingest } : { watermark: all, idle: true, ingest }
  }
}

/** One partition of a topic written outside the pipeline: watermarks from record timestamps. */
class ExternalInput {
  maxTimestamp = -Infinity
  lastRecordAt: number
  constructor(private readonly strategy: Required<WatermarkOptions>, now: number) {
    this.lastRecordAt = now
  }
  view(now: number): { watermark: number; idle: boolean; ingest: number } {
    const idle = this.strategy.idleTimeoutMs > 0 && now - this.lastRecordAt >= this.strategy.idleTimeoutMs
    return { watermark: boundedWatermark(this.maxTimestamp, this.strategy), idle, ingest: now }
  }
}

function boundedWatermark(maxTimestamp: number, strategy: Required<WatermarkOptions>): number {
  return maxTimestamp === -Infinity ? -Infinity : maxTimestamp - strategy.maxOutOfOrdernessMs - 1
}

export interface InputSpec {
  /** Upstream writers of this input partition (actor ids); undefined for a topic input. */
  writers: string[] | undefined
  strategy: Required<WatermarkOptions>
}

/** A processor actor's watermark: the minimum over the non-idle input partitions. */
export class InputWatermarks {
  private readonly inputs: Array<WrittenInput | ExternalInput>
  private current: WatermarkView = { watermark: -Infinity, idle: false, ended: false, ingest: -Infinity }
  /** When `current.watermark` last advanced (wall clock), for the progress channel. */
  changedAt: number | undefined

  constructor(specs: InputSpec[], now = Date.now()) {
    this.inputs = specs.map((s) => (s.writers === undefined ? new ExternalInput(s.strategy, now) : new WrittenInput(s.writers)))
  }

  get watermark(): number {
    return this.current.watermark
  }

  get view(): WatermarkView {
    return this.current
  }

  /** A mark read from input `input`. */
  applyMark(input: number, mark: WatermarkMark): void {
    const i = this.inputs[input]
    if (i instanceof WrittenInput) i.apply(mark)
  }

  /** A record of a topic input (writers outside the pipeline). */
  observeTimestamp(input: number, timestamp: number, now: number): void {
    const i = this.inputs[input]
    if (i instanceof ExternalInput) {
      if (timestamp > i.maxTimestamp) i.maxTimestamp = timestamp
      i.lastRecordAt = now
    }
  }

  get hasExternalInputs(): boolean {
    return this.inputs.some((i) => i instanceof ExternalInput)
  }

  /** Recomputes the combined view; returns true when the watermark advanced. */
  update(now: number): boolean {
    let watermark = Infinity
    let ingest = Infinity
    let anyActive = false
    let idleMax = -Infinity
    for (const input of this.inputs) {
      const v = input instanceof WrittenInput ? input.view() : input.view(now)
      ingest = Math.min(ingest, v.ingest)
      if (v.idle) {
        idleMax = Math.max(idleMax, v.watermark)
        continue
      }
      anyActive = true
      watermark = Math.min(watermark, v.watermark)
    }
    if (this.inputs.length === 0) watermark = -Infinity
    const idle = !anyActive && this.inputs.length > 0
    // Every input idle: hold the watermark where it is (Flink's idleness does the same).
    const next = Math.max(this.current.watermark, idle ? this.current.watermark : watermark)
    const advanced = next > this.current.watermark
    this.current = { watermark: next, idle, ended: next === Infinity, ingest }
    if (advanced) this.changedAt = now
    return advanced
  }

  /** Every upstream stage finished and the inputs are drained: nothing more can come. */
  end(now: number): void {
    if (this.current.watermark !== Infinity) this.changedAt = now
    this.current = { watermark: Infinity, idle: false, ended: true, ingest: Infinity }
  }

  /** Checkpointed with the input positions (`#watermarks`). */
  snapshot(): unknown {
    return this.inputs.map((i) => (i instanceof WrittenInput ? { writers: Object.fromEntries(i.writers) } : { maxTimestamp: i.maxTimestamp }))
  }

  restore(snapshot: unknown, now: number): void {
    if (!Array.isArray(snapshot)) return
    snapshot.forEach((s: { writers?: Record<string, WriterState>; maxTimestamp?: number }, n) => {
      const i = this.inputs[n]
      if (i instanceof WrittenInput && s?.writers !== undefined) {
        for (const [w, state] of Object.entries(s.writers)) i.writers.set(w, state)
      } else if (i instanceof ExternalInput && typeof s?.maxTimestamp === 'number') {
        i.maxTimestamp = s.maxTimestamp
      }
    })
    this.update(now)
  }
}

/** A source actor's watermark: bounded out-of-orderness over what it emitted. */
export class SourceWatermarks {
  private maxTimestamp = -Infinity
  private lastEmitAt: number
  private idleSince: number | undefined
  private ended = false
  private last = -Infinity
  changedAt: number | undefined

  constructor(private readonly strategy: Required<WatermarkOptions>, now = Date.now()) {
    this.lastEmitAt = now
  }

  observeEmit(timestamp: number, now: number): void {
    if (timestamp > this.maxTimestamp) this.maxTimestamp = timestamp
    this.lastEmitAt = now
    this.idleSince = undefined
  }

  /** The poll said 'idle'. */
  observeIdle(now: number): void {
    this.idleSince ??= now
  }

  end(): void {
    this.ended = true
  }

  /** A finished source polled again (Source.reopen): generated from its own newest event time on. */
  reopen(): void {
    this.ended = false
    this.last = boundedWatermark(this.maxTimestamp, this.strategy)
  }

  view(now: number): WatermarkView {
    const wm = this.ended ? Infinity : Math.max(this.last, boundedWatermark(this.maxTimestamp, this.strategy))
    if (wm > this.last) {
      this.last = wm
      this.changedAt = now
    }
    const quiet = this.idleSince !== undefined && now - this.lastEmitAt >= this.strategy.idleTimeoutMs
    return { watermark: wm, idle: !this.ended && this.strategy.idleTimeoutMs > 0 && quiet, ended: this.ended, ingest: now }
  }

  get watermark(): number {
    return this.last
  }

  snapshot(): unknown {
    return { maxTimestamp: this.maxTimestamp }
  }

  restore(snapshot: unknown): void {
    const s = snapshot as { maxTimestamp?: unknown } | undefined
    if (typeof s?.maxTimestamp === 'number') this.maxTimestamp = s.maxTimestamp
  }
}
