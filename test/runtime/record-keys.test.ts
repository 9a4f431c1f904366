/**
 * Record keys are bytes end to end: keys that are not UTF-8 (Avro or Protobuf keys written
 * by other systems) keep their own state, timers and output keys instead of collapsing into
 * U+FFFD; UTF-8 keys stay plain strings.
 */
import { randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { Pipeline, Processor, startEmbedded, type Context, type StreamRecord, type Timer } from '../../index.ts'
import { codecFor } from '../../runtime/codec.ts'
import { EmbeddedPipe } from '../../runtime/pipe/embedded/embedded-pipe.ts'
import { keyBytes, keyString, storeKeyBytes } from '../../runtime/record-keys.ts'
import { readTopic, readState, removeDir, tempDataDir } from '../../testing/index.ts'

const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

/** Keys as another system writes them: two that are not UTF-8 and differ only in their first byte, and one UTF-8 key. */
const KEYS = [Buffer.from([0xff, 0x01]), Buffer.from([0xfe, 0x01]), Buffer.from([0xff, 0x01]), Buffer.from('é'), Buffer.from([0xfe, 0x01]), Buffer.from([0xff, 0x01])]

class CountPerKey extends Processor<string, { n: number; bytes: string }> {
  private readonly count = this.state.value<number>('count')
  onRecord(r: StreamRecord<string>, ctx: Context<{ n: number; bytes: string }>): void {
    const n = (this.count.get() ?? 0) + 1
    this.count.set(n)
    ctx.emit(r.key, { n, bytes: r.keyBytes!.toString('hex') })
    ctx.timers.registerProcessingTime(1) // due at once: fires for this key with its state
  }
  override onTimer(t: Timer, ctx: Context<{ n: number; bytes: string }>): void {
    ctx.emit(t.key, { n: -(this.count.get() ?? 0), bytes: 'timer' })
  }
}

describe('record keys', () => {
  it('any key bytes map to a string and back to the same bytes; distinct bytes never share a string; UTF-8 keys stay plain', () => {
    // ASCII keys of 0 to 20 bytes too: up to 16 take keyString's short path, the rest Node's.
    const ascii = fc.string({ unit: 'binary-ascii', maxLength: 20, size: 'max' }).map((t) => new Uint8Array(Buffer.from(t)))
    const bytes = fc.oneof(fc.uint8Array({ maxLength: 24, size: 'medium' }), fc.string({ unit: 'binary', maxLength: 12, size: 'medium' }).map((t) => new Uint8Array(Buffer.from(t))), ascii)
    fc.assert(fc.property(bytes, bytes, (a, b) => {
      const [ka, kb] = [keyString(Buffer.from(a)), keyString(Buffer.from(b))]
      expect(keyBytes(ka).equals(Buffer.from(a))).toBe(true)
      expect(ka === kb).toBe(Buffer.from(a).equals(Buffer.from(b)))
      expect(storeKeyBytes('count\u0000' + ka).equals(Buffer.concat([Buffer.from('count\u0000'), Buffer.from(a)]))).toBe(true)
      const utf8 = Buffer.from(Buffer.from(a).toString('utf8'))
      if (utf8.equals(Buffer.from(a))) expect(ka).toBe(utf8.toString('utf8'))
    }), { numRuns: 2000 })
  })

  it('keys that are not UTF-8 keep their own state, timers and output keys', async () => {
    const dir = tempDataDir('weir-keys-')
    dirs.push(dir)
    const pipe = await EmbeddedPipe.open(dir)
    const topic = `bin-keys-${randomUUID().slice(0, 6)}`
    await pipe.ensureTopic({ name: topic, partitions: 1 })
    const producer = await pipe.producer(`${topic}-writer`)
    producer.begin()
    KEYS.forEach((key, i) => producer.send(topic, 0, { key, value: Buffer.from(`v${i}`), timestamp: 1_000 + i }))
    await producer.commit()
    await producer.close()

    const p = new Pipeline('keys')
    p.fromTopic<string>('in', { topic, partitions: 1, codec: 'string', watermarks: { idleTimeoutMs: 0 } }).process('count', CountPerKey, { topic: `${topic}-counts`, codec: 'json' })
    const run = await startEmbedded(p, { dataDir: dir, pipe, epochIntervalMs: 50 })
    const deadline = Date.now() + 30_000
    const timerKeys = async (): Promise<number> => new Set((await readTopic<{ bytes: string }>(pipe, `${topic}-counts`, codecFor('json'))).filter((r) => r.value.bytes === 'timer').map((r) => r.key)).size
    while ((await run.measureLag()) > 0 || (await readTopic(pipe, `${topic}-counts`, codecFor('json'))).length < KEYS.length + 3 || (await timerKeys()) < 3) {
      if (Date.now() > deadline) throw new Error('the pipeline did not catch up in 30 s')
      await new Promise((r) => setTimeout(r, 50))
    }
    await run.stop()

    // Read the output's raw keys: the same bytes came out as went in.
    const out: Array<[string, string]> = []
    const { readRange } = await import('../../runtime/pipe/read-range.ts')
    await readRange(pipe, `${topic}-counts`, 0, await pipe.startOffset(`${topic}-counts`, 0), await pipe.endOffset(`${topic}-counts`, 0), (batch) => {
      for (const r of batch) if (r.headers?.['weir.control'] === undefined) out.push([r.key!.toString('hex'), r.value!.toString()])
    })
    await pipe.close()
    const counts = out.filter(([, v]) => !v.includes('timer')).map(([k, v]) => `${k} ${(JSON.parse(v) as { n: number; bytes: string }).n} ${(JSON.parse(v) as { bytes: string }).bytes}`)
    expect(counts).toEqual(['ff01 1 ff01', 'fe01 1 fe01', 'ff01 2 ff01', 'c3a9 1 c3a9', 'fe01 2 fe01', 'ff01 3 ff01'])
    // Each key's timers fired under that key, with that key's state.
    const final: Record<string, number> = { ff01: 3, fe01: 2, c3a9: 1 }
    const timers = out.filter(([, v]) => v.includes('timer')).map(([k, v]) => [k, -(JSON.parse(v) as { n: number }).n] as const)
    expect(new Set(timers.map(([k]) => k))).toEqual(new Set(Object.keys(final)))
    for (const [k, n] of timers) expect(n).toBeGreaterThanOrEqual(1), expect(n).toBeLessThanOrEqual(final[k]!)
    const state = await readState(p, dir, 'count')
    expect(Object.keys(state.keyed.count ?? {}).length).toBe(3)
    expect(state.keyed.count?.['é']).toBe(1)
  })
})
