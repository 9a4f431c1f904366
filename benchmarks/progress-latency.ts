/**
 * Progress-channel benchmark: with 256 actors publishing progress on NATS, how long from an
 * actor's watermark change until the monitor shows it (p50/p99), and what the monitor
 * costs (CPU, RSS); compared with raw NATS publish → subscribe latency of the same traffic
 * in the same run. Real processes: one `weir monitor`, W `weir run` workers. Prints exactly
 * one JSON line on stdout; progress goes to stderr. See benchmarks/README.md (current results, method notes).
 *
 * @example
 * npm run bench:progress
 * node --import tsx benchmarks/progress-latency.ts --seconds 60 --nats nats://127.0.0.1:4222
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { connect } from '@nats-io/transport-node'
import { natsCeiling } from './lib/progress-nats-ceiling.ts'
import { parseProgressOptions, type ProgressBenchOptions } from './lib/progress-options.ts'
import { clockTicks, CpuWindow, killAll, ROOT, rssMiB, startWeirProcess, stopAll, type WeirProcess } from './lib/progress-procs.ts'
import { git } from './lib/run-info.ts'
import { percentile, progress, round } from './lib/stats.ts'

const PIPELINE_FILE = join(ROOT, 'benchmarks/lib/progress-pipeline.ts')
const GOAL = { p99_ms: 100, monitor_cpu: 0.05 }
/** Set on SIGINT/SIGTERM: what fails afterwards (the children are going away) is not a finding. */
let interrupted = false

