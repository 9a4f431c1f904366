/**
 * A sink that appends records as JSON lines to a file, exactly once. The file length that
 * belongs to the last checkpoint is actor state, committed with the input offsets; on
 * restart the file is truncated back to it, so lines written after that checkpoint (and
 * then reprocessed) never appear twice.
 */
import { closeSync, fdatasyncSync, fstatSync, ftruncateSync, mkdirSync, openSync, writeSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { Processor, StateCorruptedError, type LifecycleContext, type StreamRecord } from '../../index.ts'

export interface JsonlFileSinkOptions<T> {
  /** File path; `{partition}` is replaced by the actor's partition (one file per actor). */
  path: string
  /** What to write per record. Default: `{ key, value, timestamp }`. */
  format?: (record: StreamRecord<T>) => unknown
  /** fdatasync at every checkpoint so a machine crash loses nothing either. Default false. */
  durable?: boolean
}

/**
 * @example
 * stream.to('signals', () => new JsonlFileSink({ path: 'out/signals-{partition}.jsonl' }))
 */
export class JsonlFileSink<T = unknown> extends Processor<T, never> {
  private readonly committedBytes = this.state.actorValue<number>('committed-bytes')
  private fd = -1
  private pending: string[] = []
  private pendingBytes = 0
  private length = 0
  readonly path: string

  constructor(private readonly options: JsonlFileSinkOptions<T>) {
    super()
    this.path = options.path
  }

  override open(ctx: LifecycleContext): void {
    const path = resolve(this.options.path.replace('{partition}', String(ctx.partition)))
    mkdirSync(dirname(path), { recursive: true })
    this.fd = openSync(path, 'a+')
    const committed = this.committedBytes.get() ?? 0
    const size = fstatSync(this.fd).size
    if (size < committed) {
      throw new StateCorruptedError(`${path} has ${size} bytes but the last checkpoint committed ${committed}: the file was truncated or replaced outside weir`, { stage: ctx.stage, partition: ctx.partition, path })
    }
    // Lines past the checkpoint were written by a run that crashed before committing; they will be reprocessed.
    if (size > committed) ftruncateSync(this.fd, committed)
    this.length = committed
  }

  onRecord(record: StreamRecord<T>): void {
    const body = this.options.format ? this.options.format(record) : { key: record.key, value: record.value, timestamp: record.timestamp }
    const line = JSON.stringify(body) + '\n'
    this.pending.push(line)
    this.pendingBytes += Buffer.byteLength(line)
    if (this.pendingBytes > 1 << 20) this.writePending()
  }

  override onCheckpoint(): void {
    this.writePending()
    if (this.options.durable) fdatasyncSync(this.fd)
    this.committedBytes.set(this.length)
  }

  private writePending(): void {
    if (this.pending.length === 0) return
    const buf = Buffer.from(this.pending.join(''))
    let off = 0
    while (off < buf.length) off += writeSync(this.fd, buf, off, buf.length - off, this.length + off)
    this.length += buf.length
    this.pending = []
    this.pendingBytes = 0
  }

  override close(): void {
    if (this.fd >= 0) closeSync(this.fd)
    this.fd = -1
  }
}
