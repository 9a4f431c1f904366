/**
 * The scaling benchmark's moving parts: `weir coordinator` and `weir worker` as real child
 * processes (the CLI a deployment runs), their CPU time from /proc, the machine's CPU, and a
 * read_committed consumer that tails the output topic to time when the counts land.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Admin, Consumer, Kafka } from 'kafkajs'
import { progress, wallMs } from './stats.ts'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const BIN = join(ROOT, 'bin/weir.js')

/** These shape a run; the benchmark sets the ones it means. */
const RUN_SETTINGS = ['WEIR_LOG_LEVEL', 'WEIR_CRASH_AT', 'WEIR_PIPE', 'WEIR_BUS']
/** Lines of a child's stderr echoed on ours before the rest is only counted. */
const ECHO_STDERR_LINES = 40

export interface WeirProcess {
  readonly name: string
  readonly child: ChildProcess
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  /** Everything it wrote on stdout. */
  stdout(): string
  /** The last 20k characters it wrote on stderr. */
  stderrTail(): string
}

const live = new Set<ChildProcess>()

/** SIGKILLs every weir process still running (on an interrupted benchmark). */
export function killWeirProcesses(): void {
  for (const c of live) c.kill('SIGKILL')
}

/**
 * Starts `node bin/weir.js <args>` with warn-level logs (or `options.logLevel`, for a
 * benchmark that reads the runtime's own debug figures from the log); its output is echoed
 * on stderr, prefixed.
 */
export function startWeirProcess(name: string, args: string[], options: { logLevel?: string } = {}): WeirProcess {
  const env = { ...process.env }
  for (const k of RUN_SETTINGS) delete env[k]
  env.WEIR_LOG_LEVEL = options.logLevel ?? 'warn'
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
  live.add(child)
  let out = ''
  let err = ''
  let errLines = 0
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
    for (const l of d.toString().split('\n')) if (l !== '') progress(`[${name}] ${l}`)
  })
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000)
    for (const l of d.toString().split('\n')) {
      if (l === '') continue
      errLines++
      if (errLines <= ECHO_STDERR_LINES) progress(`[${name} stderr] ${l.slice(0, 400)}`)
      else if (errLines === ECHO_STDERR_LINES + 1) progress(`[${name} stderr] … (further lines not echoed)`)
    }
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.on('close', (code, signal) => {
      live.delete(child)
      resolveExit({ code, signal })
    })
  })
  return {
    name,
    child,
    exited,
    stdout: () => out,
    stderrTail: () => err,
  }
}

