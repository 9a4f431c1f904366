/**
 * HTTP ingest throughput and ack latency: autocannon POSTs JSON arrays of events, each request
 * with its own Idempotency-Key, to `HttpIngestSource` in `committed` mode (a 200 only once the
 * checkpoint holding the request's events committed) on the embedded pipe, once per
 * checkpoint interval (100 ms and 1000 ms by default), and, in the same run and with the same
 * autocannon settings, to the ceiling: the same fastify server doing the same work before the
 * hand-over to an actor (body read, JSON parse, key field, fingerprint) and answering 200 at
 * once (lib/ingest-ceiling.ts). `ratio_*` = weir's acknowledged events/s ÷ the ceiling's.
 * weir runs in a child process (weir/testing's child runner), the ceiling server in another,
 * and the load generator in this one (or, with --client child, in a third).
 *
 * Every request is answered before a run ends (autocannon's `amount`, sized from a warm-up
 * to last about --duration-s), and at the end the stream's committed output must hold exactly
 * 2xx-answered requests × events per request (warm-up included), the ceiling must have taken
 * as many, and no answer may be other than 2xx; else exit 1. Prints exactly one JSON line on
 * stdout; progress goes to stderr.
 *
 * @example
 * npm run bench:ingest
 * node --import tsx benchmarks/ingest.ts --connections 2000 --duration-s 20 --epochs 1000
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, openSync, closeSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { readStageOutput } from '../testing/index.ts'
import { INGEST_STAGE, ingestBenchPipeline } from './lib/ingest-pipeline.ts'
import { runLoad, type LoadOptions, type LoadResult } from './lib/ingest-load.ts'
import { countArg, readArgs, envValue } from './lib/options.ts'
import { printResult, startRunInfo } from './lib/run-info.ts'
import { progress, round } from './lib/stats.ts'
import { startChild, killChildren } from './lib/children.ts'

const USAGE = `usage: node --import tsx benchmarks/ingest.ts [options]
  --connections LIST   concurrent connections of each scenario, each with one request in flight, paired
                       with --epochs (default 300,2000: enough for the server, not the client, to limit)
  --events N           events per request (default 100)
  --event-bytes B      bytes of each event's JSON, about (default 100)
  --duration-s S       measured time per scenario, about: sets the request count from a warm-up (default 15)
  --epochs LIST        checkpoint intervals of the weir scenarios, ms (default 100,1000)
  --partitions P       source actors = partitions of the stream (default 2)
  --only WHAT          ceiling: only the ceilings (to compare --client in-process and child); weir: no ceilings
  --client WHERE       the load generator runs in-process or in a child (default in-process)
  --cpu-prof-dir DIR   write CPU profiles of the weir and ceiling server processes (every thread) under DIR
`
const args = readArgs(process.argv.slice(2), ['connections', 'events', 'event-bytes', 'duration-s', 'epochs', 'partitions', 'client', 'cpu-prof-dir', 'only'], [], USAGE)
const EVENTS = countArg(args, process.env, 'events') ?? 100
const EVENT_BYTES = countArg(args, process.env, 'event-bytes') ?? 100
const DURATION_S = countArg(args, process.env, 'duration-s') ?? 15
const PARTITIONS = countArg(args, process.env, 'partitions') ?? 2
const EPOCHS = (args.values.get('epochs') ?? envValue(process.env, 'epochs') ?? '100,1000').split(',').map((s) => Number(s.trim()))
const CLIENT = args.values.get('client') ?? envValue(process.env, 'client') ?? 'in-process'
const CPU_PROF_DIR = args.values.get('cpu-prof-dir')
const CONNECTIONS = (args.values.get('connections') ?? envValue(process.env, 'connections') ?? '300,2000').split(',').map((s) => Number(s.trim()))
if (CONNECTIONS.length !== EPOCHS.length || CONNECTIONS.some((c) => !Number.isInteger(c) || c < 1)) throw new Error(`--connections: one count per checkpoint interval of --epochs (${EPOCHS.join(',')}), got '${CONNECTIONS.join(',')}'`)
if (EPOCHS.some((e) => !Number.isInteger(e) || e < 1)) throw new Error(`--epochs: checkpoint intervals in ms, like 100,1000; got '${args.values.get('epochs')}'`)
if (CLIENT !== 'in-process' && CLIENT !== 'child') throw new Error(`--client: in-process or child, got '${CLIENT}'`)
const WARMUP_REQUESTS_PER_CONNECTION = 2
const WARMUP_S = 3
const info = startRunInfo(['runtime', 'processors', 'benchmarks', 'testing'])
const here = dirname(fileURLToPath(import.meta.url))
const root = resolve(here, '..')

/** Event i of a request: ~EVENT_BYTES of JSON, keyed by `user`. */
function event(i: number): Record<string, unknown> {
  const e = { user: `u${i % 97}`, seq: i, kind: 'page_view', path: '/products/12345', at: 1_767_225_600_000 + i, pad: '' }
  e.pad = 'x'.repeat(Math.max(0, EVENT_BYTES - JSON.stringify(e).length))
  return e
}
const BODY = JSON.stringify(Array.from({ length: EVENTS }, (_, i) => event(i)))

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer()
    s.once('error', rej)
    s.listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => res(typeof a === 'object' && a !== null ? a.port : 0))
    })
  })
}

