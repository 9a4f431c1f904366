/**
 * Forged control messages on a running cluster's open NATS (no authorization: anyone who
 * reaches the server can publish): each is refused with a logged reason or undone, and real
 * processing goes on to the exact output. A hello with a parallelism beyond the bound, a
 * heartbeat carrying a later term's generation, an assignment naming an actor the pipeline
 * lacks, one with a generation far beyond the leader's, and one within reach that takes every
 * actor away: the worker drops it once the leader's epochs keep stating an older generation.
 */
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { connect } from '@nats-io/transport-node'
import { describe, expect, it, onTestFinished } from 'vitest'
import { subjects } from '../../runtime/control/bus.ts'
import { assignmentMessage, epochMessage, GENERATIONS_PER_TERM, generationTerm, workerHeartbeat, type WorkerHeartbeat } from '../../runtime/control/messages.ts'
import { requireService } from '../support/services.ts'
import { expectExactWordCounts, sleep, startWeir, tempDirs, until, wordcountReference } from '../support/weir-cli.ts'

const kafka = await requireService('kafka')
const nats = await requireService('nats')
const tempDir = tempDirs('weir-cli-cluster-forged-')

function json(m: { json(): unknown }): unknown {
  try {
    return m.json()
  } catch {
    return undefined
  }
}

