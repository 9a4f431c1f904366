/**
 * The runner with its coordination on a real NATS server: the same pipeline gives the same
 * results as with the in-process bus, and an observer on NATS sees the control traffic
 * (versioned JSON on `weir.<cluster>.<pipeline>.…`). An actor that fails for good ends the
 * run with its error, after the other actors took a final checkpoint.
 */
import { randomUUID } from 'node:crypto'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import wordcount from '../../examples/wordcount.ts'
import { Pipeline, Processor, Source, policy, type Context, type LifecycleContext, type SourceContext, type SourceStatus, type StreamRecord } from '../../index.ts'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { startEmbedded } from '../../runner/embedded-runner.ts'
import { readStageOutput, removeDir, tempDataDir } from '../../testing/index.ts'
import { partitionForKey } from '../../runtime/partitioner.ts'
import { requireService } from '../support/services.ts'
import { finalCounts } from '../support/weir-cli.ts'

const nats = await requireService('nats')
const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

/** Emits 1000 records in its first poll (one checkpoint), then idles forever: an unbounded input that is all there at once. */
class Burst extends Source<number> {
  private readonly sent = this.state.actorValue<boolean>('sent')
  override poll(ctx: SourceContext<number>): SourceStatus {
    if (this.sent.get() !== true) {
      for (let i = 0; i < 1000; i++) ctx.emit(`k${i % 10}`, i)
      this.sent.set(true)
    }
    return 'idle'
  }
}

/** Passes records on; on partition 1, a timer 400 ms after its first record throws (fail-stop). */
class BreaksOnPartitionOne extends Processor<number, number> {
  private partition = -1
  private armed = false
  override open(ctx: LifecycleContext): void {
    this.partition = ctx.partition
  }
  override onRecord(r: StreamRecord<number>, ctx: Context<number>): void {
    if (this.partition === 1 && !this.armed) {
      this.armed = true
      ctx.timers.registerProcessingTime(Date.now() + 400)
    }
    ctx.emit(r.key, r.value)
  }
  override onTimer(): void {
    throw new Error('partition 1 cannot go on')
  }
}

describe('embedded runner', () => {
  it('an actor that fails for good ends the run with its error naming it, after the other actors took a final checkpoint', async () => {
    const dir = tempDataDir()
    dirs.push(dir)
    const p = new Pipeline('one-fails')
    // Unbounded: work/0 never finishes. It commits its first batch of 10 at once; with epochs a
    // minute apart, only a final checkpoint commits the rest of what it read.
    p.source<number>('in', () => new Burst(), { codec: 'json' })
      .keyBy(2)
      .process('work', BreaksOnPartitionOne, { onError: policy.failStop(), codec: 'json' })
    const run = await startEmbedded(p, { dataDir: join(dir, 'data'), epochIntervalMs: 60_000, actorConfig: { maxBatch: 10 } })
    const err = await run.done.then(() => undefined, (e: unknown) => e)
    expect(err).toMatchObject({ code: 'WEIR_ACTOR_FAILED', context: { actor: 'work/1', stage: 'work', domain: 'processing-time' } })
    expect((err as Error).message).toMatch(/^actor work\/1 stopped: work failed in onTimer .*partition 1 cannot go on/)
    // work/0 emitted what it read after its first commit too, and its final checkpoint committed all of it.
    const emitted = run.stats()['work/0']!.recordsOut
    expect(emitted).toBeGreaterThan(10)
    const byWork0 = (await readStageOutput<number>(p, join(dir, 'data'), 'work')).filter((r) => partitionForKey(Buffer.from(r.key!), 2) === 0)
    expect(byWork0.length).toBe(emitted)
  })

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
