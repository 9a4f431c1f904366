/**
 * When an actor takes its barriers. A barrier that comes due while the previous checkpoint
 * is still being sealed (its transaction committing) could only wait for it: the actor goes
 * on processing instead and takes the barrier as the seal ends. The embedded pipe here
 * commits the count actor's transactions 200 ms late, so a barrier that waited would stall
 * for about that long (every one of them did before the change: p50 200 ms).
 */
import { describe, expect, it } from 'vitest'
import { Pipeline, Processor, startEmbedded, type Context, type StreamRecord } from '../../../index.ts'
import { GeneratorSource } from '../../../processors/index.ts'
import { EmbeddedPipe } from '../../../runtime/pipe/embedded/embedded-pipe.ts'
import type { Pipe, TransactionalProducer } from '../../../runtime/pipe/pipe.ts'
import { naming } from '../../../runtime/naming.ts'
import { readState, runToCompletion } from '../../../testing/index.ts'
import { tempDirs } from '../../support/weir-cli.ts'

const COMMIT_DELAY_MS = 200
const RECORDS = 30_000
/** Per source partition: the input lasts about 1.5 s, several commits' time. */
const RATE = 10_000
const KEYS = 6000

const dir = tempDirs('weir-barriers-')

class Count extends Processor<number, number> {
  private readonly count = this.state.value<number>('count')
  onRecord(r: StreamRecord<number>, _ctx: Context<number>): void {
    this.count.set((this.count.get() ?? 0) + 1)
  }
}

function counting(): Pipeline {
  const p = new Pipeline('barriers')
  p.source<number>('numbers', () => new GeneratorSource<number>({ count: RECORDS / 2, ratePerSecond: RATE, generate: (i, part) => ({ key: `k${(i * 7 + part) % KEYS}`, value: i }) }), { partitions: 2 })
    .keyBy(1)
    .process('count', Count)
  return p
}

/** The embedded pipe, with the commits of one transactional id resolving `delayMs` late (in order). */
function slowCommits(pipe: Pipe, transactionalId: string, delayMs: number): Pipe {
  return new Proxy(pipe, {
    get(target, prop, receiver) {
      if (prop !== 'producer') return Reflect.get(target, prop, receiver) as unknown
      return async (id: string): Promise<TransactionalProducer> => {
        const producer = await target.producer(id)
        if (id !== transactionalId) return producer
        return new Proxy(producer, {
          get(p, name, r) {
            if (name !== 'commit') return Reflect.get(p, name, r) as unknown
            return () => p.commit().then((ends) => new Promise<typeof ends>((resolve) => setTimeout(() => resolve(ends), delayMs)))
          },
        })
      }
    },
  })
}

describe('barriers while the previous checkpoint seals', () => {
  it('an actor goes on processing while its previous transaction commits and takes the barrier after; the state is that of a run without delays', async () => {
    const ref = dir()
    await runToCompletion(counting(), { dataDir: ref })

    const d = dir()
    const inner = await EmbeddedPipe.open(d)
    const pipe = slowCommits(inner, naming.transactionalId('barriers', 'count', 0), COMMIT_DELAY_MS)
    // An early barrier every 500 dirty entries: many barriers come due while the previous one commits.
    const run = await startEmbedded(counting(), { dataDir: d, pipe, epochIntervalMs: 100, actorConfig: { maxBatch: 200, maxDirty: 500, cacheEntries: 100_000, maxTransactionRecords: 20_000 } })
    const result = await run.done
    await inner.close()
    const count = Object.entries(result.stats).find(([id]) => id.startsWith('count'))![1]
    const stalls = [...count.barrierStallsMs].sort((a, b) => a - b)
    const waited = stalls.filter((ms) => ms >= COMMIT_DELAY_MS / 2)
    console.log(`barriers: ${JSON.stringify({ checkpoints: count.checkpoints, stalls: stalls.length, p50Ms: Number(stalls[Math.floor(stalls.length / 2)]!.toFixed(1)), waited: waited.length, maxMs: Number(stalls.at(-1)!.toFixed(1)) })}`)

    expect(await readState(counting(), d, 'count')).toEqual(await readState(counting(), ref, 'count'))
    // Commits took 200 ms each: a run takes several.
    expect(count.checkpoints).toBeGreaterThanOrEqual(4)
    // Barriers are taken as the commit before them ends; the last checkpoint (end of input) waits for it, and is no stall.
    expect(stalls[Math.floor(stalls.length / 2)]!).toBeLessThan(COMMIT_DELAY_MS / 2)
    expect(waited.length, `barriers that waited for the previous commit: ${JSON.stringify(waited)}`).toBeLessThanOrEqual(Math.max(2, stalls.length / 4))
  })
})

describe('early barriers of a big transaction', () => {
  /** The embedded pipe, saying its transactions should hold `records`. */
  const withTransactionRecords = (pipe: Pipe, records: number): Pipe => new Proxy(pipe, { get: (target, prop, receiver) => (prop === 'transactionRecords' ? records : Reflect.get(target, prop, receiver) as unknown) })
  const emitting = (): Pipeline => {
    const p = new Pipeline('early')
    p.source<number>('numbers', () => new GeneratorSource<number>({ count: 5000, generate: (i) => ({ key: `k${i % 50}`, value: i }) })).keyBy(1).process('count', Count)
    return p
  }
  const sourceCheckpoints = async (records: number, actorConfig?: { maxTransactionRecords: number }): Promise<number> => {
    const d = dir()
    const inner = await EmbeddedPipe.open(d)
    // No epoch in the run: every barrier but the last is an early one.
    const run = await startEmbedded(emitting(), { dataDir: d, pipe: withTransactionRecords(inner, records), epochIntervalMs: 600_000, actorConfig })
    const result = await run.done
    await inner.close()
    return Object.entries(result.stats).find(([id]) => id.startsWith('numbers'))![1].checkpoints
  }

  it("come every pipe's transactionRecords records a backlogged actor emits, unless its config sets maxTransactionRecords", async () => {
    const byPipe = await sourceCheckpoints(500)
    const byConfig = await sourceCheckpoints(500, { maxTransactionRecords: 2500 })
    console.log(`early barriers: ${JSON.stringify({ byPipe, byConfig })}`)
    // 5000 records: 10 transactions of 500 (and the first commit, taken at once), or 2 of 2500.
    expect(byPipe).toBeGreaterThanOrEqual(10)
    expect(byConfig).toBeLessThanOrEqual(4)
  })
})