describe.skipIf(!kafka.available || !nats.available)('forged control messages on a running cluster', () => {
  it('are refused with their reason or undone, and the run finishes with the exact output', async () => {
    const dir = tempDir()
    const LINES = 400
    const expected = await wordcountReference(dir, LINES)
    const cluster = `f${randomUUID().slice(0, 8)}`
    const name = `forged-${randomUUID().slice(0, 8)}`
    const out = join(dir, 'out')
    const env = { WEIR_LOG_LEVEL: 'warn' }
    const coordinator = startWeir(['coordinator', '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '300', '--worker-timeout-ms', '3000', '--settle-ms', '300'], { env })
    const worker = startWeir(['worker', 'examples/wordcount.ts', '--pipe', `kafka://${kafka.url}`, '--bus', nats.url, '--cluster', cluster, '--id', 'a', '--state-dir', join(dir, 'a'),
      '--epoch-ms', '300', '--heartbeat-ms', '250', '--param', `name=${name}`, '--param', `lines=${LINES}`, '--param', 'rate=30', '--param', `out=${out}/c-{partition}.jsonl`], { env })
    onTestFinished(() => {
      coordinator.child.kill('SIGKILL')
      worker.child.kill('SIGKILL')
    })
    const nc = await connect({ servers: nats.url })
    onTestFinished(() => nc.close())
    const forgedGenerations = new Set<number>()
    const generations: number[] = []
    nc.subscribe(subjects.assignment(cluster, name), { callback: (_e, m) => {
      const a = assignmentMessage.safeParse(json(m))
      if (a.success && !forgedGenerations.has(a.data.generation)) generations.push(a.data.generation)
    } })
    const epochGenerations: number[] = []
    nc.subscribe(subjects.epoch(cluster, name), { callback: (_e, m) => {
      const e = epochMessage.safeParse(json(m))
      if (e.success) epochGenerations.push(e.data.generation)
    } })
    const heartbeats: WorkerHeartbeat[] = []
    nc.subscribe(subjects.workerHeartbeat(cluster, name), { callback: (_e, m) => {
      const hb = workerHeartbeat.safeParse(json(m))
      if (hb.success && hb.data.worker === 'a') heartbeats.push(hb.data)
    } })
    const all = (h: WorkerHeartbeat): boolean => h.actors.length === h.shape.stages.reduce((n, s) => n + s.parallelism, 0)
    await until(() => heartbeats.some(all) && generations.length > 0, 60_000, 'the worker runs all its actors')
    const real = Math.max(...generations)
    const { fingerprint, shape } = heartbeats.at(-1)!
    const publish = (subject: string, message: unknown): void => nc.publish(subject, JSON.stringify(message))
    const forgedFrom = heartbeats.length

    // The coordinator: a hello beyond the bounds, a heartbeat of a later term's generation.
    publish(subjects.workerHello(cluster, name), { v: 1, worker: 'x', pipeline: name, fingerprint, shape: { stages: [{ name: 'count', parallelism: 1_000_000_000 }] } })
    const laterTerm = (generationTerm(real) + 1) * GENERATIONS_PER_TERM + 1
    publish(subjects.workerHeartbeat(cluster, name), { ...heartbeats.at(-1)!, generation: laterTerm })
    // The worker: an actor the pipeline lacks, a generation far beyond the leader's.
    const everyActor = Object.fromEntries(shape.stages.flatMap((s) => Array.from({ length: s.parallelism }, (_, p) => [`${s.name}/${p}`, 'nobody'])))
    for (const g of [real + 1, 10 ** 15]) forgedGenerations.add(g)
    publish(subjects.assignment(cluster, name), { v: 1, generation: real + 1, actors: { 'nope/0': 'a' } })
    publish(subjects.assignment(cluster, name), { v: 1, generation: 10 ** 15, actors: everyActor })
    await nc.flush()
    await sleep(1000)
    // Refused: every heartbeat since states the leader's generation, and the worker runs all
    // its actors (within a few seconds: under load one may be restarting after a pipe error).
    // (Not the heartbeat this test forged in the worker's name.)
    const since = heartbeats.slice(forgedFrom).filter((h) => h.generation !== laterTerm)
    expect(since.length, 'heartbeats after the forgeries').toBeGreaterThan(0)
    expect([...new Set(since.map((h) => h.generation))], 'the refused assignments left the worker on the leader\'s generation').toEqual([real])
    await until(() => all(heartbeats.at(-1)!), 10_000, 'the worker running all its actors after the refused assignments').catch((err: Error) => {
      const last = heartbeats.at(-1)!
      const missing = Object.keys(everyActor).filter((a) => !last.actors.includes(a))
      throw new Error(`${err.message}: the last heartbeat lacks ${missing.join(', ')} (generation ${last.generation}, the leader's ${real}); worker a's stderr ends:\n${worker.stderr().slice(-4000)}`)
    })

    // Within reach of the leader's generation: taken, every actor stops, until the epochs say otherwise.
    const within = real + 999
    forgedGenerations.add(within)
    publish(subjects.assignment(cluster, name), { v: 1, generation: within, actors: everyActor })
    await nc.flush()
    await until(() => heartbeats.at(-1)!.generation === within && heartbeats.at(-1)!.actors.length === 0, 15_000, 'the worker took the forged assignment')
    await until(() => heartbeats.at(-1)!.generation === real && all(heartbeats.at(-1)!), 30_000, 'the worker follows the leader again with all its actors')

    const w = await Promise.race([worker.done, sleep(90_000).then(() => undefined)])
    expect(w, 'the worker finished within 90 s of the forgeries').toBeDefined()
    expect(w!.code, w!.stderr).toBe(0)
    expectExactWordCounts(out, expected)
    expect(Math.max(...generations), 'the leader published no new generation because of the forgeries').toBe(real)
    expect(Math.max(...epochGenerations), 'the leader\'s epochs never stated a forged generation').toBe(real)
    coordinator.child.kill('SIGTERM')
    const c = await coordinator.done

    // Each refusal is logged with its reason.
    expect(c.stderr).toMatch(/"msg":"malformed worker hello dropped"/)
    expect(c.stderr).toMatch(/less than or equal to 4096/)
    expect(c.stderr).toContain(`"reason":"generation ${laterTerm} is of lease term ${generationTerm(laterTerm)}, after this coordinator's term ${generationTerm(real)}"`)
    expect(c.stderr).toContain(`"reason":"generation ${within} is newer than the newest this coordinator assigned (${real})"`)
    expect(w!.stderr).toContain(`"reason":"actor nope/0 is not an actor of pipeline '${name}'"`)
    expect(w!.stderr).toContain(`"reason":"generation ${10 ** 15} is more than 1000 lease terms ahead of the leader's (generation ${real})"`)
    expect(w!.stderr).toMatch(/the leader never stated this worker's assignment generation: dropping it and following the leader/)
  }, 240_000)
})
