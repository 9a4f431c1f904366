/**
 * The Kafka Streams peer (benchmarks/peers/kafka-streams-wordcount, Java 17, Maven): builds
 * its jar when it is missing or older than its sources, runs it on the benchmark's topics and
 * reads the one JSON line it prints.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { progress } from './stats.ts'

export const PEER_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'peers', 'kafka-streams-wordcount')
const JAR = join(PEER_DIR, 'target', 'kafka-streams-wordcount.jar')
const LIB = join(PEER_DIR, 'target', 'lib')
const MAIN_CLASS = 'weir.bench.WordCount'

/** The peer's report (its JSON line). */
export interface StreamsReport {
  records: number
  words: number
  /** First input record processed → the first commit after the last word was counted. */
  seconds: number
  rate: number
  commits: number
  /** JVM start → the client reached RUNNING. */
  startup_s: number
  first_record_after_start_s: number
  last_word_to_commit_s: number
}

function newestSourceMtime(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceMtime(path))
    else newest = Math.max(newest, statSync(path).mtimeMs)
  }
  return newest
}

/** Builds the peer with Maven unless its jar is newer than pom.xml and every source file. */
export function buildStreamsPeer(): void {
  const sources = Math.max(statSync(join(PEER_DIR, 'pom.xml')).mtimeMs, newestSourceMtime(join(PEER_DIR, 'src')))
  if (existsSync(JAR) && existsSync(LIB) && statSync(JAR).mtimeMs >= sources) return
  progress(`building the Kafka Streams peer (mvn -q -B package in ${PEER_DIR})`)
  const started = performance.now()
  const mvn = spawnSync('mvn', ['-q', '-B', 'package'], { cwd: PEER_DIR, encoding: 'utf8' })
  if (mvn.status !== 0) {
    // Maven's output goes to our stderr: stdout carries only the JSON result.
    process.stderr.write(`${mvn.stdout ?? ''}${mvn.stderr ?? ''}`)
    throw new Error(`building the Kafka Streams peer failed (mvn exited with ${mvn.status ?? mvn.error?.message}); is Maven installed and Maven Central reachable?`)
  }
  progress(`built in ${((performance.now() - started) / 1000).toFixed(1)} s`)
}

export interface StreamsRunOptions {
  brokers: string[]
  inputTopic: string
  outputTopic: string
  applicationId: string
  stateDir: string
  lines: number
  words: number
  cacheBytes: number
  timeoutS: number
}

const live = new Set<ChildProcess>()

/** SIGKILLs a peer still running (on an interrupted benchmark). */
export function killStreamsPeers(): void {
  for (const p of live) p.kill('SIGKILL')
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

/** Runs the peer to the end of its input; rejects if it fails or prints no report. */
export async function runStreamsPeer(o: StreamsRunOptions): Promise<StreamsReport & { peakRssMiB: number }> {
  const args = [
    '-cp', `${JAR}:${LIB}/*`, MAIN_CLASS,
    '--bootstrap', o.brokers.join(','), '--input', o.inputTopic, '--output', o.outputTopic,
    '--application-id', o.applicationId, '--state-dir', o.stateDir,
    '--lines', String(o.lines), '--words', String(o.words),
    '--cache-bytes', String(o.cacheBytes), '--timeout-s', String(o.timeoutS),
  ]
  const java = spawn('java', args, { stdio: ['ignore', 'pipe', 2] })
  live.add(java)
  let stdout = ''
  java.stdout!.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  let peakRssMiB = 0
  const sampler = setInterval(() => {
    const rss = peakRssOf(java.pid!)
    if (!Number.isNaN(rss)) peakRssMiB = Math.max(peakRssMiB, rss)
  }, 250)
  const code = await new Promise<number | null>((resolve, reject) => {
    java.on('error', reject)
    java.on('exit', (c) => resolve(c))
  }).finally(() => {
    clearInterval(sampler)
    live.delete(java)
  })
  const line = stdout.trim().split('\n').filter((l) => l.startsWith('{')).pop()
  if (code !== 0 || line === undefined) throw new Error(`the Kafka Streams peer exited with code ${code}${line === undefined ? ' and no report' : `: ${line}`}`)
  return { ...(JSON.parse(line) as StreamsReport), peakRssMiB }
}
