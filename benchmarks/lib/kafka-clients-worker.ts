/**
 * One measurement of benchmarks/kafka-clients.ts in a process of its own (so kafkajs runs
 * with or without weir's codec installed, and CPU time is the measured client's alone).
 * Prints one JSON line: records/s and CPU µs per record.
 *
 * node --import tsx benchmarks/lib/kafka-clients-worker.ts <variant> <broker> <topic> <records>
 */
const [variant, broker, topic, recordsArg] = process.argv.slice(2) as [string, string, string, string]
const RECORDS = Number(recordsArg)
const PER_TRANSACTION = 20_000
const PER_REQUEST = 1000

if (variant.endsWith('-weir')) await import('../../runtime/pipe/kafka/kafkajs-fixes.ts')

/** ~100-byte records: a 10-byte key and a 90-byte value. */
function recordAt(i: number): { key: Buffer; value: Buffer } {
  const key = Buffer.from(`k${String(i % 100_000).padStart(9, '0')}`)
  const value = Buffer.alloc(90, 97 + (i % 26))
  return { key, value }
}

interface Measure {
  records: number
  seconds: number
  cpuUs: number
}

function result(m: Measure, extra: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ variant, records: m.records, records_per_s: Math.round(m.records / m.seconds), cpu_us_per_record: Math.round((m.cpuUs / m.records) * 100) / 100, seconds: Math.round(m.seconds * 1000) / 1000, ...extra }) + '\n')
}

function cpuNow(): number {
  const u = process.cpuUsage()
  return u.user + u.system
}

async function produceKafkajs(): Promise<Measure> {
  const { Kafka, logLevel } = await import('kafkajs')
  const kafka = new Kafka({ clientId: 'bench-clients', brokers: [broker], logLevel: logLevel.NOTHING })
  const producer = kafka.producer({ transactionalId: `bench-clients-${variant}-${topic}`, idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  const started = performance.now()
  const cpu = cpuNow()
  for (let done = 0; done < RECORDS; ) {
    const txn = await producer.transaction()
    const end = Math.min(RECORDS, done + PER_TRANSACTION)
    for (; done < end; ) {
      const upTo = Math.min(end, done + PER_REQUEST)
      const messages = []
      for (let i = done; i < upTo; i++) messages.push({ ...recordAt(i), partition: 0, timestamp: String(Date.now()) })
      await txn.send({ topic, messages, acks: -1 })
      done = upTo
    }
    await txn.commit()
  }
  const m = { records: RECORDS, seconds: (performance.now() - started) / 1000, cpuUs: cpuNow() - cpu }
  await producer.disconnect()
  return m
}

async function producePlatformatic(): Promise<Measure> {
  const { Producer } = await import('@platformatic/kafka')
  const producer = new Producer({ clientId: 'bench-clients', bootstrapBrokers: [broker], transactionalId: `bench-clients-${variant}-${topic}`, idempotent: true, acks: -1 })
  const started = performance.now()
  const cpu = cpuNow()
  for (let done = 0; done < RECORDS; ) {
    const txn = await producer.beginTransaction()
    const end = Math.min(RECORDS, done + PER_TRANSACTION)
    for (; done < end; ) {
      const upTo = Math.min(end, done + PER_REQUEST)
      const messages = []
      for (let i = done; i < upTo; i++) messages.push({ ...recordAt(i), topic, partition: 0, timestamp: BigInt(Date.now()) })
      await txn.send({ messages })
      done = upTo
    }
    await txn.commit()
  }
  const m = { records: RECORDS, seconds: (performance.now() - started) / 1000, cpuUs: cpuNow() - cpu }
  await producer.close()
  return m
}

/** Times from the first record read to the last: group joins and connects are not counted. */
class Clock {
  private started = 0
  private cpu = 0
  count = 0
  add(n: number): boolean {
    if (this.count === 0 && n > 0) {
      this.started = performance.now()
      this.cpu = cpuNow()
    }
    this.count += n
    return this.count >= RECORDS
  }
  measure(): Measure {
    return { records: this.count, seconds: (performance.now() - this.started) / 1000, cpuUs: cpuNow() - this.cpu }
  }
}

async function fetchKafkajs(): Promise<Measure> {
  const { Kafka, logLevel } = await import('kafkajs')
  const kafka = new Kafka({ clientId: 'bench-clients', brokers: [broker], logLevel: logLevel.NOTHING })
  const consumer = kafka.consumer({ groupId: `bench-clients-${variant}-${Date.now()}`, readUncommitted: false, maxBytesPerPartition: 1 << 20, maxWaitTimeInMs: 100 })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const clock = new Clock()
  let keyBytes = 0
  await new Promise<void>((resolve) => {
    void consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        // Touch every key as a reader would (weir's reader reads StoredRecords, this the kafkajs view).
        for (const m of batch.messages) keyBytes += m.key?.length ?? 0
        if (clock.add(batch.messages.length)) resolve()
      },
    })
  })
  const m = clock.measure()
  await consumer.disconnect()
  if (keyBytes === 0) throw new Error('no keys read')
  return m
}

