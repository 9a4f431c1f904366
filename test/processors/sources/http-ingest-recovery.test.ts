/**
 * HTTP ingest recovery property. A test client sends generated batches (JSON or NDJSON, each
 * with its own Idempotency-Key) to a pipeline run in a child process, and retries every
 * request (connection refused, reset, 503, 409, …) until it gets a 2xx. The child is killed
 * with SIGKILL at generated points: protocol points (a poll, before the pipe commit, after
 * it, after the local state write, before the answers go out, after) counted from hits
 * spread over the traffic, or from outside after a delay; then started again, until every
 * request was answered; then the source is ended and the run finishes. The client keeps
 * sending (the generated batches again, as new requests) until every planned crash fired.
 *
 * The output must hold every event of every request exactly once (what a crash-free run
 * holds, computed from the input), and every 2xx must name the positions that hold its
 * request's events: no request was acknowledged whose events are missing or elsewhere.
 * WEIR_INGEST_PROPERTY_RUNS sets the number of cases (default 7); WEIR_PROPERTY_SEED replays one.
 */
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import { readStageOutput, removeDir, runPipelineFile, tempDataDir, type ProcessCrash } from '../../../testing/index.ts'
import { freePort, sleep } from '../../support/weir-cli.ts'
import { ingestPipeline } from './fixtures/http-ingest-pipeline.ts'

const RUNS = Number(process.env.WEIR_INGEST_PROPERTY_RUNS ?? 7)
const SEED = process.env.WEIR_PROPERTY_SEED === undefined ? undefined : Number(process.env.WEIR_PROPERTY_SEED)
const FIXTURE = join(import.meta.dirname, 'fixtures', 'http-ingest-pipeline.ts')
const EPOCH_MS = 25
const POINTS = ['source-poll', 'before-commit', 'after-pipe-commit', 'after-local-write', 'before-publish', 'after-publish'] as const

interface Batch {
  events: number
  ndjson: boolean
}

interface Plan {
  point: (typeof POINTS)[number] | 'timer'
  /** Where in the traffic: a fraction of the time the client spends sending. */
  at: number
}

interface CaseInput {
  partitions: number
  batches: Batch[]
  /** The client starts request i at i × gapMs after the run started (sooner if late): traffic spans the crashes. */
  gapMs: number
  concurrency: number
}

/** Explicit bounds: fast-check's default size would cap the arrays at 10. */
const caseInput: fc.Arbitrary<CaseInput> = fc.record({
  partitions: fc.integer({ min: 1, max: 3 }),
  batches: fc.array(fc.record({ events: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 20 }) }, { weight: 1, arbitrary: fc.integer({ min: 20, max: 200 }) }), ndjson: fc.boolean() }), { minLength: 1, maxLength: 60, size: 'max' }),
  gapMs: fc.integer({ min: 5, max: 40 }),
  concurrency: fc.integer({ min: 1, max: 6 }),
})

const plans: fc.Arbitrary<Plan[]> = fc.array(fc.record({ point: fc.constantFrom(...POINTS, 'timer' as const), at: fc.integer({ min: 0, max: 1000 }).map((n) => n / 1000) }), { minLength: 1, maxLength: 3 })

interface Event {
  req: number
  n: number
  user: string
}

const eventsOf = (req: number, b: Batch): Event[] => Array.from({ length: b.events }, (_, n) => ({ req, n, user: `u${(req * 7 + n) % 11}` }))

/** The crash for a plan: a protocol point's hit count placed where `at` falls in the traffic (hits come about once an epoch per actor, polls more often), or a kill from outside. */
function crashFor(plan: Plan, trafficMs: number, partitions: number): ProcessCrash {
  const ms = 200 + plan.at * trafficMs
  if (plan.point === 'timer') return { kind: 'timer', afterMs: Math.round(1200 + ms) }
  const perMs = plan.point === 'source-poll' ? partitions / 10 : partitions / EPOCH_MS
  return { kind: 'point', spec: { point: plan.point, hit: Math.max(1, Math.round(ms * perMs)) } }
}

