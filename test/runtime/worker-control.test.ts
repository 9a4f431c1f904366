/**
 * What a worker does with control messages that cannot be the leader's (runtime/worker.ts):
 * an assignment naming an actor the pipeline lacks or a generation far beyond the leader's
 * epochs is refused with its reason; a generation the leader's epochs keep contradicting is
 * dropped, and the worker says hello again; epochs cannot grow its finished stages beyond
 * the pipeline's. No actor is assigned to this worker here, so no pipe is touched.
 */
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import wordcount from '../../examples/wordcount.ts'
import { actorConfigFor } from '../../runtime/actor/actor.ts'
import { subjects } from '../../runtime/control/bus.ts'
import { LocalBus } from '../../runtime/control/local/local-bus.ts'
import type { WorkerHeartbeat } from '../../runtime/control/messages.ts'
import { Faults } from '../../runtime/faults.ts'
import type { Pipe } from '../../runtime/pipe/pipe.ts'
import { Worker } from '../../runtime/worker.ts'
import { until } from '../support/weir-cli.ts'

const CLUSTER = 'wc-control'
const stops: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const stop of stops.splice(0)) await stop()
})

function setup(): { bus: LocalBus; lines: Array<Record<string, unknown>>; worker: Worker; heartbeats: WorkerHeartbeat[]; hellos: unknown[]; pipeline: ReturnType<typeof wordcount> } {
  const bus = new LocalBus()
  const lines: Array<Record<string, unknown>> = []
  const log = pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) })
  const pipeline = wordcount({ name: 'wc' })
  // Never used: nothing is assigned to this worker, so no actor opens the pipe.
  const noPipe = { transactionRecords: 20_000 } as Pipe
  const worker = new Worker(bus, noPipe, pipeline, { id: 'me', cluster: CLUSTER, dataDir: '/nonexistent', log, faults: Faults.none(), actorConfig: actorConfigFor(noPipe), heartbeatMs: 20, progressIntervalMs: 60_000, epochIntervalMs: 60_000 })
  const heartbeats: WorkerHeartbeat[] = []
  const hellos: unknown[] = []
  bus.subscribe(subjects.workerHeartbeat(CLUSTER, 'wc'), (m) => heartbeats.push(m as WorkerHeartbeat))
  bus.subscribe(subjects.workerHello(CLUSTER, 'wc'), (m) => hellos.push(m))
  worker.start((err) => {
    throw err
  })
  stops.push(() => worker.stop())
  return { bus, lines, worker, heartbeats, hellos, pipeline }
}

const elsewhere = { 'count/0': 'other' }

