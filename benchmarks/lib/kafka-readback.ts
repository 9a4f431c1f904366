/**
 * Reads a contender's output topic back after its run (read_committed, from the start) and
 * checks it: the last value per word is its final count, and there is one output record per
 * input word when every count update is forwarded.
 */
import { randomUUID } from 'node:crypto'
import type { Admin, Kafka } from 'kafkajs'

export interface OutputCheck {
  /** Committed output records. */
  records: number
  /** Final count per word (the last value per key). */
  counts: Map<string, number>
  /** Up to 5 words whose final count is wrong, missing or unexpected, described. */
  wrong: string[]
  ok: boolean
}

/** Gives up when the reader has made no progress for this long. */
const STALL_MS = 60_000

/** End offsets (high watermarks) of each partition of `topic`. */
async function endOffsets(admin: Admin, topic: string): Promise<Map<number, bigint>> {
  const offsets = await admin.fetchTopicOffsets(topic)
  return new Map(offsets.map((o) => [o.partition, BigInt(o.high)]))
}

/**
 * Reads every committed record of `topic` (all its producers must be done) and keeps the last
 * value per key. Values are decimal counts: a string, or a JSON number, which is the same bytes.
 */
export async function readFinalCounts(kafka: Kafka, admin: Admin, topic: string): Promise<{ records: number; counts: Map<string, number> }> {
  const ends = await endOffsets(admin, topic)
  const counts = new Map<string, number>()
  let records = 0
  const remaining = new Set([...ends].filter(([, end]) => end > 0n).map(([p]) => p))
  if (remaining.size === 0) return { records, counts }

  const groupId = `weir-bench-readback-${randomUUID().slice(0, 8)}`
  const consumer = kafka.consumer({ groupId, readUncommitted: false, maxBytes: 50 * 1024 * 1024, maxBytesPerPartition: 10 * 1024 * 1024 })
  let finish!: () => void
  const finished = new Promise<void>((resolve) => { finish = resolve })
  let progressAt = Date.now()
  // Every fetched batch ends here, including those holding only transaction markers, with
  // its last offset (markers included): a partition is read once that reaches its end.
  consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
    progressAt = Date.now()
    const end = ends.get(payload.partition)!
    if (BigInt(payload.lastOffset) + 1n >= end) remaining.delete(payload.partition)
    if (remaining.size === 0) finish()
  })
  await consumer.connect()
  try {
    await consumer.subscribe({ topic, fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          counts.set(m.key!.toString('utf8'), Number(m.value!.toString('utf8')))
          records++
        }
      },
    })
    const stall = new Promise<never>((_, reject) => {
      const timer = setInterval(() => {
        if (remaining.size === 0) clearInterval(timer)
        else if (Date.now() - progressAt > STALL_MS) {
          clearInterval(timer)
          reject(new Error(`reading ${topic} back: no progress for ${STALL_MS / 1000} s, partitions ${[...remaining].join(',')} not read to their end`))
        }
      }, 1000)
    })
    await Promise.race([finished, stall])
  } finally {
    await consumer.disconnect()
    await admin.deleteGroups([groupId]).catch(() => undefined)
  }
  return { records, counts }
}

/** Reads `topic` back and compares with the expected final counts (and record count, when given). */
export async function checkOutput(kafka: Kafka, admin: Admin, topic: string, expected: Map<string, number>, expectedRecords?: number): Promise<OutputCheck> {
  const { records, counts } = await readFinalCounts(kafka, admin, topic)
  const wrong: string[] = []
  for (const [word, n] of expected) {
    const got = counts.get(word)
    if (got !== n) wrong.push(`${word}: ${got ?? 'missing'}, expected ${n}`)
  }
  for (const word of counts.keys()) if (!expected.has(word)) wrong.push(`${word}: unexpected word`)
  const recordsOk = expectedRecords === undefined || records === expectedRecords
  if (!recordsOk) wrong.unshift(`${records} output records, expected ${expectedRecords}`)
  return { records, counts, wrong: wrong.slice(0, 5), ok: wrong.length === 0 }
}
