/**
 * The ingest benchmark's load generator: autocannon 9 POSTing one fixed JSON array of
 * events per request, each request with its own Idempotency-Key (autocannon's `[<id>]`
 * replacement: a fresh hyperid per request). Runs in the calling process (`runLoad`) or, run
 * as a script, in a child that takes its options over IPC and answers with the result.
 *
 * The connections are opened in groups of at most GROUP, one autocannon instance each,
 * started STAGGER_MS apart: thousands of connects at once overflow the server's accept
 * queue (Node's listen backlog is 511) and the refused SYNs come back after 1, 3, 7, 15 s,
 * which measured the kernel's retransmission timer, not the server. The latency
 * percentiles are of 2xx answers on established connections: each connection's first
 * request, which autocannon times from before the connect, is left out (and reported apart).
 */
import { createRequire } from 'node:module'
import { percentile } from './stats.ts'

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
  /** From the start to the last answer, s. */
  durationS: number
  /** Answers/s after `connections` answers (connection set-up left out): what sizes the next run. */
  steadyPerS: number
  latencyP50Ms: number
  latencyP99Ms: number
  latencyMaxMs: number
  /** p99 of each connection's first request (connect included). */
  firstRequestP99Ms: number
  /** CPU time of the process running autocannon during the run, s (user + system). */
  clientCpuS: number
}

interface AutocannonResult {
  non2xx: number
  errors: number
  timeouts: number
  '2xx': number
  requests: { total: number }
  statusCodeStats: Record<string, { count: number }>
}
interface Tracker {
  on(event: 'response', listener: (client: object, status: number, bytes: number, ms: number) => void): void
}
type Autocannon = (opts: Record<string, unknown>, cb: (err: Error | null, result: AutocannonResult) => void) => Tracker

const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon
const GROUP = 100
const STAGGER_MS = 50

export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  const cpu = process.cpuUsage()
  const perConnection = Math.max(1, Math.round(o.amount / o.connections))
  const started = performance.now()
  let lastAnswer = started
  let answers = 0
  let firstRoundAt = started
  const seen = new WeakSet<object>()
  const latencies: number[] = []
  const first: number[] = []
  const groups: number[] = []
  for (let left = o.connections; left > 0; left -= GROUP) groups.push(Math.min(GROUP, left))
  const results = await Promise.all(groups.map((connections, i) => new Promise<AutocannonResult>((resolve, reject) => {
    setTimeout(() => {
      const tracker = autocannon({
        url: o.url,
        method: 'POST',
        connections,
        amount: connections * perConnection,
        timeout: o.timeoutS,
        idReplacement: true,
        headers: { 'content-type': 'application/json', 'idempotency-key': '[<id>]' },
        body: o.body,
        // The run's end is noticed at the next sample tick.
        sampleInt: 100,
      }, (err, r) => (err === null ? resolve(r) : reject(err)))
      tracker.on('response', (client, status, _bytes, ms) => {
        lastAnswer = performance.now()
        if (++answers === o.connections) firstRoundAt = lastAnswer
        if (!seen.has(client)) {
          seen.add(client)
          first.push(ms)
        } else if (status >= 200 && status < 300) {
          latencies.push(ms)
        }
      })
    }, i * STAGGER_MS)
  })))
  const used = process.cpuUsage(cpu)
  const statusCodes: Record<string, number> = {}
  for (const r of results) for (const [code, s] of Object.entries(r.statusCodeStats)) statusCodes[code] = (statusCodes[code] ?? 0) + s.count
  const sum = (f: (r: AutocannonResult) => number): number => results.reduce((n, r) => n + f(r), 0)
  return {
    requests: sum((r) => r.requests.total),
    ok: sum((r) => r['2xx']),
    non2xx: sum((r) => r.non2xx),
    statusCodes,
    errors: sum((r) => r.errors),
    timeouts: sum((r) => r.timeouts),
    durationS: (lastAnswer - started) / 1000,
    steadyPerS: answers > o.connections ? ((answers - o.connections) * 1000) / (lastAnswer - firstRoundAt) : (answers * 1000) / (lastAnswer - started),
    latencyP50Ms: percentile(latencies, 50),
    latencyP99Ms: percentile(latencies, 99),
    latencyMaxMs: latencies.reduce((a, b) => Math.max(a, b), 0),
    firstRequestP99Ms: percentile(first, 99),
    clientCpuS: (used.user + used.system) / 1e6,
  }
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