describe('a worker and control messages that cannot be the leader\'s', () => {
  it('refuses an assignment naming an actor the pipeline lacks, and one far beyond the leader\'s epochs', async () => {
    const { bus, lines, heartbeats } = setup()
    bus.publish(subjects.assignment(CLUSTER, 'wc'), { v: 1, generation: 3, actors: { 'nope/0': 'me' } })
    bus.publish(subjects.epoch(CLUSTER, 'wc'), { v: 1, epoch: 1, generation: 2_000_001, finishedStages: [] })
    bus.publish(subjects.assignment(CLUSTER, 'wc'), { v: 1, generation: 2_000_001 + 1000 * 1_000_000 + 1, actors: elsewhere })
    bus.publish(subjects.assignment(CLUSTER, 'wc'), { v: 1, generation: 2_000_002, actors: elsewhere })
    await until(() => lines.filter((l) => l.msg === 'assignment refused').length === 2 && heartbeats.at(-1)?.generation === 2_000_002, 2000, 'two refused, the third taken')
    expect(lines.filter((l) => l.msg === 'assignment refused').map((l) => l.reason)).toEqual([
      "actor nope/0 is not an actor of pipeline 'wc'",
      "generation 1002000002 is more than 1000 lease terms ahead of the leader's (generation 2000001)",
    ])
  })

  it('before any epoch, refuses one far beyond the assignment it took', async () => {
    const { bus, lines, heartbeats } = setup()
    bus.publish(subjects.assignment(CLUSTER, 'wc'), { v: 1, generation: 1_000_001, actors: elsewhere })
    await until(() => heartbeats.at(-1)?.generation === 1_000_001, 2000, 'the first assignment taken')
    bus.publish(subjects.assignment(CLUSTER, 'wc'), { v: 1, generation: 10 ** 15, actors: elsewhere })
    bus.publish(subjects.assignment(CLUSTER, 'wc'), { v: 1, generation: 1_000_002, actors: elsewhere })
    await until(() => heartbeats.at(-1)?.generation === 1_000_002, 2000, 'the next real assignment taken')
    expect(lines.filter((l) => l.msg === 'assignment refused').map((l) => l.reason)).toEqual([
      "generation 1000000000000000 is more than 1000 lease terms ahead of the leader's (generation 1000001)",
    ])
    expect(heartbeats.map((h) => h.generation), 'never on the forged generation').not.toContain(10 ** 15)
  })

  it('drops a generation the leader\'s epochs keep contradicting, says hello, and takes the leader\'s assignment again', async () => {
    const { bus, lines, heartbeats, hellos } = setup()
    const epoch = (generation: number): void => bus.publish(subjects.epoch(CLUSTER, 'wc'), { v: 1, epoch: 1, generation, finishedStages: [] })
    bus.publish(subjects.assignment(CLUSTER, 'wc'), { v: 1, generation: 5, actors: elsewhere })
    epoch(5)
    // A forged one within reach: taken at first.
    bus.publish(subjects.assignment(CLUSTER, 'wc'), { v: 1, generation: 900, actors: elsewhere })
    await until(() => heartbeats.at(-1)?.generation === 900, 2000, 'the forged generation taken')
    const hellosBefore = hellos.length
    for (let i = 0; i < 4; i++) epoch(5)
    await new Promise((r) => setTimeout(r, 50))
    expect(heartbeats.at(-1)!.generation, 'four epochs are not enough to drop it').toBe(900)
    epoch(5)
    await until(() => lines.find((l) => String(l.msg).startsWith('the leader never stated')), 2000, 'the generation dropped')
    expect(lines.find((l) => String(l.msg).startsWith('the leader never stated'))).toMatchObject({ generation: 900, leaderGeneration: 5, epochs: 5 })
    expect(hellos.length).toBe(hellosBefore + 1)
    // The leader answers a hello with its current assignment: taken again.
    bus.publish(subjects.assignment(CLUSTER, 'wc'), { v: 1, generation: 5, actors: elsewhere })
    await until(() => heartbeats.at(-1)?.generation === 5, 2000, 'the leader\'s generation taken again')
  })

  it('an epoch of the leader\'s own generation resets the count: a deposed leader\'s epochs in between change nothing', async () => {
    const { bus, lines, heartbeats } = setup()
    const epoch = (generation: number): void => bus.publish(subjects.epoch(CLUSTER, 'wc'), { v: 1, epoch: 1, generation, finishedStages: [] })
    bus.publish(subjects.assignment(CLUSTER, 'wc'), { v: 1, generation: 2_000_003, actors: elsewhere })
    for (let i = 0; i < 12; i++) epoch(i % 3 === 2 ? 2_000_003 : 1_000_007)
    await new Promise((r) => setTimeout(r, 100))
    expect(lines.some((l) => String(l.msg).startsWith('the leader never stated'))).toBe(false)
    expect(heartbeats.at(-1)!.generation).toBe(2_000_003)
  })

  it('keeps only the pipeline\'s own stages of an epoch\'s finished stages', async () => {
    const { bus, worker } = setup()
    for (let i = 0; i < 20; i++) bus.publish(subjects.epoch(CLUSTER, 'wc'), { v: 1, epoch: 1, generation: 0, finishedStages: Array.from({ length: 200 }, (_, j) => `junk${i}-${j}`) })
    bus.publish(subjects.epoch(CLUSTER, 'wc'), { v: 1, epoch: 1, generation: 0, finishedStages: ['lines'] })
    await new Promise((r) => setTimeout(r, 50))
    expect([...(worker as unknown as { finishedStages: Set<string> }).finishedStages]).toEqual(['lines'])
  })
})