/** CPU seconds (user + system) a process used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}

/** The kernel's count of connections dropped because a listen queue was full (machine-wide, /proc/net/netstat). */
function listenOverflows(): number {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'))
  const names = lines[0]?.split(' ') ?? []
  const values = lines[1]?.split(' ') ?? []
  const i = names.indexOf('ListenOverflows')
  return i < 0 ? NaN : Number(values[i])
}

async function waitListening(url: string, child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server process exited (code ${child.exitCode}) before listening`)
    try {
      await fetch(url)
      return
    } catch {
      if (Date.now() > until) throw new Error(`${url}: not listening after ${timeoutMs} ms`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
}

// The load generator: here, or in a child taking its options over IPC.
let loadChild: ReturnType<typeof startChild> | undefined
async function load(o: LoadOptions): Promise<LoadResult> {
  if (CLIENT === 'in-process') return runLoad(o)
  loadChild ??= startChild(join(here, 'lib/ingest-load.ts'), ['--child'])
  await loadChild.waitFor((m) => (m as { ready?: boolean }).ready === true, 30_000)
  const n = loadChild.messages.length
  loadChild.process.send(o)
  const m = (await loadChild.waitFor((msg) => loadChild!.messages.indexOf(msg) >= n && ('result' in msg || 'error' in msg), 600_000)) as { result?: LoadResult; error?: string }
  if (m.error !== undefined) throw new Error(`load generator: ${m.error}`)
  return m.result!
}

interface Measured {
  warmup: LoadResult
  run: LoadResult
  serverCpuS: number
  listenOverflows: number
}

/** A warm-up of a few requests per connection, then a run sized from its rate to last about DURATION_S; the server's CPU over the run. */
async function measure(url: string, pid: number, connections: number, label: string): Promise<Measured> {
  const base = { url, body: BODY, connections, timeoutS: 60 }
  // Two warm-ups: the first connects and warms the JIT (its rate is low), the second, sized
  // for about WARMUP_S, gives the rate that sizes the measured run.
  const first = await load({ ...base, amount: connections * WARMUP_REQUESTS_PER_CONNECTION })
  const second = await load({ ...base, amount: connections * Math.max(2, Math.round((first.steadyPerS * WARMUP_S) / connections)) })
  const warmup = { ...second, ok: first.ok + second.ok, non2xx: first.non2xx + second.non2xx, errors: first.errors + second.errors, requests: first.requests + second.requests, statusCodes: { ...first.statusCodes, ...second.statusCodes } }
  const perConnection = Math.max(2, Math.round((second.steadyPerS * DURATION_S) / connections))
  progress(`${label}: warm-up ${warmup.requests} requests in ${round(warmup.durationS)} s (${Math.round(warmup.steadyPerS)}/s once connected); measuring ${perConnection * connections} requests`)
  const cpu = cpuSeconds(pid)
  const overflows = listenOverflows()
  const run = await load({ ...base, amount: perConnection * connections })
  const serverCpuS = cpuSeconds(pid) - cpu
  const overflowed = listenOverflows() - overflows
  progress(`${label}: ${Math.round(run.ok / run.durationS)} requests/s in ${round(run.durationS)} s, p50 ${round(run.latencyP50Ms)} ms, p99 ${round(run.latencyP99Ms)} ms (first requests ${round(run.firstRequestP99Ms)}), non-2xx ${run.non2xx}, errors ${run.errors}, server CPU ${round(serverCpuS / run.durationS)} cores, client ${round(run.clientCpuS / run.durationS)}`)
  return { warmup, run, serverCpuS, listenOverflows: overflowed }
}

function figures(m: Measured, connections: number): Record<string, unknown> {
  const r = m.run
  return {
    connections,
    events_per_s: Math.round((r.ok * EVENTS) / r.durationS),
    requests_per_s: Math.round(r.ok / r.durationS),
    ack_p50_ms: round(r.latencyP50Ms),
    ack_p99_ms: round(r.latencyP99Ms),
    ack_max_ms: round(r.latencyMaxMs),
    first_request_p99_ms: round(r.firstRequestP99Ms),
    requests: r.requests,
    non_2xx: r.non2xx,
    status_codes: r.statusCodes,
    errors: r.errors,
    duration_s: round(r.durationS),
    // Little's law: the requests in flight on average (connections the run kept busy).
    in_flight_avg: round((r.ok / r.durationS) * (r.latencyP50Ms / 1000)),
    cpu_s_per_1k_requests: round((m.serverCpuS * 1000) / r.ok),
    server_cpu_cores: round(m.serverCpuS / r.durationS),
    // Connects the kernel dropped (machine-wide) during the run: a full accept queue, whose SYNs come back after 1, 3, 7… s.
    listen_overflows: m.listenOverflows,
    client_cpu_cores: round(r.clientCpuS / r.durationS),
  }
}

const failures: string[] = []
function check(ok: boolean, what: string): void {
  if (!ok) failures.push(what)
}

async function ceiling(connections: number): Promise<Record<string, unknown>> {
  const child = startChild(join(here, 'lib/ingest-ceiling.ts'), [String(PARTITIONS)], { nodeArgs: CPU_PROF_DIR === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', join(CPU_PROF_DIR, `ceiling-${connections}`)] })
  try {
    const { port } = (await child.waitFor((m) => 'port' in m, 60_000)) as unknown as { port: number }
    const m = await measure(`http://127.0.0.1:${port}/ingest/events`, child.process.pid!, connections, `ceiling, ${connections} connections`)
    child.process.send('count')
    const { events } = (await child.waitFor((msg) => 'events' in msg, 10_000)) as unknown as { events: number }
    const expected = (m.warmup.ok + m.run.ok) * EVENTS
    check(events === expected, `ceiling: the server took ${events} events, expected ${expected}`)
    check(m.run.non2xx + m.warmup.non2xx + m.run.errors + m.warmup.errors === 0, `ceiling: ${m.run.non2xx + m.warmup.non2xx} non-2xx answers, ${m.run.errors + m.warmup.errors} errors`)
    return { ...figures(m, connections), events_taken: events, events_expected: expected }
  } finally {
    child.process.send('close')
    await child.exited
  }
}

