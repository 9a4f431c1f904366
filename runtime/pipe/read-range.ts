/**
 * Reads a partition from an offset up to an end offset, batch by batch. An empty poll is
 * not the end (Kafka readers need a group join before the first batch, and polls can
 * return only hidden commit markers); a reader that makes no progress for `stallMs`
 * fails with a retriable PipeError instead of returning a short read.
 *
 * @example
 * await readRange(pipe, 'weir.wc.count.changelog', 0, from, end, async (batch) => apply(batch))
 */
import { PipeError } from '../errors.ts'
import type { Pipe, StoredRecord } from './pipe.ts'

export interface ReadRangeOptions {
  /** Records per poll. */
  max?: number
  /** Give up after this long without progress. Default 60 s. */
  stallMs?: number
}

/** Calls `onBatch` for every committed record in [from, end); returns the position reached (≥ end). */
export async function readRange(pipe: Pipe, topic: string, partition: number, from: number, end: number, onBatch: (records: StoredRecord[], position: number) => void | Promise<void>, options: ReadRangeOptions = {}): Promise<number> {
  if (from >= end) return from
  const reader = await pipe.reader(topic, partition, from)
  const stallMs = options.stallMs ?? 60_000
  try {
    let progressAt = Date.now()
    let last = reader.position
    while (reader.position < end) {
      const batch = await reader.poll(options.max ?? 10_000, 500)
      if (batch.length > 0) await onBatch(batch, reader.position)
      if (reader.position !== last) {
        last = reader.position
        progressAt = Date.now()
      } else if (Date.now() - progressAt > stallMs) {
        throw new PipeError(`reading ${topic}/${partition} made no progress for ${stallMs} ms at offset ${reader.position} (end ${end})`, { topic, partition, offset: reader.position }, { retriable: true })
      }
    }
    return reader.position
  } finally {
    reader.close()
  }
}
