import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { EmbeddedPipe } from '../../../runtime/pipe/embedded/embedded-pipe.ts'
import type { Pipe } from '../../../runtime/pipe/pipe.ts'
import { pipeContract } from './pipe-contract.ts'

const dirs: string[] = []
const dirOf = new WeakMap<Pipe, string>()
let n = 0

pipeContract('embedded', {
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'weir-pipe-'))
    dirs.push(dir)
    const pipe = await EmbeddedPipe.open(dir)
    dirOf.set(pipe, dir)
    return pipe
  },
  async reopen(pipe) {
    const dir = dirOf.get(pipe)!
    await pipe.close()
    const again = await EmbeddedPipe.open(dir)
    dirOf.set(again, dir)
    return again
  },
  topicPrefix: () => `t${n++}-`,
})

describe('embedded pipe', () => {
  it('age retention drops whole batches older than retentionMs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-pipe-'))
    dirs.push(dir)
    const pipe = await EmbeddedPipe.open(dir)
    await pipe.ensureTopic({ name: 'aged', partitions: 1, retentionMs: 1000 })
    const p = await pipe.producer('tx')
    p.begin()
    p.send('aged', 0, { key: null, value: Buffer.from('old'), timestamp: 0 })
    await p.commit()
    await pipe.enforceRetention(Date.now() + 10_000)
    expect(await pipe.startOffset('aged', 0)).toBe(1)
    await pipe.close()
  })
})

describe('embedded pipe compaction', () => {
  async function all(pipe: EmbeddedPipe, topic: string, from = 0): Promise<Array<[number, string, string | null]>> {
    const reader = await pipe.reader(topic, 0, from)
    const out: Array<[number, string, string | null]> = []
    const end = await pipe.endOffset(topic, 0)
    while (reader.position < end) {
      const batch = await reader.poll(1000, 100)
      if (batch.length === 0) break
      for (const r of batch) out.push([r.offset, r.key!.toString(), r.value === null ? null : r.value.toString()])
    }
    reader.close()
    return out
  }

  it('keeps only the newest record per key, with its original offset, and survives a reopen', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-pipe-'))
    dirs.push(dir)
    let pipe = await EmbeddedPipe.open(dir, { compactionMinDirtyRecords: Number.MAX_SAFE_INTEGER })
    await pipe.ensureTopic({ name: 'log', partitions: 1, compacted: true })
    const p = await pipe.producer('tx')
    const newest = new Map<string, [number, string | null]>()
    let offset = 0
    for (let txn = 0; txn < 30; txn++) {
      p.begin()
      for (let i = 0; i < 200; i++) {
        const key = `k${(txn * 7 + i) % 25}`
        const value = i % 37 === 0 ? null : `v${txn}-${i}`
        p.send('log', 0, { key: Buffer.from(key), value: value === null ? null : Buffer.from(value), timestamp: Date.now() })
        newest.set(key, [offset++, value])
      }
      await p.commit()
    }
    const removed = await pipe.compact('log', 0)
    expect(removed).toBe(6000 - 25)
    const expected = [...newest.entries()].map(([k, [o, v]]) => [o, k, v] as [number, string, string | null]).sort((a, b) => a[0] - b[0])
    expect(await all(pipe, 'log')).toEqual(expected)
    expect(await pipe.endOffset('log', 0)).toBe(6000)
    // A reader starting inside the compacted range sees the survivors from there on.
    expect(await all(pipe, 'log', 5990)).toEqual(expected.filter(([o]) => o >= 5990))
    // Appends after cleaning get the next offsets; a second pass merges clean and dirty parts.
    p.begin()
    p.send('log', 0, { key: Buffer.from('k0'), value: Buffer.from('last'), timestamp: Date.now() })
    await p.commit()
    await pipe.close()
    pipe = await EmbeddedPipe.open(dir, { compactionMinDirtyRecords: Number.MAX_SAFE_INTEGER })
    expect(await pipe.compact('log', 0)).toBe(1)
    const after = await all(pipe, 'log')
    expect(after).toHaveLength(25)
    expect(after.at(-1)).toEqual([6000, 'k0', 'last'])
    await pipe.close()
  })

  it('drops tombstones only after the tombstone retention, and cleans by itself once enough is appended', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-pipe-'))
    dirs.push(dir)
    const pipe = await EmbeddedPipe.open(dir, { compactionMinDirtyRecords: 100, compactionMinIntervalMs: 0, tombstoneRetentionMs: 60_000 })
    await pipe.ensureTopic({ name: 'log', partitions: 1, compacted: true })
    const p = await pipe.producer('tx')
    for (let txn = 0; txn < 5; txn++) {
      p.begin()
      for (let i = 0; i < 50; i++) p.send('log', 0, { key: Buffer.from(`k${i % 5}`), value: i % 5 === 0 ? null : Buffer.from(`v${txn}`), timestamp: 1000 })
      await p.commit()
    }
    await new Promise((r) => setTimeout(r, 100))
    const cleaned = await all(pipe, 'log')
    expect(cleaned.length).toBeLessThan(250)
    expect(cleaned.filter(([, k]) => k === 'k0')).toEqual([[245, 'k0', null]])
    // Long after, the tombstone (now in the clean part) goes too.
    await pipe.compact('log', 0, Date.now() + 120_000)
    p.begin()
    p.send('log', 0, { key: Buffer.from('k1'), value: Buffer.from('x'), timestamp: 1000 })
    await p.commit()
    await pipe.compact('log', 0, Date.now() + 120_000)
    expect((await all(pipe, 'log')).filter(([, k]) => k === 'k0')).toEqual([])
    await pipe.close()
  })
})