/** The fields of an `/api/actors` row the benchmark reads. */
interface ActorRow {
  cluster: string
  pipeline: string
  actor: string
  startedAt: number
  /** When the newest event was published (worker clock) and applied (monitor clock). */
  at: number
  seenAt: number
  state: 'ok' | 'missing'
  watermarkChangedAt: number | null
  watermarkSeenAt: number
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** Fails clearly when nothing answers as NATS at `url`. */
async function checkNats(url: string): Promise<void> {
  try {
    const nc = await connect({ servers: url, timeout: 3000, reconnect: false })
    await nc.close()
  } catch (err) {
    throw new Error(`NATS is not reachable at ${url} (${(err as Error).message}); start it with scripts/services.sh up nats, or pass --nats URL`)
  }
}

async function actorRows(monitorUrl: string, cluster: string): Promise<ActorRow[]> {
  const res = await fetch(`${monitorUrl}api/actors`, { signal: AbortSignal.timeout(5000) })
  if (!res.ok) throw new Error(`GET ${monitorUrl}api/actors: HTTP ${res.status}`)
  const body = (await res.json()) as { actors: ActorRow[] }
  return body.actors.filter((a) => a.cluster === cluster)
}

/** Waits until the monitor hears every actor of every worker. */
async function allActorsKnown(monitorUrl: string, cluster: string, actors: number, workers: WeirProcess[], timeoutMs: number): Promise<number> {
  const t0 = Date.now()
  for (;;) {
    const rows = await actorRows(monitorUrl, cluster)
    const ok = rows.filter((a) => a.state === 'ok' && a.watermarkChangedAt !== null).length
    if (ok >= actors) return Date.now() - t0
    for (const w of workers) if (w.child.exitCode !== null) throw new Error(`${w.name} exited (code ${w.child.exitCode}); stderr:\n${w.stderrTail()}`)
    if (Date.now() - t0 > timeoutMs) throw new Error(`the monitor knows ${ok} of ${actors} actors with a watermark after ${timeoutMs} ms`)
    await sleep(500)
  }
}

/** Rate and mean size of the progress messages the workers publish, over `seconds`. */
async function progressTraffic(url: string, cluster: string, seconds: number): Promise<{ perS: number; bytes: number }> {
  const nc = await connect({ servers: url, name: 'weir-bench-progress-count' })
  let n = 0
  let bytes = 0
  try {
    nc.subscribe(`weir.${cluster}.*.progress`, {
      callback: (err, msg) => {
        if (err !== null) return
        n++
        bytes += msg.data.length
      },
    })
    await nc.flush()
    const t0 = performance.now()
    await sleep(seconds * 1000)
    return { perS: n / ((performance.now() - t0) / 1000), bytes: n === 0 ? 0 : bytes / n }
  } finally {
    await nc.close().catch(() => undefined)
  }
}

/** What the window's `/api/actors` reads found. */
interface Sampled {
  /** watermarkSeenAt − watermarkChangedAt per change: the view delay. */
  delays: number[]
  /** Its two parts, for changes whose event was still the newest when read: in the worker (at − changedAt) and on the way (seenAt − at). */
  publishWaits: number[]
  deliveries: number[]
  reads: number
  slowestReadMs: number
}

/**
 * Reads `/api/actors` every `sampleMs` for `seconds`: one view delay per actor instance and
 * distinct `watermarkChangedAt` that changed inside the window. The first time the monitor
 * saw an actor is not a change it was told of, so changes before the window are left out.
 */
async function sampleViewDelays(monitorUrl: string, cluster: string, o: ProgressBenchOptions): Promise<Sampled> {
  const seen = new Set<string>()
  const out: Sampled = { delays: [], publishWaits: [], deliveries: [], reads: 0, slowestReadMs: 0 }
  const windowStart = Date.now()
  const end = performance.now() + o.seconds * 1000
  while (performance.now() < end) {
    const t = performance.now()
    for (const a of await actorRows(monitorUrl, cluster)) {
      if (a.watermarkChangedAt === null || a.watermarkChangedAt < windowStart) continue
      const key = `${a.pipeline}/${a.actor}/${a.startedAt}/${a.watermarkChangedAt}`
      if (seen.has(key)) continue
      seen.add(key)
      out.delays.push(a.watermarkSeenAt - a.watermarkChangedAt)
      // The newest event is the one that carried the change (no heartbeat came after it).
      if (a.seenAt === a.watermarkSeenAt) {
        out.publishWaits.push(a.at - a.watermarkChangedAt)
        out.deliveries.push(a.watermarkSeenAt - a.at)
      }
    }
    out.reads++
    const took = performance.now() - t
    out.slowestReadMs = Math.max(out.slowestReadMs, took)
    await sleep(Math.max(0, o.sampleMs - took))
  }
  return out
}

async function main(o: ProgressBenchOptions): Promise<number> {
  const started = performance.now()
  const runId = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`
  const cluster = `bench${runId}`
  const root = mkdtempSync(join(tmpdir(), 'weir-bench-progress-'))
  let cleaned = false
  const cleanup = async (): Promise<void> => {
    if (cleaned) return
    cleaned = true
    await stopAll()
    if (o.keep) progress(`kept ${root}`)
    else rmSync(root, { recursive: true, force: true })
  }
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      interrupted = true
      progress(`${sig}: stopping the children`)
      void cleanup().finally(() => process.exit(130))
    })
  }
  // Whatever happens, no child outlives the benchmark.
  process.on('exit', killAll)
  const loadAtStart = loadavg()[0]!
  try {
    await checkNats(o.nats)
    const perWorker = o.actors / o.workers
    const partitions = perWorker / 2

    const nodeArgs: string[] = []
    if (o.cpuProfDir !== undefined) {
      mkdirSync(o.cpuProfDir, { recursive: true })
      nodeArgs.push('--cpu-prof', '--cpu-prof-dir', resolve(o.cpuProfDir))
    }
    const monitor = startWeirProcess('weir monitor', ['monitor', '--bus', o.nats, '--cluster', cluster, '--port', '0'], { nodeArgs, env: { WEIR_LOG_LEVEL: 'warn' } })
    const [, monitorUrl] = await monitor.waitFor(/weir monitor: dashboard (http:\/\/\S+\/) /, 20_000)
    // Before any pipeline reports: what the monitor process costs on its own.
    const idleRss = rssMiB(monitor.pid).rss
    progress(`monitor pid ${monitor.pid} at ${monitorUrl} (cluster ${cluster}), ${idleRss.toFixed(0)} MiB before any pipeline`)

    const workers: WeirProcess[] = []
    for (let w = 0; w < o.workers; w++) {
      const name = `progress-${w}`
      workers.push(startWeirProcess(`weir run ${name}`, [
        'run', PIPELINE_FILE, '--bus', o.nats, '--cluster', cluster, '--epoch-ms', String(o.epochMs), '-q',
        '--data-dir', join(root, name), '--param', `name=${name}`, '--param', `partitions=${partitions}`, '--param', `rate=${o.rate}`,
      ]))
    }
    progress(`${o.workers} workers × ${perWorker} actors (${partitions} source + ${partitions} forward partitions, ${o.rate} records/s each, epoch ${o.epochMs} ms): pids ${workers.map((w) => w.pid).join(', ')}`)
    const knownMs = await allActorsKnown(monitorUrl!, cluster, o.actors, workers, 60_000)
    progress(`the monitor knows all ${o.actors} actors after ${(knownMs / 1000).toFixed(1)} s; warming up for ${o.warmupS} s`)
    const traffic = await progressTraffic(o.nats, cluster, o.warmupS)
    progress(`progress traffic: ${traffic.perS.toFixed(0)} messages/s (${(traffic.perS / o.actors).toFixed(2)} per actor), ${traffic.bytes.toFixed(0)} bytes each`)

    const ticks = clockTicks()
    const pids = [monitor.pid, ...workers.map((w) => w.pid)]
    progress(`measuring for ${o.seconds} s: GET /api/actors every ${o.sampleMs} ms`)
    const cpu = new CpuWindow(pids, ticks)
    const sampled = await sampleViewDelays(monitorUrl!, cluster, o)
    const cpuShares = cpu.end()
    const rss = rssMiB(monitor.pid)
    const monitorCpu = cpuShares.get(monitor.pid)!
    const workersCpu = workers.reduce((s, w) => s + cpuShares.get(w.pid)!, 0)
    const delays = sampled.delays
    if (delays.length === 0) throw new Error('no watermark change was seen in the measurement window')
    const [p50, p99] = [percentile(delays, 50), percentile(delays, 99)]
    progress(`view delay over ${delays.length} changes: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${Math.max(...delays).toFixed(1)} ms; monitor ${(monitorCpu * 100).toFixed(1)}% of a core, ${rss.rss.toFixed(0)} MiB`)
    progress(`of which in the worker (event at − watermarkChangedAt): p50 ${percentile(sampled.publishWaits, 50).toFixed(1)} ms, p99 ${percentile(sampled.publishWaits, 99).toFixed(1)} ms; NATS + monitor (watermarkSeenAt − at): p50 ${percentile(sampled.deliveries, 50).toFixed(1)} ms, p99 ${percentile(sampled.deliveries, 99).toFixed(1)} ms (${sampled.deliveries.length} changes)`)

    let quietCpu: number | null = null
    if (o.quietS > 0) {
      const quiet = new CpuWindow([monitor.pid], ticks)
      await sleep(o.quietS * 1000)
      quietCpu = quiet.end().get(monitor.pid)!
      progress(`monitor without API reads: ${(quietCpu * 100).toFixed(1)}% of a core over ${o.quietS} s`)
    }

    progress(`raw NATS ceiling: ${o.actors} publishers on ${o.workers} connections, ${(traffic.perS / o.actors).toFixed(2)} messages/s each, ${traffic.bytes.toFixed(0)} bytes, ${o.ceilingS} s (the pipelines keep running)`)
    const ceiling = await natsCeiling({
      servers: o.nats,
      subject: `bench.${runId}.ceiling`,
      actors: o.actors,
      workers: o.workers,
      perActorPerS: traffic.perS / o.actors,
      bytes: Math.round(traffic.bytes),
      seconds: o.ceilingS,
    })
    const [natsP50, natsP99] = [percentile(ceiling.latenciesMs, 50), percentile(ceiling.latenciesMs, 99)]
    progress(`raw NATS: ${ceiling.received} of ${ceiling.sent} messages, p50 ${natsP50.toFixed(2)} ms, p99 ${natsP99.toFixed(2)} ms`)

    const result = {
      bench: 'progress-latency',
      date: new Date().toISOString().slice(0, 10),
      actors: o.actors,
      workers: o.workers,
      epoch_ms: o.epochMs,
      seconds: o.seconds,
      samples: delays.length,
      p50_ms: round(p50),
      p99_ms: round(p99),
      max_ms: round(Math.max(...delays)),
      p90_ms: round(percentile(delays, 90)),
      p95_ms: round(percentile(delays, 95)),
      share_over_10ms: round(delays.filter((d) => d > 10).length / delays.length),
      publish_waited_share: round(sampled.publishWaits.filter((d) => d > 1).length / Math.max(1, sampled.publishWaits.length)),
      publish_wait_p50_ms: round(percentile(sampled.publishWaits, 50)),
      publish_wait_p99_ms: round(percentile(sampled.publishWaits, 99)),
      delivery_p50_ms: round(percentile(sampled.deliveries, 50)),
      delivery_p99_ms: round(percentile(sampled.deliveries, 99)),
      monitor_cpu: round(monitorCpu),
      monitor_cpu_quiet: quietCpu === null ? null : round(quietCpu),
      monitor_rss_mib: round(rss.rss),
      monitor_peak_rss_mib: round(rss.peak),
      monitor_rss_idle_mib: round(idleRss),
      nats_p50_ms: round(natsP50),
      nats_p99_ms: round(natsP99),
      nats_samples: ceiling.received,
      ratio_p99: round(natsP99 / p99),
      goal: GOAL,
      // monitor_cpu includes the benchmark's own /api/actors reads; monitor_cpu_quiet has none.
      met: { p99_ms: p99 <= GOAL.p99_ms, monitor_cpu: monitorCpu < GOAL.monitor_cpu, monitor_cpu_quiet: quietCpu === null ? null : quietCpu < GOAL.monitor_cpu },
      progress_msgs_per_s: round(traffic.perS),
      progress_msg_bytes: Math.round(traffic.bytes),
      api_reads: sampled.reads,
      api_read_max_ms: round(sampled.slowestReadMs),
      workers_cpu: round(workersCpu),
      cpus: cpus().length,
      load_avg_1m_start: round(loadAtStart),
      load_avg_1m_end: round(loadavg()[0]!),
      node: process.version,
      git_rev: git(['rev-parse', '--short', 'HEAD']),
      uncommitted_changes: git(['status', '--porcelain', '--', 'runtime', 'monitor']) !== '',
      total_s: round((performance.now() - started) / 1000),
    }
    await cleanup()
    // The monitor and the runs stop on SIGTERM with exit 0; anything else is a finding.
    for (const p of [monitor, ...workers]) {
      const { code, signal } = await p.exited
      if (code !== 0) progress(`${p.name} exited with code ${code} (signal ${signal}); stderr:\n${p.stderrTail()}`)
    }
    if (o.cpuProfDir !== undefined) progress(`monitor CPU profile in ${resolve(o.cpuProfDir)}`)
    process.stdout.write(JSON.stringify(result) + '\n')
    return 0
  } finally {
    await cleanup()
  }
}

try {
  process.exitCode = await main(parseProgressOptions(process.argv.slice(2)))
} catch (err) {
  if (!interrupted) progress(`FAILED: ${String((err as Error)?.stack ?? err)}`)
  process.exitCode = 1
}