/** Waits until `p` wrote `pattern` on stdout; rejects if it exits first or after `timeoutMs`. */
export async function waitForOutput(p: WeirProcess, pattern: RegExp, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let exited = false
  void p.exited.then(() => (exited = true))
  while (!pattern.test(p.stdout())) {
    if (exited) throw new Error(`${p.name} exited before printing ${pattern}: ${p.stderrTail().slice(-2000)}`)
    if (Date.now() > deadline) throw new Error(`${p.name}: no ${pattern} on stdout within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves with how it ended and how long that took. */
export async function stopWeirProcess(p: WeirProcess, graceMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean; ms: number }> {
  const started = performance.now()
  p.child.kill('SIGTERM')
  let killed = false
  const timer = setTimeout(() => {
    killed = true
    p.child.kill('SIGKILL')
  }, graceMs)
  const r = await p.exited
  clearTimeout(timer)
  return { ...r, killed, ms: performance.now() - started }
}

const TICKS_PER_S = 100

/** user + system CPU seconds of a process from /proc/<pid>/stat, or null when it is gone. */
export function processCpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command (which may hold spaces) start after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_S
  } catch {
    return null
  }
}

/** The machine's CPU time so far, s: busy (everything but idle and iowait) and total, over all cores. */
export function machineCpuSeconds(): { busy: number; total: number } {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number)
    const total = cpu.slice(0, 8).reduce((s, v) => s + v, 0)
    const idle = cpu[3]! + cpu[4]!
    return { busy: (total - idle) / TICKS_PER_S, total: total / TICKS_PER_S }
  } catch {
    return { busy: NaN, total: NaN }
  }
}

/**
 * CPU seconds so far of every process on the machine, by pid, with a group name: the names
 * in `named` (pid → name) for the benchmark's own processes, `kafka_broker` and `nats` by
 * their command line, `other` for the rest.
 */
export function cpuByProcess(named: ReadonlyMap<number, string>): Map<number, { group: string; seconds: number }> {
  const out = new Map<number, { group: string; seconds: number }>()
  let pids: string[] = []
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d))
  } catch {
    return out
  }
  for (const d of pids) {
    const pid = Number(d)
    const seconds = processCpuSeconds(pid)
    if (seconds === null) continue
    let group = named.get(pid)
    if (group === undefined) {
      let cmd = ''
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      } catch {
        // gone meanwhile
      }
      group = cmd.includes('kafka.Kafka') ? 'kafka_broker' : cmd.includes('nats-server') ? 'nats' : 'other'
    }
    out.set(pid, { group, seconds })
  }
  return out
}

/** CPU used between two `cpuByProcess` snapshots, in cores over `seconds`, summed by group (a process that started in between counts whole). */
export function coresByGroup(from: Map<number, { group: string; seconds: number }>, to: Map<number, { group: string; seconds: number }>, seconds: number): Record<string, number> {
  const sums: Record<string, number> = {}
  for (const [pid, t] of to) {
    const used = t.seconds - (from.get(pid)?.seconds ?? 0)
    sums[t.group] = (sums[t.group] ?? 0) + used
  }
  return Object.fromEntries(Object.entries(sums).sort(([a], [b]) => a.localeCompare(b)).map(([g, v]) => [g, Math.round((v / seconds) * 1000) / 1000]))
}

/** One moment of a run: wall time, output records seen, machine and per-process CPU. */
export interface Sample {
  at: number
  records: number
  machine: { busy: number; total: number }
  processes: Map<number, { group: string; seconds: number }>
}

/**
 * Tails a topic read_committed from the start and counts its records, to time when a run's
 * output lands: `mark` samples the moment the count first reaches `markAt` (the start of
 * the measured window) and `done` resolves at the moment it reaches `total`.
 */
export class OutputTail {
  records = 0
  firstAt = 0
  mark: Sample | undefined
  end: Sample | undefined
  private consumer: Consumer | undefined
  private readonly groupId = `weir-bench-scaling-tail-${randomUUID().slice(0, 8)}`
  private finish!: (s: Sample) => void
  readonly done: Promise<Sample>

  constructor(private readonly kafka: Kafka, private readonly topic: string, private readonly total: number, private readonly markAt: number, private readonly sample: (records: number) => Sample) {
    this.done = new Promise((r) => { this.finish = r })
  }

  /** Resolves once the consumer has joined its group and is fetching. */
  async start(): Promise<void> {
    const consumer = this.kafka.consumer({ groupId: this.groupId, readUncommitted: false, maxBytes: 50 * 1024 * 1024, maxBytesPerPartition: 10 * 1024 * 1024, maxWaitTimeInMs: 100 })
    this.consumer = consumer
    const joined = new Promise<void>((r) => consumer.on(consumer.events.GROUP_JOIN, () => r()))
    await consumer.connect()
    await consumer.subscribe({ topic: this.topic, fromBeginning: true })
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        if (batch.messages.length === 0) return
        if (this.records === 0) this.firstAt = wallMs()
        this.records += batch.messages.length
        if (this.mark === undefined && this.records >= this.markAt) this.mark = this.sample(this.records)
        if (this.end === undefined && this.records >= this.total) {
          this.end = this.sample(this.records)
          this.finish(this.end)
        }
      },
    })
    await joined
  }

  async stop(admin: Admin): Promise<void> {
    await this.consumer?.disconnect().catch(() => undefined)
    await admin.deleteGroups([this.groupId]).catch(() => undefined)
  }
}