async function fetchPlatformatic(): Promise<Measure> {
  const { Consumer } = await import('@platformatic/kafka')
  const consumer = new Consumer({ clientId: 'bench-clients', groupId: `bench-clients-${variant}-${Date.now()}`, bootstrapBrokers: [broker], maxBytes: 1 << 20, maxWaitTime: 100 })
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false, maxBytesPerPartition: 1 << 20 })
  const clock = new Clock()
  let keyBytes = 0
  for await (const message of stream) {
    keyBytes += (message.key as Buffer | undefined)?.length ?? 0
    if (clock.add(1)) break
  }
  const m = clock.measure()
  await stream.close()
  await consumer.close(true)
  if (keyBytes === 0) throw new Error('no keys read')
  return m
}

async function fetchWeirCodec(): Promise<Measure> {
  const { RawFetchConnection } = await import('./kafka-raw-fetch.ts')
  const { decodeRecordSet } = await import('../../runtime/pipe/kafka/record-batch.ts')
  const conn = await RawFetchConnection.open(broker)
  const clock = new Clock()
  let offset = 0
  let keyBytes = 0
  let decodeMs = 0
  for (;;) {
    const f = await conn.fetch(topic, 0, offset, { readCommitted: true, maxBytes: 1 << 20, maxWaitMs: 100 })
    const decodeStarted = performance.now()
    const decoded = decodeRecordSet(f.records, { from: offset, abortedTransactions: f.abortedTransactions ?? [] })
    decodeMs += performance.now() - decodeStarted
    for (const r of decoded.records) keyBytes += r.key?.length ?? 0
    offset = decoded.nextOffset
    if (clock.add(decoded.records.length)) break
  }
  conn.close()
  if (keyBytes === 0) throw new Error('no keys read')
  const m = clock.measure()
  decodeOnlyUs = (decodeMs * 1000) / m.records
  return m
}
/** Wall time inside decodeRecordSet per record (CRC-32C included), for fetch-weir-codec. */
let decodeOnlyUs: number | undefined

/**
 * @platformatic/kafka's transactions, checked: aborted transactions must be invisible to a
 * read_committed consumer (two aborted transactions of one producer, read in one fetch), and a
 * new producer with the same transactional id must fence the old one.
 */