describe('embedded pipe, read-only', () => {
  it('reads beside the process holding the log: commits as of open, newer ones at each refresh (waking a waiting reader), no writes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-pipe-'))
    dirs.push(dir)
    const holder = await EmbeddedPipe.open(dir)
    await holder.ensureTopic({ name: 'edge', partitions: 1 })
    const p = await holder.producer('tx')
    const commit = async (value: string, ts: number): Promise<void> => {
      p.begin()
      p.send('edge', 0, { key: Buffer.from('k'), value: Buffer.from(value), timestamp: ts })
      await p.commit()
    }
    await commit('one', 100)
    // The holder keeps its lock: a second writer is refused, a reader is not.
    await expect(EmbeddedPipe.open(dir)).rejects.toMatchObject({ code: 'WEIR_PIPE_OPEN_FAILED' })
    const reader = await EmbeddedPipe.open(dir, { readOnly: true, refreshMs: 0 })
    expect(reader.readOnly).toBe(true)
    expect(reader.identity).toBe(holder.identity)
    expect(await reader.endOffset('edge', 0)).toBe(1)
    await commit('two', 200)
    expect(await reader.endOffset('edge', 0)).toBe(1)
    const r = await reader.reader('edge', 0, 0)
    expect((await r.poll(10, 0)).map((x) => x.value!.toString())).toEqual(['one'])
    const waiting = r.poll(10, 5000)
    await reader.refresh()
    expect((await waiting).map((x) => x.value!.toString())).toEqual(['two'])
    expect(await reader.offsetForTime('edge', 0, 150)).toBe(1)
    await expect(reader.producer('tx2')).rejects.toMatchObject({ code: 'WEIR_PIPE_READ_ONLY' })
    await expect(reader.ensureTopic({ name: 'new', partitions: 1 })).rejects.toMatchObject({ code: 'WEIR_PIPE_READ_ONLY' })
    await expect(reader.deleteRecordsBefore('edge', 0, 1)).rejects.toMatchObject({ code: 'WEIR_PIPE_READ_ONLY' })
    r.close()
    await reader.close()
    await p.close()
    await holder.close()
  })

  it('refreshes by itself every refreshMs, and refuses a data dir with no log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-pipe-'))
    dirs.push(dir)
    await expect(EmbeddedPipe.open(dir, { readOnly: true })).rejects.toMatchObject({ code: 'WEIR_PIPE_OPEN_FAILED', message: expect.stringContaining('no embedded pipe') })
    const holder = await EmbeddedPipe.open(dir)
    await holder.ensureTopic({ name: 'edge', partitions: 1 })
    const reader = await EmbeddedPipe.open(dir, { readOnly: true, refreshMs: 50 })
    const r = await reader.reader('edge', 0, 0)
    const p = await holder.producer('tx')
    p.begin()
    p.send('edge', 0, { key: null, value: Buffer.from('later'), timestamp: 1 })
    await p.commit()
    const started = Date.now()
    expect((await r.poll(10, 5000)).map((x) => x.value!.toString())).toEqual(['later'])
    expect(Date.now() - started).toBeLessThan(2000)
    r.close()
    await reader.close()
    await p.close()
    await holder.close()
  })
})

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})
