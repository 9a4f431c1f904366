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

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})
