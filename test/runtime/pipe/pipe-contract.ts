/**
 * The Pipe port's contract. Every adapter runs this suite (embedded.test.ts, kafka.test.ts);
 * a new adapter is done when it passes unchanged. Offsets are positions, not counts: Kafka
 * puts a commit marker after each transaction, so tests read offsets back instead of
 * assuming them dense.
 */
import { describe, expect, it, beforeEach, afterEach } from 'vitest'
import { ActorFencedError } from '../../../runtime/errors.ts'
import type { PartitionOffset, Pipe, PipeRecord } from '../../../runtime/pipe/pipe.ts'

export interface PipeHarness {
  /** A fresh pipe with no topics from earlier tests (or unique topic names per test). */
  open(): Promise<Pipe>
  /** Reopens the same storage, as after a process restart. */
  reopen(pipe: Pipe): Promise<Pipe>
  /** Prefix for topic names, so adapters sharing a cluster do not collide. */
  topicPrefix(): string
}

function rec(key: string | null, value: string, timestamp = 1000): PipeRecord {
  return { key: key === null ? null : Buffer.from(key), value: Buffer.from(value), timestamp }
}

/**
 * The partition's records from `from` to its end offset, or on to the end a commit resolved
 * with (`committed`), whichever is further: Kafka writes a transaction's markers after the
 * commit returns, so for a moment the end offset can stop short of it (CI runs read [] so).
 */
async function readRecords(pipe: Pipe, topic: string, partition: number, from = 0, committed: PartitionOffset[] = []): Promise<Array<{ offset: number; value: string }>> {
  const reader = await pipe.reader(topic, partition, from)
  const ended = committed.find((o) => o.topic === topic && o.partition === partition)?.offset ?? 0
  const end = Math.max(await pipe.endOffset(topic, partition), ended)
  const out: Array<{ offset: number; value: string }> = []
  const deadline = Date.now() + 20_000
  while (reader.position < end) {
    if (Date.now() > deadline) throw new Error(`reader of ${topic}/${partition} stuck at ${reader.position}, end ${end}`)
    const batch = await reader.poll(1000, 500)
    for (const r of batch) out.push({ offset: r.offset, value: r.value!.toString() })
  }
  reader.close()
  return out
}

async function readAll(pipe: Pipe, topic: string, partition: number, from = 0, committed: PartitionOffset[] = []): Promise<string[]> {
  return (await readRecords(pipe, topic, partition, from, committed)).map((r) => r.value)
}

