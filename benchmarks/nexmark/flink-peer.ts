/**
 * The Flink peer (benchmarks/peers/flink-nexmark, Java 17, Maven, Flink from Maven Central):
 * builds its jar when it is missing or older than its sources, runs one query or the
 * generator checksum in a JVM of its own and reads the one JSON line it prints.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { progress } from '../lib/stats.ts'

export const FLINK_PEER_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'peers', 'flink-nexmark')
const JAR = join(FLINK_PEER_DIR, 'target', 'flink-nexmark.jar')
const LIB = join(FLINK_PEER_DIR, 'target', 'lib')
const MAIN_CLASS = 'weir.bench.nexmark.NexmarkJob'

/** What the Flink job reports for one query. */
export interface FlinkQueryReport {
  query: string
  events: number
  outputs: number
  checksum: number
  /** Wall time of env.execute(): MiniCluster start, the job, its final checkpoint, shutdown. */
  seconds: number
  /** The JVM's CPU time (all threads) during env.execute(). */
  cpu_s: number
  net_runtime_ms: number
  peak_rss_mib: number
}

function newestMtime(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs)
  }
  return newest
}

/** Builds the peer with Maven unless its jar is newer than pom.xml and every source file. */
export function buildFlinkPeer(): void {
  const sources = Math.max(statSync(join(FLINK_PEER_DIR, 'pom.xml')).mtimeMs, newestMtime(join(FLINK_PEER_DIR, 'src')))
  if (existsSync(JAR) && existsSync(LIB) && statSync(JAR).mtimeMs >= sources) return
  progress(`building the Flink peer (mvn -q -B package in ${FLINK_PEER_DIR})`)
  const started = performance.now()
  const mvn = spawnSync('mvn', ['-q', '-B', 'package'], { cwd: FLINK_PEER_DIR, encoding: 'utf8' })
  if (mvn.status !== 0) {
    process.stderr.write(`${mvn.stdout ?? ''}${mvn.stderr ?? ''}`)
    throw new Error(`building the Flink peer failed (mvn exited with ${mvn.status ?? mvn.error?.message}); is Maven installed and Maven Central reachable?`)
  }
  progress(`built in ${((performance.now() - started) / 1000).toFixed(1)} s`)
}

/** Peak resident set size of a running process so far, MiB (its VmHWM); NaN once it is gone. */
function peakRssOf(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? NaN : Number(m[1]) / 1024
  } catch {
    return NaN
  }
}

async function runJava(args: string[]): Promise<{ line: Record<string, unknown>; peakRssMiB: number }> {
  // Flink's own warnings (no delegation tokens, a checkpoint declined while a finished task
  // closes) go to stderr at WARN; stdout carries only the JSON line.
  const java = spawn('java', ['-Dorg.slf4j.simpleLogger.defaultLogLevel=error', '-cp', `${JAR}:${LIB}/*`, MAIN_CLASS, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  java.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  let peakRssMiB = 0
  const sampler = setInterval(() => {
    const rss = peakRssOf(java.pid!)
    if (!Number.isNaN(rss)) peakRssMiB = Math.max(peakRssMiB, rss)
  }, 250)
  const killOnExit = (): void => { java.kill('SIGKILL') }
  process.once('exit', killOnExit)
  const code = await new Promise<number | null>((resolve, reject) => {
    java.on('error', reject)
    java.on('exit', (c) => resolve(c))
  }).finally(() => {
    clearInterval(sampler)
    process.off('exit', killOnExit)
  })
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop()
  if (code !== 0 || line === undefined) throw new Error(`the Flink peer exited with code ${code}${line === undefined ? ' and no report' : `: ${line}`}`)
  return { line: JSON.parse(line) as Record<string, unknown>, peakRssMiB }
}

/** Checksum of the Java generator's first `count` events of `seed` (generator.ts checksumOfEvents). */
export async function flinkGeneratorChecksum(seed: number, count: number): Promise<number> {
  const { line } = await runJava(['--checksum', String(count), '--seed', String(seed)])
  return Number(line.checksum)
}

/** Runs one query as a Flink job (MiniCluster, one slot, RocksDB, exactly-once checkpoints every `checkpointMs`). */
export async function runFlinkQuery(query: string, o: { events: number; seed: number; dir: string; checkpointMs: number }): Promise<FlinkQueryReport> {
  const { line, peakRssMiB } = await runJava(['--query', query, '--events', String(o.events), '--seed', String(o.seed), '--dir', o.dir, '--checkpoint-ms', String(o.checkpointMs)])
  return { ...(line as unknown as FlinkQueryReport), peak_rss_mib: peakRssMiB }
}
