/**
 * What the benchmark's child processes run. Each phase is its own process so that its peak
 * RSS and CPU profile are its own, and so a restart can be a real SIGKILL. A child reports
 * to the orchestrator over the IPC channel (`process.send`).
 */
import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { ActorStats } from '../../runtime/actor/actor.ts'
import { stateCodec } from '../../runtime/codec.ts'
import { startEmbedded, type RunningPipeline } from '../../runner/embedded-runner.ts'
import { createLogger } from '../../runtime/log.ts'
import { partitionForKey } from '../../runtime/partitioner.ts'
import { StateStore } from '../../runtime/state/state-store.ts'
import { tuneHeap } from '../../runtime/heap.ts'
import type { BenchOptions } from './options.ts'
import { expectedCount, preloadPipeline, wordCountPipeline, type Count, type WordCountShape } from './pipelines.ts'
import { peakRssMiB, progress, wallMs } from './stats.ts'

/** The RSS split the kernel reports (anonymous memory vs mapped files), in MiB. */
function rssParts(): string {
  try {
    const status = readFileSync('/proc/self/status', 'utf8')
    const kb = (name: string): number => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN)
    return `anon ${Math.round(kb('RssAnon') / 1024)}, file ${Math.round(kb('RssFile') / 1024)}`
  } catch {
    return 'anon ?, file ?'
  }
}

export const THROUGHPUT_PIPELINE = 'bench'
export const RESTART_PIPELINE = 'restart'

export type ChildMessage = Record<string, unknown> & { event: string }

/** Sends a report to the orchestrator; resolves once it is written to the channel. */
function send(msg: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) {
      process.stderr.write(JSON.stringify(msg) + '\n')
      resolve()
    } else {
      process.send(msg, undefined, {}, () => resolve())
    }
  })
}

function shape(o: BenchOptions): WordCountShape {
  return { records: o.records, keys: o.keys, sourcePartitions: o.sourcePartitions, partitions: o.partitions, emit: o.emit }
}

function actorsOf(stats: Record<string, ActorStats>, stage: string): Array<[string, ActorStats]> {
  return Object.entries(stats).filter(([id]) => id.startsWith(stage + '/'))
}

/** Runs `phase` in this (child) process and exits. */
export async function runPhase(o: BenchOptions): Promise<void> {
  const dataDir = o.dataDir
  if (dataDir === undefined) throw new Error('--phase needs --data-dir')
  // The V8 heap settings `weir run` applies on the embedded pipe.
  tuneHeap('embedded')
  switch (o.phase) {
    case 'preload': return preload(o, dataDir)
    case 'count': return count(o, dataDir)
    case 'restart-build': return restartRun(o, dataDir, 'build')
    case 'restart-resume': return restartRun(o, dataDir, 'resume')
    default: throw new Error(`unknown phase ${o.phase}`)
  }
}

/** Fills the keyed input topic: the `words` source alone, run to completion. Not timed as the result. */
async function preload(o: BenchOptions, dataDir: string): Promise<void> {
  const started = performance.now()
  const run = await startEmbedded(preloadPipeline(THROUGHPUT_PIPELINE, shape(o)), { dataDir, epochIntervalMs: o.preloadEpochMs, log: createLogger() })
  const result = await run.done
  // The measured run adds the count stage to this topology on purpose (the source restores as
  // finished, so only the new stage works): forget the recorded topology, or the guard refuses it.
  rmSync(join(dataDir, 'topology.json'), { force: true })
  const words = actorsOf(result.stats, 'words')
  await send({
    event: 'preloaded',
    ms: performance.now() - started,
    records: words.reduce((s, [, a]) => s + a.recordsOut, 0),
    checkpoints: words.reduce((s, [, a]) => s + a.checkpoints, 0),
    peakRssMiB: peakRssMiB(),
  })
}

/**
 * Collects every barrier stall and commit time of the count actors. The stats keep only the
 * last 1024 of each, so they are sampled while the run goes; past 1024 the number of new
 * entries is taken from the growth of `checkpoints`.
 */
class CheckpointLog {
  readonly stalls: number[] = []
  readonly commits: number[] = []
  private readonly seen = new Map<string, { stalls: number; commits: number; checkpoints: number }>()

