/**
 * A correction to kafkajs 2.2.4 that exactly-once depends on, installed before kafkajs loads.
 *
 * read_committed readers must drop the records of aborted transactions. The broker answers
 * a fetch with the aborted transactions that overlap it, listed in the order their abort
 * markers were written; kafkajs's `filterAbortedMessages` treats that list as ordered by
 * first offset and activates at most one aborted transaction per record. When two writers
 * of one partition have overlapping transactions that abort in the other order (both
 * actors of a stage restarting after a broker outage), or a fetch starts inside several
 * aborted transactions, records of an aborted transaction reach the reader: downstream
 * counts them twice. The Java consumer orders the list by first offset and activates every
 * transaction that has started (Fetcher's abortedTransactions priority queue); this does the
 * same at record granularity.
 *
 * kafkajs's batch.js binds the filter when it is first required, so this module replaces
 * the filter's entry in the CommonJS module cache before anything loads kafkajs: import it
 * first wherever kafkajs is imported (runtime/pipe/kafka/kafka-pipe.ts does).
 * test/runtime/pipe/kafka.test.ts proves the leak is gone against a real broker.
 */
import { createRequire } from 'node:module'

interface AbortedTransaction {
  firstOffset: string
  producerId: string
}

interface FetchedMessage {
  offset: string
  key: Buffer | null
  isControlRecord?: boolean
  batchContext: { producerId: string; inTransaction: boolean }
}

/** Control record key of an ABORT marker: version 0, type 0. */
const ABORT_MARKER_KEY = Buffer.from([0, 0, 0, 0])

/** The messages of a fetch that belong to no aborted transaction (control records kept: kafkajs drops them later). */
export function filterAbortedMessages({ messages, abortedTransactions }: { messages: FetchedMessage[]; abortedTransactions?: AbortedTransaction[] }): FetchedMessage[] {
  if (abortedTransactions === undefined || abortedTransactions.length === 0) return messages
  const pending = abortedTransactions.map((t) => ({ first: BigInt(t.firstOffset), producerId: String(t.producerId) })).sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0))
  const aborting = new Set<string>()
  let next = 0
  return messages.filter((m) => {
    const offset = BigInt(m.offset)
    while (next < pending.length && pending[next]!.first <= offset) aborting.add(pending[next++]!.producerId)
    const producerId = String(m.batchContext.producerId)
    if (m.isControlRecord === true) {
      if (m.key !== null && Buffer.from(m.key).equals(ABORT_MARKER_KEY)) aborting.delete(producerId)
      return true
    }
    return !(m.batchContext.inTransaction && aborting.has(producerId))
  })
}

const requireFromKafkajs = createRequire(createRequire(import.meta.url).resolve('kafkajs'))
const filterPath = requireFromKafkajs.resolve('./src/consumer/filterAbortedMessages.js')
const batchPath = requireFromKafkajs.resolve('./src/consumer/batch.js')
const loadedBatch = requireFromKafkajs.cache[batchPath]?.exports as { weirFixed?: boolean } | undefined
if (loadedBatch !== undefined && loadedBatch.weirFixed !== true) {
  // kafkajs was loaded before this module: its batches keep the faulty filter.
  throw new Error('runtime/pipe/kafka/kafkajs-fixes.ts must be imported before kafkajs is loaded')
}
requireFromKafkajs(filterPath)
requireFromKafkajs.cache[filterPath]!.exports = filterAbortedMessages
const Batch = requireFromKafkajs(batchPath) as { weirFixed?: boolean }
Batch.weirFixed = true