describe('HTTP ingest recovery', () => {
  const dirs: string[] = []
  afterAll(() => {
    for (const d of dirs) removeDir(d)
  })

  it(`every event of every acknowledged request is in the output exactly once after real SIGKILLs at generated points, and every 2xx named where its events are (${RUNS} cases)`, async () => {
    const covered = { cases: 0, requests: 0, extraRequests: 0, events: 0, planned: 0, fired: 0, byPoint: {} as Record<string, number>, retries: 0, replayed: 0, answeredBeforeACrash: 0, maxPartitions: 0, ms: 0 }
    const started = Date.now()
    await fc.assert(
      fc.asyncProperty(caseInput, plans, async (input, crashPlans) => {
        const port = await freePort()
        const dir = tempDataDir('weir-ingest-crash-')
        dirs.push(dir)
        const name = `ingest-${port}`
        const params = { name, port: String(port), partitions: String(input.partitions) }
        const trafficMs = input.batches.length * input.gapMs
        const crashes = crashPlans.map((p) => crashFor(p, trafficMs, input.partitions))
        const answers = new Map<number, { status: number; body: { partition: number; positions: { from: number; to: number }; replayed?: boolean } }>()
        let runIndex = 0
        let crashesDone = false
        // The client: paced from the first run's start, every request retried until a 2xx.
        // Until the planned crashes have all fired it goes on past the generated batches
        // (cycling them): a protocol point is counted in hits, and a run whose traffic ended
        // before its hit would wait forever (a slow start under load leaves less traffic).
        const clientStart = Date.now() + 1000
        let next = 0
        let requested = 0
        const batchAt = (i: number): Batch => input.batches[i % input.batches.length]!
        const sendAll = async (): Promise<void> => {
          const worker = async (): Promise<void> => {
            for (let i = next++; i < input.batches.length || !crashesDone; i = next++) {
              requested = Math.max(requested, i + 1)
              const due = clientStart + i * input.gapMs
              if (due > Date.now()) await sleep(due - Date.now())
              const b = batchAt(i)
              const events = eventsOf(i, b)
              const body = b.ndjson ? events.map((e) => JSON.stringify(e)).join('\n') + '\n' : JSON.stringify(events)
              for (let attempt = 0; ; attempt++) {
                if (attempt > 0) covered.retries++
                const runAtSend = runIndex
                try {
                  const r = await fetch(`http://127.0.0.1:${port}/ingest/events`, { method: 'POST', body, headers: { 'content-type': b.ndjson ? 'application/x-ndjson' : 'application/json', 'idempotency-key': `${name}-${i}` }, signal: AbortSignal.timeout(20_000) })
                  const text = await r.text()
                  if (r.status >= 200 && r.status < 300) {
                    answers.set(i, { status: r.status, body: JSON.parse(text) })
                    if (!crashesDone && runAtSend === runIndex) covered.answeredBeforeACrash++
                    break
                  }
                  expect([409, 429, 503], `request ${i}: ${r.status} ${text}`).toContain(r.status)
                } catch (err) {
                  // The child was killed, or is starting: connection refused or reset.
                  if (!(err instanceof TypeError) && (err as Error).name !== 'TimeoutError') throw err
                }
                await sleep(20 + Math.min(200, attempt * 10))
              }
            }
          }
          await Promise.all(Array.from({ length: input.concurrency }, worker))
        }
        const client = sendAll()
        const fired: ProcessCrash[] = []
        for (const crash of crashes) {
          const r = await runPipelineFile(FIXTURE, { dataDir: dir, params, epochIntervalMs: EPOCH_MS, timeoutMs: 60_000, ...(crash.kind === 'point' ? { crashAt: crash.spec } : { killAfterMs: crash.afterMs }) })
          runIndex++
          if (r.signal === 'SIGKILL' && !r.finished) fired.push(crash)
          else throw new Error(`a crash run ended without its crash (${JSON.stringify(crash)}): code ${r.code}, signal ${r.signal}\n${r.stderr.slice(-2000)}`)
        }
        crashesDone = true
        const last = runPipelineFile(FIXTURE, { dataDir: dir, params, epochIntervalMs: EPOCH_MS, timeoutMs: 120_000 })
        await client
        // Every request answered: end the stream, and the last run finishes.
        for (;;) {
          const r = await fetch(`http://127.0.0.1:${port}/ingest/events/_end`, { method: 'POST' }).catch(() => undefined)
          if (r?.status === 200) break
          await sleep(50)
        }
        const outcome = await last
        expect(outcome.code, outcome.stderr.slice(-2000)).toBe(0)

        const output = await readStageOutput<Event>(ingestPipeline({ name, port }), dir, 'events')
        const sent = Array.from({ length: requested }, (_, i) => batchAt(i))
        const expected = sent.flatMap((b, i) => eventsOf(i, b))
        const id = (e: Event): string => `${e.req}/${e.n}`
        expect(output.map((r) => id(r.value)).sort()).toEqual(expected.map(id).sort())
        // Each 2xx names its partition and positions: those hold exactly its events, in order.
        const byPartition = new Map<number, Event[]>()
        for (const r of [...output].sort((a, b) => a.offset - b.offset)) {
          const list = byPartition.get(r.partition) ?? []
          list.push(r.value)
          byPartition.set(r.partition, list)
        }
        for (const [i, a] of answers) {
          const held = (byPartition.get(a.body.partition) ?? []).slice(a.body.positions.from, a.body.positions.to)
          expect(held.map(id), `request ${i} answered ${JSON.stringify(a.body)}`).toEqual(eventsOf(i, batchAt(i)).map(id))
          if (a.body.replayed === true) covered.replayed++
        }
        expect(answers.size).toBe(requested)
        covered.cases++
        covered.requests += requested
        covered.extraRequests += requested - input.batches.length
        covered.events += expected.length
        covered.planned += crashes.length
        covered.fired += fired.length
        for (const c of fired) {
          const k = c.kind === 'point' ? c.spec.point : 'timer'
          covered.byPoint[k] = (covered.byPoint[k] ?? 0) + 1
        }
        covered.maxPartitions = Math.max(covered.maxPartitions, input.partitions)
        removeDir(dir)
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    )
    covered.ms = Date.now() - started
    console.log(`http ingest recovery property: ${JSON.stringify(covered)}`)
    expect(covered.fired).toBe(covered.planned)
    expect(covered.cases).toBe(RUNS)
  }, 1_800_000)
})
