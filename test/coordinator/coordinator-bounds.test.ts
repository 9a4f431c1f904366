/**
 * Control messages a coordinator refuses, with a logged reason, so that no message can make it
 * allocate without bound or push its generation out of its lease term: shapes beyond the
 * bounds, pipelines beyond the service's budget, a hello for another subject, heartbeats
 * listing more actors than the pipeline has or carrying a generation it never assigned.
 * In-process bus: the messages are what a forger on NATS could publish.
 */
import { pino } from 'pino'
import { afterEach, describe, expect, it } from 'vitest'
import { MAX_COORDINATED_ACTORS, MAX_PIPELINES, startCoordinatorService, type CoordinatorService } from '../../coordinator/coordinator-service.ts'
import { Coordinator } from '../../coordinator/coordinator.ts'
import { subjects } from '../../runtime/control/bus.ts'
import { LocalBus } from '../../runtime/control/local/local-bus.ts'
import { MAX_ACTORS, MAX_WORKERS, type PipelineShape, type WorkerHeartbeat } from '../../runtime/control/messages.ts'
import { sleep, until } from '../support/weir-cli.ts'

const CLUSTER = 'bounds'
const stops: Array<() => void> = []
afterEach(() => {
  for (const stop of stops.splice(0)) stop()
})

function capture(): { log: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = []
  return { lines, log: pino({ level: 'warn' }, { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) }) }
}

function service(bus: LocalBus, log: pino.Logger, generationBase?: number): CoordinatorService {
  const s = startCoordinatorService(bus, { cluster: CLUSTER, log, epochIntervalMs: 60_000, settleMs: 0, generationBase })
  stops.push(() => s.stop())
  return s
}

function hello(pipeline: string, shape: unknown, worker = 'w'): unknown {
  return { v: 1, worker, pipeline, fingerprint: 'fp', shape }
}

describe('a coordinator service refuses what would make it allocate without bound', () => {
  it('drops a hello whose shape is beyond the bounds, naming the field, and coordinates nothing for it', async () => {
    const bus = new LocalBus()
    const { log, lines } = capture()
    const s = service(bus, log)
    bus.publish(subjects.workerHello(CLUSTER, 'huge'), hello('huge', { stages: [{ name: 'count', parallelism: 1_000_000_000 }] }))
    bus.publish(subjects.workerHello(CLUSTER, 'wide'), hello('wide', { stages: Array.from({ length: 5 }, (_, i) => ({ name: `s${i}`, parallelism: 4096 })) }))
    bus.publish(subjects.workerHello(CLUSTER, 'dup'), hello('dup', { stages: [{ name: 'a', parallelism: 1 }, { name: 'a', parallelism: 1 }] }))
    await until(() => lines.filter((l) => l.msg === 'malformed worker hello dropped').length === 3, 2000, 'three hellos dropped')
    const issues = lines.filter((l) => l.msg === 'malformed worker hello dropped').map((l) => l.issue as { path: Array<string | number>; message: string })
    expect(issues[0]).toMatchObject({ path: ['shape', 'stages', 0, 'parallelism'], message: expect.stringMatching(/less than or equal to 4096/) })
    expect(issues[1]).toMatchObject({ path: ['shape', 'stages'], message: `at most ${MAX_ACTORS} actors in all` })
    expect(issues[2]).toMatchObject({ message: 'stage names must be unique' })
    expect(s.coordinators.size).toBe(0)
  })

  it(`coordinates at most ${MAX_PIPELINES} pipelines and ${MAX_COORDINATED_ACTORS} actors, refusing the next with its reason`, async () => {
    const bus = new LocalBus()
    const { log, lines } = capture()
    const s = service(bus, log)
    const big: PipelineShape = { stages: [{ name: 'a', parallelism: 4096 }, { name: 'b', parallelism: 4096 }, { name: 'c', parallelism: 4096 }, { name: 'd', parallelism: 4096 }], standbys: 0 }
    for (let i = 0; i < 4; i++) bus.publish(subjects.workerHello(CLUSTER, `big${i}`), hello(`big${i}`, big))
    await until(() => s.coordinators.size === 4, 5000, 'four pipelines of 16384 actors coordinated')
    bus.publish(subjects.workerHello(CLUSTER, 'one-more'), hello('one-more', { stages: [{ name: 'a', parallelism: 1 }] }))
    await until(() => lines.find((l) => l.msg === 'pipeline refused'), 2000, 'the pipeline over the actor budget refused')
    expect(lines.find((l) => l.msg === 'pipeline refused')).toMatchObject({ pipeline: 'one-more', reason: `its 1 actors would make ${MAX_COORDINATED_ACTORS + 1} coordinated here (at most ${MAX_COORDINATED_ACTORS})` })
    expect(s.coordinators.has('one-more')).toBe(false)

    const bus2 = new LocalBus()
    const second = capture()
    const s2 = service(bus2, second.log)
    for (let i = 0; i <= MAX_PIPELINES; i++) bus2.publish(subjects.workerHello(CLUSTER, `p${i}`), hello(`p${i}`, { stages: [{ name: 'a', parallelism: 1 }] }))
    await until(() => second.lines.some((l) => l.msg === 'pipeline refused'), 5000, 'the pipeline over the count refused')
    expect(s2.coordinators.size).toBe(MAX_PIPELINES)
    expect(second.lines.find((l) => l.msg === 'pipeline refused')).toMatchObject({ pipeline: `p${MAX_PIPELINES}`, reason: `this coordinator already coordinates ${MAX_PIPELINES} pipelines (at most ${MAX_PIPELINES})` })
  })

  it('refuses a hello that names another pipeline than its subject', async () => {
    const bus = new LocalBus()
    const { log, lines } = capture()
    const s = service(bus, log)
    bus.publish(subjects.workerHello(CLUSTER, 'a'), hello('b', { stages: [{ name: 'x', parallelism: 1 }] }))
    await until(() => lines.find((l) => l.msg === 'worker hello refused'), 2000, 'the hello refused')
    expect(lines[0]).toMatchObject({ pipeline: 'b', reason: 'the hello names another pipeline than its subject' })
    expect(s.coordinators.size).toBe(0)
  })
})

