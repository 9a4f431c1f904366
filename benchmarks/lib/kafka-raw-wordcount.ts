/**
 * The ceiling of the Kafka word count: a hand-written kafkajs consume-transform-produce loop,
 * exactly-once with Kafka transactions but nothing else. One consumer (read_committed, no
 * auto-commit) and one transactional producer; the counts live in a JS Map (no durable state);
 * every second one transaction commits the count updates sent since the last one together
 * with the input positions (`sendOffsets`).
 */
// Before kafkajs: its read_committed filter leaks aborted transactions (see the file).
import '../../runtime/pipe/kafka/kafkajs-fixes.ts'
import { CompressionTypes, Kafka, Partitioners, logLevel, type Message, type Transaction } from 'kafkajs'
import { WORDS_PER_LINE } from './kafka-input.ts'
import { cpuSecondsSince, wallMs } from './stats.ts'

export interface RawWordCountOptions {
  brokers: string[]
  inputTopic: string
  outputTopic: string
  /** Consumer group; also the transactional id's prefix. */
  groupId: string
  /** Input lines in the topic: the loop ends at the first commit covering all of them. */
  lines: number
  commitIntervalMs: number
  timeoutMs: number
}

/** What every contender reports. Times are wall-clock ms, comparable across processes. */
export interface ContenderRun {
  /** First input record processed. */
  firstRecordAt: number
  /** The first commit covering the last input record completed. */
  endAt: number
  /** From start to the first record: connecting, joining the group, restoring. */
  startupMs: number
  linesIn: number
  recordsOut: number
  commits: number
  peakRssMiB: number
  /** CPU seconds (user + system, all threads) of the contender's process from the first record to `endAt`. */
  cpuS: number
}

/**
 * Output records per produce request. kafkajs groups a request's messages by partition in
 * O(n²) (groupMessagesPerPartition copies the partition's array per message), so large
 * requests are slower per record; 512 is slower again (more round trips): 1–2k measured best.
 */
const SEND_CHUNK = 2048
/** Produce requests in flight at once (kafkajs sends them one at a time, in order). */
const MAX_IN_FLIGHT = 4

/**
 * Runs the loop until every input line is counted and committed.
 *
 * @example
 * const r = await runRawWordCount({ brokers, inputTopic, outputTopic, groupId: 'g', lines: 1e6, commitIntervalMs: 1000, timeoutMs: 6e5 })
 * console.log(r.linesIn / ((r.endAt - r.firstRecordAt) / 1000), 'lines/s')
 */