async function weir(epochMs: number, connections: number, dir: string): Promise<Record<string, unknown>> {
  const port = await freePort()
  const params = { name: `bench-ingest-${epochMs}`, port: String(port), partitions: String(PARTITIONS), ack: 'committed' }
  const dataDir = join(dir, `weir-${epochMs}`)
  const logFile = join(dir, `weir-${epochMs}.log`)
  const out = openSync(logFile, 'w')
  const prof = [
    ...(CPU_PROF_DIR === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', join(CPU_PROF_DIR, `weir-${epochMs}`)]),
    // The event loop's delay in weir's process, written to its log at exit.
    '--import', join(here, 'lib/loop-delay.ts'),
  ]
  const child = spawn(process.execPath, [...prof, '--import', 'tsx', join(root, 'testing/child-runner.ts'), join(here, 'lib/ingest-pipeline.ts'), dataDir, JSON.stringify(params), String(epochMs)], { stdio: ['ignore', out, out] })
  closeSync(out)
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)))
  try {
    const url = `http://127.0.0.1:${port}/ingest/${INGEST_STAGE}`
    await waitListening(`http://127.0.0.1:${port}/`, child)
    const m = await measure(url, child.pid!, connections, `weir ${epochMs} ms, ${connections} connections`)
    const end = await fetch(`${url}/_end`, { method: 'POST' })
    if (end.status !== 200) throw new Error(`POST ${url}/_end answered ${end.status}: ${await end.text()}`)
    const code = await exited
    if (code !== 0) throw new Error(`weir exited with code ${code}: ${readFileSync(logFile, 'utf8').slice(-4000)}`)
    const loopDelay = /\{"loop-delay":(\{[^}]*\})\}/.exec(readFileSync(logFile, 'utf8'))
    const output = await readStageOutput(ingestBenchPipeline(params), dataDir, INGEST_STAGE)
    const expected = (m.warmup.ok + m.run.ok) * EVENTS
    check(output.length === expected, `weir ${epochMs} ms: ${output.length} events in the stream's output, expected ${expected} (2xx requests × ${EVENTS})`)
    check(m.run.non2xx + m.warmup.non2xx + m.run.errors + m.warmup.errors === 0, `weir ${epochMs} ms: non-2xx ${JSON.stringify({ ...m.warmup.statusCodes, ...m.run.statusCodes })}, ${m.run.errors + m.warmup.errors} errors`)
    progress(`weir ${epochMs} ms: the output holds ${output.length} events, expected ${expected}`)
    // If every request took the goal latency, the connections could carry this many requests/s:
    // a rate well below it means the server, not the client's concurrency, limited.
    const concurrencyBound = connections / ((epochMs + 50) / 1000)
    return { ...figures(m, connections), loop_delay: loopDelay === null ? null : JSON.parse(loopDelay[1]!), concurrency_bound_requests_per_s: Math.round(concurrencyBound), output_events: output.length, output_expected: expected, output_exact: output.length === expected, ack_p99_goal_ms: epochMs + 50 }
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL')
  }
}