describe('a coordinator checks what workers say: their generation (own term, before placing only), actors, numbers', () => {
  const SHAPE: PipelineShape = { stages: [{ name: 'count', parallelism: 2 }], standbys: 0 }
  const heartbeat = (generation: number, actors: string[] = ['count/0']): WorkerHeartbeat => ({ v: 1, worker: 'w1', fingerprint: 'fp', generation, shape: SHAPE, actors, finished: [], lastEpoch: 0 })

  it('continues a running worker\'s generation of its term while listening, refuses one of a later term, and after placing refuses any it never assigned', async () => {
    const bus = new LocalBus()
    const { log, lines } = capture()
    const c = new Coordinator(bus, { name: 'wc', fingerprint: 'fp', shape: SHAPE }, { cluster: CLUSTER, epochIntervalMs: 60_000, log, settleMs: 300, generationBase: 3_000_000 })
    stops.push(() => c.stop())
    c.start()
    const beat = (hb: WorkerHeartbeat): void => bus.publish(subjects.workerHeartbeat(CLUSTER, 'wc'), hb)
    beat(heartbeat(2_000_017))
    beat(heartbeat(3_000_005))
    await sleep(20)
    expect(c.placement.generation, 'a generation of this term, heard while listening, is continued').toBe(3_000_005)
    beat(heartbeat(4_000_001))
    await until(() => lines.find((l) => l.msg === 'worker generation not adopted'), 2000, 'the later term refused')
    expect(lines.at(-1)).toMatchObject({ generation: 4_000_001, reason: "generation 4000001 is of lease term 4, after this coordinator's term 3" })
    expect(c.placement.generation).toBe(3_000_005)
    await until(() => c.placement.generation === 3_000_006, 3000, 'placed after settling: a new generation')
    beat(heartbeat(3_500_000))
    await until(() => lines.filter((l) => l.msg === 'worker generation not adopted').length === 2, 2000, 'a generation it never assigned refused')
    expect(lines.at(-1)).toMatchObject({ reason: 'generation 3500000 is newer than the newest this coordinator assigned (3000006)' })
    expect(c.placement.generation).toBe(3_000_006)
  })

  it('refuses a heartbeat listing more actors than the pipeline has', async () => {
    const bus = new LocalBus()
    const { log, lines } = capture()
    const c = new Coordinator(bus, { name: 'wc', fingerprint: 'fp', shape: SHAPE }, { cluster: CLUSTER, epochIntervalMs: 60_000, log })
    stops.push(() => c.stop())
    c.start()
    bus.publish(subjects.workerHeartbeat(CLUSTER, 'wc'), heartbeat(0, ['count/0', 'count/1', 'count/2']))
    await until(() => lines.find((l) => l.msg === 'worker heartbeat refused'), 2000, 'the heartbeat refused')
    expect(lines[0]).toMatchObject({ worker: 'w1', reason: 'it lists 3 actors; the pipeline has 2' })
    expect(c.placement.workers).toEqual([])
  })

  it(`admits at most ${MAX_WORKERS} workers, and remembers at most as many that left`, async () => {
    const bus = new LocalBus()
    const { log, lines } = capture()
    const c = new Coordinator(bus, { name: 'wc', fingerprint: 'fp', shape: SHAPE }, { cluster: CLUSTER, epochIntervalMs: 60_000, log })
    stops.push(() => c.stop())
    c.start()
    for (let i = 0; i <= MAX_WORKERS; i++) bus.publish(subjects.workerHello(CLUSTER, 'wc'), { v: 1, worker: `w${i}`, pipeline: 'wc', fingerprint: 'fp' })
    await until(() => lines.find((l) => l.msg === 'worker not admitted'), 30_000, 'the worker over the bound not admitted')
    expect(lines.find((l) => l.msg === 'worker not admitted')).toMatchObject({ worker: `w${MAX_WORKERS}`, reason: `the pipeline has ${MAX_WORKERS} workers (at most ${MAX_WORKERS})` })
    expect(c.placement.workers).toHaveLength(MAX_WORKERS)
    for (let i = 0; i < 3 * MAX_WORKERS; i++) bus.publish(subjects.workerLeave(CLUSTER, 'wc'), { v: 1, worker: `never-seen-${i}` })
    await sleep(100)
    expect((c as unknown as { left: Set<string> }).left.size).toBe(MAX_WORKERS)
  }, 60_000)
})