export async function runRawWordCount(o: RawWordCountOptions): Promise<ContenderRun> {
  const startedAt = wallMs()
  // After a commit the broker writes the markers asynchronously, and a transaction's first
  // send can be refused with CONCURRENT_TRANSACTIONS until it is done. kafkajs retries it after
  // 300 ms by default, the Java producer after 20 ms; 10 ms here (no measurable difference in
  // this loop, whose first send comes a few ms after the commit).
  const kafka = new Kafka({ clientId: o.groupId, brokers: o.brokers, logLevel: logLevel.NOTHING, retry: { initialRetryTime: 10, retries: 10 } })
  const producer = kafka.producer({ transactionalId: `${o.groupId}-0`, idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
  const consumer = kafka.consumer({ groupId: o.groupId, readUncommitted: false, maxBytes: 10 * 1024 * 1024, maxBytesPerPartition: 1024 * 1024 })

  const counts = new Map<string, number>()
  /** Next input offset per partition, as of the lines counted so far. */
  const positions = new Map<number, string>()
  let positionsChanged = false
  let pending: Message[] = []
  let txn: Transaction | undefined
  let linesIn = 0
  let commits = 0
  let lastCommitAt = 0
  let firstRecordAt = 0
  let endAt = 0
  let cpuAtFirstRecord: NodeJS.CpuUsage | undefined
  let cpuS = 0
  let failed: unknown

  // Batches and the idle-time commits run one at a time, in order.
  let queue: Promise<void> = Promise.resolve()
  const serially = (work: () => Promise<void>): Promise<void> => {
    const next = queue.then(work)
    queue = next.catch(() => undefined)
    return next
  }

  // Sends run up to MAX_IN_FLIGHT at a time (kafkajs queues them on its broker lock, in call
  // order), so encoding the next request overlaps the broker's work on the previous one. The
  // first send of a transaction goes alone: it adds the partitions to the transaction, and a
  // retry of it (CONCURRENT_TRANSACTIONS right after a commit) must not let a later send pass it.
  const inFlight: Promise<unknown>[] = []
  let sentInTxn = 0
  const sendPending = async (): Promise<void> => {
    if (pending.length === 0) return
    txn ??= await producer.transaction()
    const messages = pending
    pending = []
    const sending = txn.send({ topic: o.outputTopic, messages, compression: CompressionTypes.None })
    sending.catch(() => undefined)
    inFlight.push(sending)
    if (sentInTxn++ === 0 || inFlight.length >= MAX_IN_FLIGHT) await inFlight.shift()
  }

  /**
   * Commits what was sent since the last commit with the input positions, once per interval,
   * and at once when the whole input is counted: waiting out the interval there would add up
   * to a second to the measured time (200k lines: 3.0 s with the wait, 2.3 s without).
   */
  const commitIfDue = async (): Promise<void> => {
    if (wallMs() - lastCommitAt < o.commitIntervalMs && linesIn < o.lines) return
    if (txn === undefined && pending.length === 0 && !positionsChanged) return
    lastCommitAt = wallMs()
    await sendPending()
    while (inFlight.length > 0) await inFlight.shift()
    txn ??= await producer.transaction()
    if (positionsChanged) {
      const partitions = [...positions].map(([partition, offset]) => ({ partition, offset }))
      await txn.sendOffsets({ consumerGroupId: o.groupId, topics: [{ topic: o.inputTopic, partitions }] })
      positionsChanged = false
    }
    const covered = linesIn
    await txn.commit()
    txn = undefined
    sentInTxn = 0
    commits++
    if (covered === o.lines && endAt === 0) {
      endAt = wallMs()
      cpuS = cpuSecondsSince(cpuAtFirstRecord!)
    }
  }

  const next = (offset: string): string => (BigInt(offset) + 1n).toString()

  await producer.connect()
  await consumer.connect()
  await consumer.subscribe({ topic: o.inputTopic, fromBeginning: true })
  let done!: () => void
  const finished = new Promise<void>((resolve) => { done = resolve })
  // Commits while no batch is being processed (the end of the input); batches commit themselves.
  const ticker = setInterval(() => {
    serially(commitIfDue).then(
      () => { if (endAt !== 0) done() },
      (err: unknown) => { failed ??= err; done() },
    )
  }, 50)
  await consumer.run({
    autoCommit: false,
    eachBatch: ({ batch, heartbeat }) => serially(async () => {
      const messages = batch.messages
      if (firstRecordAt === 0 && messages.length > 0) {
        firstRecordAt = wallMs()
        cpuAtFirstRecord = process.cpuUsage()
        lastCommitAt = firstRecordAt
      }
      let counted = 0
      for (let i = 0; i < messages.length; i++) {
        // SplitWords' work, then CountWords': split, lowercase, count, emit the new count.
        for (const word of messages[i]!.value!.toString('utf8').split(/\s+/)) {
          if (word === '') continue
          const w = word.toLowerCase()
          const n = (counts.get(w) ?? 0) + 1
          counts.set(w, n)
          pending.push({ key: w, value: String(n) })
        }
        if (pending.length < SEND_CHUNK) continue
        await sendPending()
        if (wallMs() - lastCommitAt >= o.commitIntervalMs) {
          // A fetched batch can take seconds: commit inside it, at the line reached.
          linesIn += i + 1 - counted
          counted = i + 1
          positions.set(batch.partition, next(messages[i]!.offset))
          positionsChanged = true
          await commitIfDue()
          await heartbeat()
        }
      }
      linesIn += messages.length - counted
      // The batch's last offset includes trailing transaction markers.
      positions.set(batch.partition, next(batch.lastOffset()))
      positionsChanged = true
    }),
  })

  const timeout = setTimeout(() => {
    failed ??= new Error(`raw loop: not done after ${o.timeoutMs / 1000} s (${linesIn} of ${o.lines} lines)`)
    done()
  }, o.timeoutMs)
  try {
    await finished
  } finally {
    clearInterval(ticker)
    clearTimeout(timeout)
    await consumer.disconnect()
    await producer.disconnect()
  }
  if (failed !== undefined) throw failed
  // One update per word counted: the counts add up to the updates emitted.
  const recordsOut = [...counts.values()].reduce((s, n) => s + n, 0)
  if (recordsOut !== o.lines * WORDS_PER_LINE) throw new Error(`raw loop: emitted ${recordsOut} count updates, expected ${o.lines * WORDS_PER_LINE}`)
  return {
    firstRecordAt,
    endAt,
    startupMs: firstRecordAt - startedAt,
    linesIn,
    recordsOut,
    commits,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    cpuS,
  }
}
