/**
 * The progress benchmark's child processes: `weir monitor` and `weir run` as real
 * processes (the same `bin/weir.js` users start), their CPU time and RSS read from /proc,
 * and a stop that reaches every child on success, error or SIGINT.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
const BIN = join(ROOT, 'bin/weir.js')

export interface WeirProcess {
  readonly name: string
  readonly child: ChildProcess
  readonly pid: number
  /** The last few KiB of its stderr, for error messages. */
  stderrTail(): string
  /** Resolves with the first match of `pattern` in its stdout or stderr; rejects if it exits first. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

const live = new Set<WeirProcess>()

/** Starts `node [nodeArgs] bin/weir.js args`; WEIR_* settings of this shell are not passed on. */
export function startWeirProcess(name: string, args: string[], options: { nodeArgs?: string[]; env?: Record<string, string> } = {}): WeirProcess {
  const env: NodeJS.ProcessEnv = { ...process.env }
  for (const k of Object.keys(env)) if (k.startsWith('WEIR_')) delete env[k]
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), BIN, ...args], { cwd: ROOT, env: { ...env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  if (child.pid === undefined) throw new Error(`${name}: could not start ${process.execPath} ${BIN}`)
  let out = ''
  let err = ''
  const watchers = new Set<() => void>()
  child.stdout!.on('data', (d: Buffer) => {
    out = (out + d.toString()).slice(-16_384)
    watchers.forEach((w) => w())
  })
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-16_384)
    watchers.forEach((w) => w())
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolveExit) => {
    child.on('exit', (code, signal) => resolveExit({ code, signal }))
  })
  const proc: WeirProcess = {
    name,
    child,
    pid: child.pid,
    stderrTail: () => err.slice(-4000),
    exited,
    waitFor(pattern, timeoutMs) {
      return new Promise((resolveMatch, reject) => {
        const done = (): void => {
          watchers.delete(check)
          clearTimeout(timer)
        }
        const check = (): void => {
          const m = pattern.exec(out) ?? pattern.exec(err)
          if (m === null) return
          done()
          resolveMatch(m)
        }
        const timer = setTimeout(() => {
          done()
          reject(new Error(`${name}: no ${pattern} within ${timeoutMs} ms; stderr:\n${err.slice(-4000)}`))
        }, timeoutMs)
        watchers.add(check)
        void exited.then(({ code, signal }) => {
          if (!watchers.has(check)) return
          done()
          reject(new Error(`${name} exited (code ${code}, signal ${signal}) before printing ${pattern}; stderr:\n${err.slice(-4000)}`))
        })
        check()
      })
    },
  }
  live.add(proc)
  void exited.then(() => live.delete(proc))
  return proc
}

/**
 * Stops every child still running: SIGTERM (a run takes its final checkpoint, a profiled
 * monitor writes its profile), then SIGKILL for any left after `graceMs`.
 */
export async function stopAll(graceMs = 10_000): Promise<void> {
  const procs = [...live]
  for (const p of procs) p.child.kill('SIGTERM')
  const all = Promise.all(procs.map((p) => p.exited))
  let timer: NodeJS.Timeout | undefined
  const late = await Promise.race([all.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), graceMs)))])
  clearTimeout(timer)
  if (late) killAll()
}

/** SIGKILLs every child still running (synchronous: usable in an 'exit' handler). */
export function killAll(): void {
  for (const p of live) p.child.kill('SIGKILL')
}

/** clock ticks per second of /proc/<pid>/stat's CPU times (`getconf CLK_TCK`). */
export function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
}

/** User plus system CPU time the process used so far, in clock ticks. */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // utime and stime are fields 14 and 15 of the whole line, 12th and 13th after the name.
  return Number(fields[11]) + Number(fields[12])
}

/** Resident set size now and at its peak, MiB. */
export function rssMiB(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 }
}

/** Samples CPU time of a set of processes over a window: fraction of one core each. */
export class CpuWindow {
  private readonly start: Map<number, number>
  private readonly startedAt = performance.now()

  constructor(private readonly pids: number[], private readonly ticksPerSecond: number) {
    this.start = new Map(pids.map((p) => [p, cpuTicks(p)]))
  }

  /** Fraction of one core each process used since the window opened, by pid. */
  end(): Map<number, number> {
    const wallS = (performance.now() - this.startedAt) / 1000
    return new Map(this.pids.map((p) => [p, (cpuTicks(p) - this.start.get(p)!) / this.ticksPerSecond / wallS]))
  }
}
