/**
 * Frames files: what FrameWriter writes, readFrames reads back entry for entry, whether an
 * entry went through the encoder (add) or the byte-pair fast path keyed state takes
 * (addBytesPair), across the bin 8/16/32 lengths, nil keys and frame boundaries.
 */
import { afterAll, describe, expect, it } from 'vitest'
import { join } from 'node:path'
import { writeFileSync, readFileSync } from 'node:fs'
import { removeTempDirs, tempDataDir } from '../../../testing/index.ts'
import { FrameWriter, readFrames, SavepointFileError } from '../../../runtime/savepoint/frames.ts'

afterAll(() => removeTempDirs())

describe('frames', () => {
  it('reads back what add and addBytesPair wrote, in order, over several frames', async () => {
    const path = join(tempDataDir(), 'a.frames')
    const w = FrameWriter.create(path)
    const want: unknown[][] = []
    for (let i = 0; i < 9000; i++) {
      const key = i % 7 === 0 ? null : Buffer.alloc(i % 300, i & 255)
      const value = Buffer.alloc(i === 10 ? 70_000 : (i * 37) % 1000, 7)
      if (i % 5 === 0) {
        w.add(['timer', i, key])
        want.push(['timer', i, key])
      } else {
        w.addBytesPair(key, value)
        want.push([key, value])
      }
    }
    const summary = await w.close()
    expect(summary.entries).toBe(9000)
    const got: unknown[][] = []
    for await (const frame of readFrames(path, summary)) got.push(...frame)
    // As hex: comparing Buffers element by element is slow in expect.
    const hex = (entries: unknown[][]): string[] => entries.map((e) => e.map((x) => (Buffer.isBuffer(x) ? `b:${x.toString('hex')}` : JSON.stringify(x))).join(','))
    expect(hex(got)).toEqual(hex(want))
  })

  it('refuses a file changed after it was written', async () => {
    const path = join(tempDataDir(), 'b.frames')
    const w = FrameWriter.create(path)
    w.addBytesPair(Buffer.from('ant'), Buffer.from([1]))
    const summary = await w.close()
    const bytes = readFileSync(path)
    bytes[bytes.length - 1] = 2
    writeFileSync(path, bytes)
    const read = async (): Promise<void> => {
      for await (const _ of readFrames(path, summary)) void _
    }
    await expect(read()).rejects.toBeInstanceOf(SavepointFileError)
  })
})
