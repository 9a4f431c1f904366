/**
 * The runner with its coordination on a real NATS server: the same pipeline gives the same
 * results as with the in-process bus, and an observer on NATS sees the control traffic
 * (versioned JSON on `weir.<cluster>.<pipeline>.…`).
 */
import { randomUUID } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import wordcount from '../../examples/wordcount.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { startEmbedded } from '../../runner/embedded-runner.ts'
import { removeDir, tempDataDir } from '../../testing/index.ts'
import { requireService } from '../support/services.ts'
import { finalCounts } from '../support/weir-cli.ts'

const nats = await requireService('nats')
const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

describe('embedded runner', () => {
  it('refuses a cluster name that is not a subject token before touching the data dir', async () => {
    const dir = tempDataDir()
    dirs.push(dir)
    await expect(startEmbedded(wordcount({ lines: '10', out: join(dir, 'out', 'c-{partition}.jsonl') }), { dataDir: join(dir, 'data'), cluster: 'a.b' })).rejects.toMatchObject({ code: 'WEIR_CONFIG_INVALID', message: expect.stringContaining('cluster') })
    expect(readdirSync(dir)).toEqual([])
  })

  describe.skipIf(!nats.available)('coordinated over NATS', () => {
    it('runs the word count to the same totals as with the in-process bus, and its control traffic is visible on NATS', async () => {
      const local = tempDataDir()
      const overNats = tempDataDir()
      dirs.push(local, overNats)
      const localRun = await startEmbedded(wordcount({ lines: '400', out: join(local, 'out', 'c-{partition}.jsonl') }), { dataDir: join(local, 'data'), epochIntervalMs: 100 })
      expect((await localRun.done).outcome).toBe('finished')

      const cluster = `t${randomUUID().slice(0, 8)}`
      const bus = await NatsBus.connect({ servers: [nats.url], name: 'weir-test-runner' })
      const observer = await NatsBus.connect({ servers: [nats.url], name: 'weir-test-observer' })
      const seen = new Map<string, unknown>()
      observer.subscribe(`weir.${cluster}.wordcount.>`, (m, subject) => seen.set(subject.split('.').pop()!, m))
      await new Promise((r) => setTimeout(r, 100))
      try {
        const run = await startEmbedded(wordcount({ lines: '400', out: join(overNats, 'out', 'c-{partition}.jsonl') }), { dataDir: join(overNats, 'data'), epochIntervalMs: 100, bus, cluster })
        expect((await run.done).outcome).toBe('finished')
      } finally {
        await bus.close()
        await new Promise((r) => setTimeout(r, 100))
        await observer.close()
      }
      expect(finalCounts(join(overNats, 'out'))).toEqual(finalCounts(join(local, 'out')))
      for (const kind of ['worker-hello', 'assignment', 'epoch', 'epoch-ack', 'actor-finished']) {
        expect(seen.get(kind), `no ${kind} message seen on NATS`).toMatchObject({ v: 1 })
      }
    })
  })
})
