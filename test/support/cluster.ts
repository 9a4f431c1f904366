/**
 * A weir cluster of real processes for tests: `weir coordinator`s and `weir worker`s on
 * Kafka and NATS. Every process's stdout and stderr are kept in memory and appended to a
 * log file of its own (for the report of a failing test); processes are signalled by
 * name (SIGKILL, SIGSTOP/SIGCONT, SIGTERM), the leading coordinator is found from the
 * `leading cluster … (term N)` line it prints, and `killAll()` SIGKILLs whatever is left.
 *
 * @example
 * const c = new TestCluster({ cluster: 'x1', kafka: 'kafka://127.0.0.1:9092', nats: 'nats://127.0.0.1:4222', logDir: dir })
 * onTestFinished(() => c.killAll())
 * c.startCoordinator('c1', ['--settle-ms', '500'])
 * await c.waitForLeader(15_000)
 * const w = c.startWorker('a', 'examples/wordcount.ts', ['--state-dir', join(dir, 'a'), '--param', 'lines=100'])
 * expect((await w.done).code).toBe(0)
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { startWeir, type Outcome } from './weir-cli.ts'

export type ProcessState = 'running' | 'paused' | 'exited'

export interface WeirProcess {
  readonly name: string
  readonly role: 'coordinator' | 'worker'
  /** Where its stdout and stderr go, interleaved. */
  readonly logFile: string
  readonly startedAt: number
  readonly done: Promise<Outcome>
  /** Set once the process exited. */
  outcome: Outcome | undefined
  /** What the test did to it last (SIGKILL, SIGTERM, …), for the expectations on its outcome. */
  sent: NodeJS.Signals[]
  state: ProcessState
  stdout(): string
  signal(signal: NodeJS.Signals): void
}

export interface TestClusterOptions {
  cluster: string
  /** `kafka://host:port` */
  kafka: string
  /** `nats://host:port` */
  nats: string
  /** One log file per process is written here. */
  logDir: string
  /** WEIR_LOG_LEVEL of the children. Default 'warn'. */
  logLevel?: string
}

export class TestCluster {
  readonly processes: WeirProcess[] = []
  private readonly t0 = Date.now()

  constructor(readonly options: TestClusterOptions) {
    mkdirSync(options.logDir, { recursive: true })
  }

  /** Seconds since the cluster object was made, for journals. */
  elapsed(): string {
    return `+${((Date.now() - this.t0) / 1000).toFixed(2)}s`
  }

  private spawn(name: string, role: WeirProcess['role'], args: string[]): WeirProcess {
    const logFile = join(this.options.logDir, `${name}.log`)
    const p = startWeir(args, { env: { WEIR_LOG_LEVEL: this.options.logLevel ?? 'warn' } })
    let out = ''
    // A process killed at cleanup may still write after the case's temp dir is gone.
    const log = (d: Buffer | string): void => {
      try {
        appendFileSync(logFile, d)
      } catch {
        // nothing to keep it in any more
      }
    }
    log(`# ${new Date().toISOString()} weir ${args.join(' ')}\n`)
    p.child.stdout!.on('data', (d: Buffer) => {
      out += d.toString()
      log(d)
    })
    p.child.stderr!.on('data', (d: Buffer) => log(d))
    const proc: WeirProcess = {
      name,
      role,
      logFile,
      startedAt: Date.now(),
      done: p.done,
      outcome: undefined,
      sent: [],
      state: 'running',
      stdout: () => out,
      signal: (signal) => {
        if (proc.state === 'exited') return
        proc.sent.push(signal)
        if (signal === 'SIGSTOP') proc.state = 'paused'
        if (signal === 'SIGCONT') proc.state = 'running'
        p.child.kill(signal)
      },
    }
    void p.done.then((o) => {
      proc.outcome = o
      proc.state = 'exited'
      log(`# ${new Date().toISOString()} exited: code ${o.code}, signal ${o.signal}\n`)
    })
    this.processes.push(proc)
    return proc
  }

  /** `weir coordinator --bus … --cluster … --name NAME ARGS`. */
  startCoordinator(name: string, args: string[] = []): WeirProcess {
    return this.spawn(name, 'coordinator', ['coordinator', '--bus', this.options.nats, '--cluster', this.options.cluster, '--name', name, ...args])
  }

  /** `weir worker FILE --pipe … --bus … --cluster … --id ID ARGS`. */
  startWorker(id: string, file: string, args: string[] = []): WeirProcess {
    return this.spawn(id, 'worker', ['worker', file, '--pipe', this.options.kafka, '--bus', this.options.nats, '--cluster', this.options.cluster, '--id', id, ...args])
  }

  get coordinators(): WeirProcess[] {
    return this.processes.filter((p) => p.role === 'coordinator')
  }

  get workers(): WeirProcess[] {
    return this.processes.filter((p) => p.role === 'worker')
  }

  /** The term a coordinator last said it leads with, or undefined. */
  static term(p: WeirProcess): number | undefined {
    const terms = [...p.stdout().matchAll(/leading cluster \S+ \(term (\d+)\)/g)].map((m) => Number(m[1]))
    return terms.length === 0 ? undefined : Math.max(...terms)
  }

  /** The live coordinator that took the lease last (the highest term), if any has. */
  leader(): WeirProcess | undefined {
    let best: WeirProcess | undefined
    for (const c of this.coordinators) {
      if (c.state === 'exited') continue
      const t = TestCluster.term(c)
      if (t !== undefined && (best === undefined || t > TestCluster.term(best)!)) best = c
    }
    return best
  }

  async waitForLeader(timeoutMs: number): Promise<WeirProcess | undefined> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const l = this.leader()
      if (l !== undefined || Date.now() > deadline) return l
      await new Promise((r) => setTimeout(r, 50))
    }
  }

  /** The last `lines` lines of every process's log, for a failure report. */
  logTails(lines = 30): string {
    return this.processes.map((p) => {
      const text = existsSync(p.logFile) ? readFileSync(p.logFile, 'utf8') : ''
      const all = text.split('\n')
      return `--- ${p.name} (${p.role}, ${p.logFile}) ---\n${all.slice(-lines - 1).join('\n')}`
    }).join('\n')
  }

  /**
   * The last `perProcess` lines of each process's log that match `pattern`, each cut to 300
   * characters: what a failed wait puts in its message, so a CI excerpt shows what the
   * processes did.
   */
  logLinesMatching(pattern: RegExp, perProcess = 8): string {
    return this.processes.map((p) => {
      const text = existsSync(p.logFile) ? readFileSync(p.logFile, 'utf8') : ''
      const lines = text.split('\n').filter((l) => pattern.test(l)).slice(-perProcess).map((l) => l.slice(0, 300))
      return `--- ${p.name} (${p.role}, ${p.state}) ---\n${lines.join('\n')}`
    }).join('\n')
  }

  /** SIGKILLs every process still running (a stopped one too: SIGKILL needs no SIGCONT). */
  killAll(): void {
    for (const p of this.processes) if (p.state !== 'exited') p.signal('SIGKILL')
  }
}