  collect(stats: Record<string, ActorStats>): void {
    for (const [id, a] of actorsOf(stats, 'count')) {
      const seen = this.seen.get(id) ?? { stalls: 0, commits: 0, checkpoints: 0 }
      const grew = a.checkpoints - seen.checkpoints
      this.stalls.push(...fresh(a.barrierStallsMs, seen.stalls, grew))
      this.commits.push(...fresh(a.commitMs, seen.commits, grew))
      this.seen.set(id, { stalls: a.barrierStallsMs.length, commits: a.commitMs.length, checkpoints: a.checkpoints })
    }
  }
}

function fresh(list: readonly number[], seenLength: number, grew: number): number[] {
  if (list.length < 1024) return list.slice(seenLength)
  return grew > 0 ? list.slice(-grew) : []
}

/**
 * The measured run: the full pipeline on the pre-loaded data dir. The source restores as
 * finished, so only the count stage works; the run ends when it drained its input.
 */
async function count(o: BenchOptions, dataDir: string): Promise<void> {
  const log = new CheckpointLog()
  let firstRecordAt: number | undefined
  const openedAt: number[] = []
  const started = performance.now()
  const cpuStart = process.cpuUsage()
  const run: RunningPipeline = await startEmbedded(
    wordCountPipeline(THROUGHPUT_PIPELINE, {
      ...shape(o),
      observer: {
        opened: () => openedAt.push(performance.now()),
        firstRecord: () => { firstRecordAt ??= performance.now() },
      },
    }),
    { dataDir, epochIntervalMs: o.epochMs, log: createLogger() },
  )
  let lastReport = started
  let lastRecords = 0
  // Where the RSS goes: the JS heap (used, and committed by V8), and memory outside it
  // (Buffers; RocksDB's own and malloc's free lists are in neither).
  let peakHeapUsed = 0
  let peakHeapCommitted = 0
  let peakExternal = 0
  const sampler = setInterval(() => {
    const stats = run.stats()
    log.collect(stats)
    const mem = process.memoryUsage()
    peakHeapUsed = Math.max(peakHeapUsed, mem.heapUsed)
    peakHeapCommitted = Math.max(peakHeapCommitted, mem.heapTotal)
    peakExternal = Math.max(peakExternal, mem.external)
    const now = performance.now()
    if (now - lastReport >= 10_000) {
      const records = actorsOf(stats, 'count').reduce((s, [, a]) => s + a.recordsIn, 0)
      progress(`count: ${records.toLocaleString('en')} records (${Math.round(((records - lastRecords) / (now - lastReport)) * 1000).toLocaleString('en')}/s over the last ${((now - lastReport) / 1000).toFixed(0)} s), rss ${Math.round(process.memoryUsage.rss() / 2 ** 20)} MiB (${rssParts()}; heap committed ${Math.round(mem.heapTotal / 2 ** 20)}, used ${Math.round(mem.heapUsed / 2 ** 20)})`)
      lastReport = now
      lastRecords = records
    }
  }, 100)
  const result = await run.done
  const ended = performance.now()
  const cpu = process.cpuUsage(cpuStart)
  clearInterval(sampler)
  log.collect(result.stats)
  const counters = actorsOf(result.stats, 'count')
  const recordsIn = counters.reduce((s, [, a]) => s + a.recordsIn, 0)
  await send({
    event: 'counted',
    outcome: result.outcome,
    elapsedMs: ended - started,
    processingMs: firstRecordAt === undefined ? 0 : ended - firstRecordAt,
    // All threads of the process (JavaScript, GC, RocksDB's): a figure other work on the machine moves less than wall time.
    cpuS: (cpu.user + cpu.system) / 1e6,
    recordsIn,
    checkpoints: counters.reduce((s, [, a]) => s + a.checkpoints, 0),
    stalls: log.stalls,
    commits: log.commits,
    restoreMs: Math.max(0, ...counters.map(([, a]) => a.restoreMs)),
    errors: counters.reduce((s, [, a]) => s + a.errors + a.deadLettered, 0),
    peakRssMiB: peakRssMiB(),
    peakHeapUsedMiB: peakHeapUsed / 2 ** 20,
    peakHeapCommittedMiB: peakHeapCommitted / 2 ** 20,
    peakExternalMiB: peakExternal / 2 ** 20,
    stateCheck: await checkState(o, dataDir),
  })
}