async function checkPlatformatic(): Promise<void> {
  const { Producer, Consumer } = await import('@platformatic/kafka')
  const base = { clientId: 'bench-clients-check', bootstrapBrokers: [broker] }
  const producer = new Producer({ ...base, transactionalId: `check-${topic}`, idempotent: true, acks: -1 })
  const send = async (value: string, commit: boolean): Promise<void> => {
    const txn = await producer.beginTransaction()
    await txn.send({ messages: [{ topic, partition: 0, key: Buffer.from(value), value: Buffer.from(value) }] })
    if (commit) await txn.commit()
    else await txn.abort()
  }
  const step = (s: string): boolean => process.stderr.write(`check: ${s}\n`)
  step('c1')
  await send('c1', true)
  step('x1')
  await send('x1', false)
  step('x2')
  await send('x2', false)
  step('c2')
  await send('c2', true)
  await producer.close()
  const consumer = new Consumer({ ...base, groupId: `check-${topic}-${Date.now()}` })
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false })
  const seen: string[] = []
  const timeout = setTimeout(() => void stream.close(), 15_000)
  for await (const m of stream) {
    seen.push((m.value as Buffer).toString())
    if (seen.includes('c2')) break
  }
  clearTimeout(timeout)
  await stream.close().catch(() => undefined)
  await consumer.close(true)

  step(`read ${seen.join(',')}`)
  const old = new Producer({ ...base, transactionalId: `check-fence-${topic}`, idempotent: true, acks: -1 })
  const oldTxn = await old.beginTransaction()
  await oldTxn.send({ messages: [{ topic, partition: 0, key: Buffer.from('zombie'), value: Buffer.from('zombie') }] })
  step('zombie sent')
  const fresh = new Producer({ ...base, transactionalId: `check-fence-${topic}`, idempotent: true, acks: -1 })
  // A throw inside the client's response parsing escapes every promise: catch it here to report it.
  let uncaught: string | undefined
  let freshError: string | undefined
  const freshTxn = await new Promise<Awaited<ReturnType<typeof fresh.beginTransaction>> | undefined>((resolve, reject) => {
    process.once('uncaughtException', (err: Error & { errors?: Array<{ apiId?: string }> }) => {
      uncaught = `${err.message} (${err.errors?.map((x) => x.apiId).join(',') ?? ''})`
      resolve(undefined)
    })
    const t = setTimeout(() => reject(new Error('a new producer with the same transactional id did not start in 20 s')), 20_000)
    fresh.beginTransaction().then((txn) => {
      clearTimeout(t)
      resolve(txn)
    }, reject)
  }).catch((err: Error) => {
    freshError = err.message
    return undefined
  })
  step(`fresh began: ${freshError ?? uncaught ?? 'ok'}`)
  let fenceError: string | undefined
  try {
    await Promise.race([oldTxn.commit(), new Promise((_, reject) => setTimeout(() => reject(new Error('zombie commit neither succeeded nor failed in 20 s')), 20_000))])
  } catch (err) {
    const e = err as { message?: string; errors?: Array<{ apiId?: string }> }
    fenceError = e.errors?.map((x) => x.apiId).filter(Boolean).join(',') || e.message
  }
  step(`zombie commit: ${fenceError ?? 'succeeded'}`)
  process.stdout.write(JSON.stringify({ variant, read_committed_seen: seen, aborted_invisible: seen.join(',') === 'c1,c2', new_producer_started: freshTxn !== undefined, new_producer_uncaught_exception: uncaught ?? null, new_producer_error: freshError ?? null, zombie_commit_refused: fenceError !== undefined, zombie_error: fenceError ?? null }) + '\n')
}

switch (variant) {
  case 'produce-kafkajs':
  case 'produce-kafkajs-weir':
    result(await produceKafkajs())
    break
  case 'produce-platformatic':
    result(await producePlatformatic())
    break
  case 'fetch-kafkajs':
  case 'fetch-kafkajs-weir':
    result(await fetchKafkajs())
    break
  case 'fetch-platformatic':
    result(await fetchPlatformatic())
    break
  case 'fetch-weir-codec': {
    const m = await fetchWeirCodec()
    result(m, { decode_only_us_per_record: Math.round(decodeOnlyUs! * 1000) / 1000 })
    break
  }
    break
  case 'check-platformatic':
    await checkPlatformatic()
    break
  default:
    throw new Error(`unknown variant ${variant}`)
}
process.exit(0)