const dir = mkdtempSync(join(tmpdir(), 'weir-bench-ingest-'))
process.on('SIGINT', () => {
  killChildren()
  process.exit(130)
})
try {
  const result: Record<string, unknown> = {
    bench: 'ingest',
    pipe: 'embedded',
    ack: 'committed',
    events_per_request: EVENTS,
    request_bytes: Buffer.byteLength(BODY),
    duration_s_target: DURATION_S,
    partitions: PARTITIONS,
    client: `autocannon 9.0.0, ${CLIENT}`,
  }
  const ceilings = new Map<number, Record<string, unknown>>()
  for (const c of new Set(CONNECTIONS)) {
    if (args.values.get('only') === 'weir') break
    const ceil = await ceiling(c)
    ceilings.set(c, ceil)
    result[`ceiling_${c}c`] = ceil
  }
  for (const [i, epochMs] of EPOCHS.entries()) {
    if (args.values.get('only') === 'ceiling') break
    const w = await weir(epochMs, CONNECTIONS[i]!, dir)
    result[`weir_${epochMs}ms`] = w
    const ceil = ceilings.get(CONNECTIONS[i]!)
    if (ceil !== undefined) result[`ratio_${epochMs}ms`] = round((w.events_per_s as number) / (ceil.events_per_s as number))
    result[`p99_goal_met_${epochMs}ms`] = (w.ack_p99_ms as number) <= epochMs + 50
  }
  printResult(result, info, failures)
} finally {
  if (loadChild !== undefined) loadChild.process.kill()
  rmSync(dir, { recursive: true, force: true })
}
