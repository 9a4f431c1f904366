/**
 * The watermark rules of one actor: the minimum over every upstream writer of every input
 * partition, idle writers and inputs left out (and all-idle holding the watermark), the end
 * of input as +infinity, monotonic across re-read marks and restarts, bounded
 * out-of-orderness for sources and topic inputs, and marks that survive encoding.
 */
import { describe, expect, it } from 'vitest'
import { CONTROL_HEADER } from '../../runtime/pipe/pipe.ts'
import { decodeMark, encodeMark, InputWatermarks, isControlRecord, SourceWatermarks, type WatermarkMark } from '../../runtime/watermarks.ts'

const strategy = { maxOutOfOrdernessMs: 0, idleTimeoutMs: 1000 }
const mark = (writer: string, watermark: number, idle = false, ingest = 0): WatermarkMark => ({ writer, watermark, idle, ingest })

describe('input watermarks', () => {
  it('are the minimum over every writer of every input, starting at -infinity until each writer spoke', () => {
    const w = new InputWatermarks([{ writers: ['a/0', 'a/1'], strategy }, { writers: ['b/0'], strategy }], 0)
    w.applyMark(0, mark('a/0', 100))
    w.applyMark(1, mark('b/0', 300))
    expect(w.update(0)).toBe(false)
    expect(w.watermark).toBe(-Infinity)
    w.applyMark(0, mark('a/1', 200))
    expect(w.update(1)).toBe(true)
    expect(w.watermark).toBe(100)
    w.applyMark(0, mark('a/0', 400))
    w.update(2)
    expect(w.watermark).toBe(200)
    expect(w.changedAt).toBe(2)
  })

  it('leave idle writers out, hold the watermark when every input is idle, and count ended writers as +infinity', () => {
    const w = new InputWatermarks([{ writers: ['a/0', 'a/1'], strategy }], 0)
    w.applyMark(0, mark('a/0', 500))
    w.applyMark(0, mark('a/1', 100, true))
    w.update(0)
    expect(w.watermark).toBe(500)
    expect(w.view.idle).toBe(false)
    w.applyMark(0, mark('a/0', 600, true))
    w.update(1)
    expect(w.view.idle).toBe(true)
    expect(w.watermark).toBe(500)
    w.applyMark(0, mark('a/0', Infinity))
    w.applyMark(0, mark('a/1', Infinity))
    w.update(2)
    expect(w.watermark).toBe(Infinity)
    expect(w.view.ended).toBe(true)
  })

  it('never move back: older marks re-read after a restart change nothing', () => {
    const w = new InputWatermarks([{ writers: ['a/0'], strategy }], 0)
    w.applyMark(0, mark('a/0', 900))
    w.update(0)
    const snapshot = w.snapshot()
    const restored = new InputWatermarks([{ writers: ['a/0'], strategy }], 0)
    restored.restore(snapshot, 0)
    expect(restored.watermark).toBe(900)
    restored.applyMark(0, mark('a/0', 400))
    restored.update(1)
    expect(restored.watermark).toBe(900)
  })

  it('of a topic input follow record timestamps minus the out-of-orderness bound, and go idle without records', () => {
    const w = new InputWatermarks([{ writers: undefined, strategy: { maxOutOfOrdernessMs: 50, idleTimeoutMs: 1000 } }, { writers: ['x/0'], strategy }], 0)
    w.applyMark(1, mark('x/0', 10_000))
    w.observeTimestamp(0, 1000, 0)
    w.observeTimestamp(0, 900, 0)
    w.update(10)
    expect(w.watermark).toBe(949)
    w.update(2000) // no record on the topic input for 2 s: idle, the other input alone decides
    expect(w.watermark).toBe(10_000)
  })

  it('end at +infinity when told the input ended, firing everything', () => {
    const w = new InputWatermarks([{ writers: ['a/0'], strategy }], 0)
    w.end(5)
    expect(w.watermark).toBe(Infinity)
    expect(w.changedAt).toBe(5)
  })
})

describe('source watermarks', () => {
  it('trail the newest emitted event time by the bound, go idle after the timeout, and end at +infinity', () => {
    const s = new SourceWatermarks({ maxOutOfOrdernessMs: 100, idleTimeoutMs: 1000 }, 0)
    expect(s.view(0).watermark).toBe(-Infinity)
    s.observeEmit(5000, 0)
    s.observeEmit(4000, 0)
    expect(s.view(1).watermark).toBe(4899)
    s.observeIdle(10)
    expect(s.view(500).idle).toBe(false)
    expect(s.view(1500).idle).toBe(true)
    s.observeEmit(6000, 1600)
    expect(s.view(1600)).toMatchObject({ watermark: 5899, idle: false })
    const restored = new SourceWatermarks({ maxOutOfOrdernessMs: 100, idleTimeoutMs: 1000 }, 0)
    restored.restore(s.snapshot())
    expect(restored.view(0).watermark).toBe(5899)
    s.end()
    expect(s.view(2000)).toMatchObject({ watermark: Infinity, ended: true, idle: false })
  })
})

describe('watermark marks', () => {
  it('round-trip through a control record, including the end of input', () => {
    for (const m of [mark('s/3', 1234, true, 99), mark('s/0', -Infinity), mark('s/1', Infinity, false, Infinity)]) {
      const record = encodeMark(m, 7)
      expect(isControlRecord(record)).toBe(true)
      expect(record.headers![CONTROL_HEADER]!.toString()).toBe('watermark')
      expect(decodeMark({ ...record, offset: 0 })).toEqual(m)
    }
    expect(isControlRecord({ key: null, value: Buffer.from('x'), timestamp: 0 })).toBe(false)
  })
})
