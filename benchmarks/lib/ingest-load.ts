/**
 * The ingest benchmark's load generator: autocannon 9 POSTing one fixed JSON array of
 * events per request, each request with its own Idempotency-Key (autocannon's `[<id>]`
 * replacement: a fresh hyperid per request). Runs in the calling process (`runLoad`) or, run
 * as a script, in a child that takes its options over IPC and answers with the result.
 */
import { createRequire } from 'node:module'

export interface LoadOptions {
  url: string
  body: string
  connections: number
  /** Requests in all: each connection sends amount / connections, one at a time, and every one is answered before the run ends (a timed run would drop the requests in flight at its end, which the server may still have taken). */
  amount: number
  /** A request not answered after this long counts as a timeout, s. */
  timeoutS: number
}

export interface LoadResult {
  requests: number
  ok: number
  non2xx: number
  statusCodes: Record<string, number>
  errors: number
  timeouts: number
  durationS: number
  /** Answers/s after every connection's first answer (connection set-up left out): what sizes the next run. */
  steadyPerS: number
  latencyP50Ms: number
  latencyP99Ms: number
  latencyMaxMs: number
  /** CPU time of the process running autocannon during the run, s (user + system). */
  clientCpuS: number
}

interface AutocannonResult {
  latency: { p50: number; p99: number; max: number }
  duration: number
  non2xx: number
  errors: number
  timeouts: number
  '2xx': number
  requests: { total: number }
  statusCodeStats: Record<string, { count: number }>
}
interface Tracker {
  on(event: 'response', listener: () => void): void
}
type Autocannon = (opts: Record<string, unknown>, cb: (err: Error | null, result: AutocannonResult) => void) => Tracker

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon

export function runLoad(o: LoadOptions): Promise<LoadResult> {
  const cpu = process.cpuUsage()
  // autocannon notices the end only at its next sample tick (sampleInt): the time is taken
  // here, from the start to the last answer.
  const started = performance.now()
  let lastAnswer = started
  let answers = 0
  let firstRoundAt = started
  return new Promise((resolve, reject) => {
    const tracker = autocannon({
      url: o.url,
      method: 'POST',
      connections: o.connections,
      amount: o.amount,
      timeout: o.timeoutS,
      idReplacement: true,
      headers: { 'content-type': 'application/json', 'idempotency-key': '[<id>]' },
      body: o.body,
      sampleInt: 100,
    }, (err, r) => {
      if (err !== null) return reject(err)
      const used = process.cpuUsage(cpu)
      resolve({
        requests: r.requests.total,
        ok: r['2xx'],
        non2xx: r.non2xx,
        statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats).map(([code, s]) => [code, s.count])),
        errors: r.errors,
        timeouts: r.timeouts,
        durationS: (lastAnswer - started) / 1000,
        steadyPerS: answers > o.connections ? ((answers - o.connections) * 1000) / (lastAnswer - firstRoundAt) : (answers * 1000) / (lastAnswer - started),
        latencyP50Ms: r.latency.p50,
        latencyP99Ms: r.latency.p99,
        latencyMaxMs: r.latency.max,
        clientCpuS: (used.user + used.system) / 1e6,
      })
    })
    tracker.on('response', () => {
      lastAnswer = performance.now()
      if (++answers === o.connections) firstRoundAt = lastAnswer
    })
  })
}

if (process.send !== undefined && process.argv[2] === '--child') {
  process.on('message', (m) => {
    void runLoad(m as LoadOptions).then(
      (result) => process.send!({ result }),
      (err: Error) => process.send!({ error: err.message }),
    )
  })
  process.send({ ready: true })
}
