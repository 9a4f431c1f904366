/**
 * The Kafka benchmark's input: the deterministic lines of examples/wordcount.ts, written once
 * to a fresh topic before any contender starts, and the word counts they must produce.
 */
// Before kafkajs: its read_committed filter leaks aborted transactions (see the file).
import '../../runtime/pipe/kafka/kafkajs-fixes.ts'
import { CompressionTypes, Partitioners, type Admin, type Kafka, type Message } from 'kafkajs'

/** examples/wordcount.ts's vocabulary (not exported there), word for word. */
const VOCABULARY = ('the quick brown fox jumps over the lazy dog while streams of events flow through pipes ' +
  'and processors keep state in rocks so that nothing is lost and nothing is doubled').split(' ')

export const WORDS_PER_LINE = 8

/**
 * Line `n` of the input: examples/wordcount.ts's generator, where `n = i * 2 + partition`.
 * With two partitions, line n goes to partition n % 2 as its i-th record, as there.
 */
export function line(n: number): string {
  const words = new Array<string>(WORDS_PER_LINE)
  for (let w = 0; w < WORDS_PER_LINE; w++) words[w] = VOCABULARY[(n * 7 + w * 13 + ((n >> 3) % 11)) % VOCABULARY.length]!
  return words.join(' ')
}

/** The final count of every word after lines 0..lines-1, split and lowercased as SplitWords does. */
export function expectedCounts(lines: number): Map<string, number> {
  const counts = new Map<string, number>()
  for (let n = 0; n < lines; n++) {
    for (const word of line(n).split(/\s+/)) {
      if (word === '') continue
      const w = word.toLowerCase()
      counts.set(w, (counts.get(w) ?? 0) + 1)
    }
  }
  return counts
}

/** Creates topics and waits until every partition has a leader. */
export async function createTopics(admin: Admin, topics: { topic: string; numPartitions: number }[]): Promise<void> {
  await admin.createTopics({ topics: topics.map((t) => ({ ...t, replicationFactor: 1 })), waitForLeaders: true })
}

/** Records per produce request: well under the broker's 1 MB batch limit per partition. */
const PRODUCE_CHUNK = 20_000

/**
 * Writes lines 0..lines-1 (key null, value the line as UTF-8) to `topic`, line n to
 * partition n % partitions, with an idempotent, non-transactional producer.
 */
export async function produceLines(kafka: Kafka, topic: string, lines: number, partitions: number): Promise<void> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  try {
    let messages: Message[] = []
    for (let n = 0; n < lines; n++) {
      messages.push({ key: null, value: line(n), partition: n % partitions })
      if (messages.length === PRODUCE_CHUNK || n === lines - 1) {
        await producer.send({ topic, messages, acks: -1, compression: CompressionTypes.None })
        messages = []
      }
    }
  } finally {
    await producer.disconnect()
  }
}