export function pipeContract(name: string, harness: PipeHarness): void {
  describe(`Pipe contract: ${name}`, () => {
    let pipe: Pipe
    let t: string
    beforeEach(async () => {
      pipe = await harness.open()
      t = harness.topicPrefix()
    })
    afterEach(async () => {
      await pipe.close()
    })

    it('creates a topic idempotently and refuses a different partition count', async () => {
      await pipe.ensureTopic({ name: `${t}a`, partitions: 3 })
      await pipe.ensureTopic({ name: `${t}a`, partitions: 3 })
      expect((await pipe.describeTopic(`${t}a`))?.partitions).toBe(3)
      await expect(pipe.ensureTopic({ name: `${t}a`, partitions: 4 })).rejects.toMatchObject({ code: 'WEIR_TOPIC_MISMATCH' })
    })

    it('lists and deletes topics', async () => {
      await pipe.ensureTopic({ name: `${t}list`, partitions: 1 })
      expect(await pipe.listTopics()).toContain(`${t}list`)
      await pipe.deleteTopic(`${t}list`)
      expect(await pipe.listTopics()).not.toContain(`${t}list`)
      expect(await pipe.describeTopic(`${t}list`)).toBeUndefined()
    })

    it('a committed transaction makes records, their order, keys, headers and timestamps visible', async () => {
      await pipe.ensureTopic({ name: `${t}b`, partitions: 2 })
      const p = await pipe.producer(`${t}tx-b`)
      p.begin()
      for (let i = 0; i < 5; i++) p.send(`${t}b`, 1, { ...rec(`k${i}`, `v${i}`, 100 + i), headers: { h: Buffer.from(`x${i}`) } })
      p.send(`${t}b`, 0, rec(null, 'nokey'))
      const ends = await p.commit()
      expect(ends).toEqual(expect.arrayContaining([{ topic: `${t}b`, partition: 1, offset: 5 }, { topic: `${t}b`, partition: 0, offset: 1 }]))
      const reader = await pipe.reader(`${t}b`, 1, 0)
      const got = await reader.poll(100, 2000)
      reader.close()
      expect(got.map((r) => [r.offset, r.key!.toString(), r.value!.toString(), r.timestamp, r.headers?.h?.toString()])).toEqual(
        [0, 1, 2, 3, 4].map((i) => [i, `k${i}`, `v${i}`, 100 + i, `x${i}`]),
      )
      const r0 = await pipe.reader(`${t}b`, 0, 0)
      const got0 = await r0.poll(100, 2000)
      r0.close()
      expect(got0[0]!.key).toBeNull()
      expect(await pipe.endOffset(`${t}b`, 1)).toBeGreaterThanOrEqual(5)
      await p.close()
    })

    it('an aborted transaction leaves nothing visible and commits no offsets', async () => {
      await pipe.ensureTopic({ name: `${t}c`, partitions: 1 })
      const p = await pipe.producer(`${t}tx-c`)
      p.begin()
      p.send(`${t}c`, 0, rec('a', 'lost'))
      p.sendOffsets(`${t}g`, [{ topic: `${t}c`, partition: 0, offset: 7 }])
      await p.abort()
      p.begin()
      p.send(`${t}c`, 0, rec('a', 'kept'))
      const ends = await p.commit()
      expect(await readAll(pipe, `${t}c`, 0, 0, ends)).toEqual(['kept'])
      expect(await pipe.committedOffset(`${t}g`, `${t}c`, 0)).toBeUndefined()
      await p.close()
    })

    it('an empty transaction commits nothing, and writes after it work', async () => {
      await pipe.ensureTopic({ name: `${t}e`, partitions: 1 })
      const p = await pipe.producer(`${t}tx-e`)
      for (let i = 0; i < 3; i++) {
        p.begin()
        expect(await p.commit()).toEqual([])
      }
      p.begin()
      p.send(`${t}e`, 0, rec('k', 'after-empty'))
      const ends = await p.commit()
      expect(await readAll(pipe, `${t}e`, 0, 0, ends)).toEqual(['after-empty'])
      await p.close()
    })

    it('consumer offsets commit atomically with the records of the same transaction', async () => {
      await pipe.ensureTopic({ name: `${t}in`, partitions: 1 })
      await pipe.ensureTopic({ name: `${t}out`, partitions: 1 })
      const p = await pipe.producer(`${t}tx-d`)
      p.begin()
      p.send(`${t}out`, 0, rec('k', 'out1'))
      p.sendOffsets(`${t}grp`, [{ topic: `${t}in`, partition: 0, offset: 42 }])
      const ends = await p.commit()
      // What a restarted actor does: a new instance first, then the offsets (Kafka shows them
      // once the transaction's markers are written, which the new instance waits for).
      const restarted = await pipe.producer(`${t}tx-d`)
      expect(await pipe.committedOffset(`${t}grp`, `${t}in`, 0)).toBe(42)
      expect(await readAll(pipe, `${t}out`, 0, 0, ends)).toEqual(['out1'])
      await p.close()
      await restarted.close()
    })

    it('a zombie producer is fenced when a new instance of its transactional id starts', async () => {
      await pipe.ensureTopic({ name: `${t}z`, partitions: 1 })
      const zombie = await pipe.producer(`${t}tx-z`)
      zombie.begin()
      zombie.send(`${t}z`, 0, rec('k', 'zombie'))
      const fresh = await pipe.producer(`${t}tx-z`)
      await expect(zombie.commit()).rejects.toBeInstanceOf(ActorFencedError)
      fresh.begin()
      fresh.send(`${t}z`, 0, rec('k', 'fresh'))
      const ends = await fresh.commit()
      expect(await readAll(pipe, `${t}z`, 0, 0, ends)).toEqual(['fresh'])
      await fresh.close()
    })

    it('a reader waiting at the end wakes when records are committed', async () => {
      await pipe.ensureTopic({ name: `${t}w`, partitions: 1 })
      const reader = await pipe.reader(`${t}w`, 0, 0)
      const started = Date.now()
      const waiting = reader.poll(10, 10_000)
      const p = await pipe.producer(`${t}tx-w`)
      p.begin()
      p.send(`${t}w`, 0, rec('k', 'wake'))
      await p.commit()
      const got = await waiting
      expect(got.map((r) => r.value!.toString())).toEqual(['wake'])
      expect(Date.now() - started).toBeLessThan(5000)
      reader.close()
      await p.close()
    })

    it('reads from any offset, across many transactions', async () => {
      await pipe.ensureTopic({ name: `${t}m`, partitions: 1 })
      const p = await pipe.producer(`${t}tx-m`)
      let ends: PartitionOffset[] = []
      for (let txn = 0; txn < 20; txn++) {
        p.begin()
        for (let i = 0; i < 50; i++) p.send(`${t}m`, 0, rec('k', String(txn * 50 + i)))
        ends = await p.commit()
      }
      const all = await readRecords(pipe, `${t}m`, 0, 0, ends)
      expect(all.map((r) => r.value)).toEqual(Array.from({ length: 1000 }, (_, i) => String(i)))
      for (let i = 1; i < all.length; i++) expect(all[i]!.offset).toBeGreaterThan(all[i - 1]!.offset)
      expect(await readAll(pipe, `${t}m`, 0, all[777]!.offset)).toEqual(Array.from({ length: 223 }, (_, i) => String(777 + i)))
      await p.close()
    })

    it('committed data, offsets and epochs survive a reopen', async () => {
      await pipe.ensureTopic({ name: `${t}r`, partitions: 2 })
      const p = await pipe.producer(`${t}tx-r`)
      p.begin()
      p.send(`${t}r`, 1, rec('k', 'durable'))
      p.sendOffsets(`${t}g2`, [{ topic: `${t}r`, partition: 1, offset: 9 }])
      const ends = await p.commit()
      pipe = await harness.reopen(pipe)
      expect(await readAll(pipe, `${t}r`, 1, 0, ends)).toEqual(['durable'])
      expect(await pipe.committedOffset(`${t}g2`, `${t}r`, 1)).toBe(9)
      const again = await pipe.producer(`${t}tx-r`)
      again.begin()
      again.send(`${t}r`, 1, rec('k', 'after'))
      await again.commit()
      // Kafka writes a transaction's commit markers after EndTxn answers: read_committed
      // readers see the records a moment later (under load, more than a moment).
      let seen = await readAll(pipe, `${t}r`, 1)
      for (const until = Date.now() + 15_000; seen.length < 2 && Date.now() < until; seen = await readAll(pipe, `${t}r`, 1)) await new Promise((r) => setTimeout(r, 100))
      expect(seen).toEqual(['durable', 'after'])
      await again.close()
    })

    it('offsetForTime: no record below it is at or after the time, so reading from it finds every record from the first that is', async () => {
      await pipe.ensureTopic({ name: `${t}time`, partitions: 2 })
      const p = await pipe.producer(`${t}tx-time`)
      // Timestamps out of order, over two transactions (Kafka puts a commit marker, stamped
      // at commit time, between them: its answer may be that marker, before older records).
      const stamps = [[100, 300, 200], [400, 250, 500]]
      let ends: PartitionOffset[] = []
      for (const txn of stamps) {
        p.begin()
        for (const ts of txn) p.send(`${t}time`, 1, rec('k', `v${ts}`, ts))
        ends = await p.commit()
      }
      const all = await readRecords(pipe, `${t}time`, 1, 0, ends)
      const fromTime = async (ts: number): Promise<string[]> => {
        const offset = await pipe.offsetForTime(`${t}time`, 1, ts)
        const reader = await pipe.reader(`${t}time`, 1, offset)
        const got: Array<{ value: string; timestamp: number }> = []
        const end = await pipe.endOffset(`${t}time`, 1)
        while (reader.position < end) for (const r of await reader.poll(100, 500)) got.push({ value: r.value!.toString(), timestamp: r.timestamp })
        reader.close()
        const first = got.findIndex((r) => r.timestamp >= ts)
        // Only what is older than the time may come before the first record at or after it.
        return first < 0 ? [] : got.slice(first).map((r) => r.value)
      }
      expect(await fromTime(0)).toEqual(['v100', 'v300', 'v200', 'v400', 'v250', 'v500'])
      expect(await fromTime(100)).toEqual(['v100', 'v300', 'v200', 'v400', 'v250', 'v500'])
      expect(await fromTime(150)).toEqual(['v300', 'v200', 'v400', 'v250', 'v500'])
      expect(await fromTime(350)).toEqual(['v400', 'v250', 'v500'])
      expect(await fromTime(500)).toEqual(['v500'])
      expect(await fromTime(501)).toEqual([])
      // Newer than every record and marker: past all of them.
      expect(await pipe.offsetForTime(`${t}time`, 1, Date.now() + 3_600_000)).toBeGreaterThan(all.at(-1)!.offset)
      expect(await pipe.offsetForTime(`${t}time`, 0, 0)).toBe(await pipe.endOffset(`${t}time`, 0))
      await p.close()
    })

    it('deleteRecordsBefore drops consumed records and moves the start offset', async () => {
      await pipe.ensureTopic({ name: `${t}del`, partitions: 1 })
      const p = await pipe.producer(`${t}tx-del`)
      let ends: PartitionOffset[] = []
      for (let txn = 0; txn < 4; txn++) {
        p.begin()
        for (let i = 0; i < 10; i++) p.send(`${t}del`, 0, rec('k', String(txn * 10 + i)))
        ends = await p.commit()
      }
      const twentieth = (await readRecords(pipe, `${t}del`, 0, 0, ends))[20]!.offset
      await pipe.deleteRecordsBefore(`${t}del`, 0, twentieth)
      expect(await pipe.startOffset(`${t}del`, 0)).toBe(twentieth)
      const rest = await readAll(pipe, `${t}del`, 0, twentieth)
      expect(rest[0]).toBe('20')
      expect(rest).toHaveLength(20)
      await p.close()
    })
  })
}