/** Reads a few words' counts back from the count actors' local RocksDB and compares them with the expected counts. */
async function checkState(o: BenchOptions, dataDir: string): Promise<{ checked: number; wrong: string[] }> {
  const probe = [...new Set([0, 1, Math.floor(o.keys / 2), o.keys - 1].filter((j) => j >= 0 && j < o.keys))]
  const wrong: string[] = []
  for (const j of probe) {
    const word = 'word-' + j
    const partition = partitionForKey(Buffer.from(word), o.partitions)
    const store = await StateStore.open(join(dataDir, 'state', 'count', String(partition)))
    try {
      const [raw] = await store.getMany([Buffer.from('count\u0000' + word)])
      const got = raw ? (stateCodec.decode(raw) as number) : 0
      const want = expectedCount(j, o.records, o.keys)
      if (got !== want) wrong.push(`${word}: ${got}, expected ${want}`)
    } finally {
      await store.close()
    }
  }
  return { checked: probe.length, wrong }
}

/**
 * The restart pipeline: an unbounded source at `restartRate` records/s over `restartKeys`
 * words into the count stage. 'build' runs until the orchestrator SIGKILLs it after a
 * checkpoint that covers every word; 'resume' reports when it restored and when its first
 * checkpoint committed (every count actor committed once), then waits for its SIGKILL.
 */
async function restartRun(o: BenchOptions, dataDir: string, role: 'build' | 'resume'): Promise<void> {
  if (role === 'resume') void send({ event: 'loaded', t: wallMs() })
  const counters: Count[] = []
  let opened = 0
  let firstRecord = false
  const run = await startEmbedded(
    wordCountPipeline(RESTART_PIPELINE, {
      records: Infinity,
      keys: o.restartKeys,
      sourcePartitions: o.sourcePartitions,
      partitions: o.partitions,
      emit: o.emit,
      ratePerSec: o.restartRate,
      counters,
      observer: {
        opened: () => { if (++opened === o.partitions) void send({ event: 'restored', t: wallMs() }) },
        firstRecord: () => {
          if (firstRecord) return
          firstRecord = true
          void send({ event: 'first-record', t: wallMs() })
        },
      },
    }),
    { dataDir, epochIntervalMs: o.epochMs, log: createLogger() },
  )
  void send({ event: 'started', t: wallMs() })
  let lastMin = 0
  let reportedFirst = false
  const poll = setInterval(() => {
    const stats = actorsOf(run.stats(), 'count')
    if (stats.length < o.partitions) return
    const min = Math.min(...stats.map(([, a]) => a.checkpoints))
    if (min <= lastMin) return
    const t = wallMs()
    lastMin = min
    // Records covered by the newest checkpoint every count actor has committed.
    const covered = counters.reduce((s, c) => s + (c.covers[min - 1] ?? 0), 0)
    const recordsIn = stats.reduce((s, [, a]) => s + a.recordsIn, 0)
    if (role === 'build') {
      void send({ event: 'commit', t, checkpoints: min, covered, recordsIn })
    } else if (!reportedFirst) {
      reportedFirst = true
      void send({
        event: 'commit',
        t,
        checkpoints: min,
        covered,
        restoreMs: Math.max(...stats.map(([, a]) => a.restoreMs)),
        replayedChangelogRecords: stats.reduce((s, [, a]) => s + a.replayedChangelogRecords, 0),
        stallMs: Math.max(...stats.map(([, a]) => a.barrierStallsMs[0] ?? 0)),
      })
    }
  }, 1)
  // Runs until killed; a failed run is reported rather than left hanging.
  const outcome = await run.done.then(
    (r): ChildMessage => ({ event: 'ended', outcome: r.outcome }),
    (err: unknown): ChildMessage => ({ event: 'failed', error: String((err as Error)?.stack ?? err) }),
  )
  await send(outcome)
  clearInterval(poll)
}
