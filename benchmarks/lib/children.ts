/** Starts benchmark phases as child node processes (same script, same loader) and talks to them over IPC. */
import { fork, type ChildProcess } from 'node:child_process'
import type { ChildMessage } from './phases.ts'
import { startEnv, startFlags } from '../../runtime/heap.ts'

export interface Child {
  readonly process: ChildProcess
  /** Resolves with the first message for which `match` is true; rejects if the child exits first. */
  waitFor(match: (m: ChildMessage) => boolean, timeoutMs: number): Promise<ChildMessage>
  /** Resolves when the child exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
  readonly messages: ChildMessage[]
}

const live = new Set<ChildProcess>()

/** SIGKILLs every child still running (on an interrupted benchmark). */
export function killChildren(): void {
  for (const c of live) c.kill('SIGKILL')
}

/** The node flags that load TypeScript in this process, for the children. */
function loaderArgs(): string[] {
  const inherited = process.execArgv.filter((a) => !a.startsWith('--cpu-prof'))
  return inherited.some((a) => a.includes('tsx')) ? inherited : [...inherited, '--import', 'tsx']
}

export interface ChildOptions {
  /** Node flags added after the loader's (e.g. `--cpu-prof`). */
  nodeArgs?: string[]
  /** `script` is JavaScript, run without the TypeScript loader. */
  compiled?: boolean
  /**
   * The child runs pipelines on this pipe, and starts as bin/weir.js starts `weir run` on it
   * (node flags and malloc arenas, runtime/heap.ts). Without, with two malloc arenas.
   */
  pipe?: 'embedded' | 'kafka'
}

export function startChild(script: string, args: string[], options: ChildOptions = {}): Child {
  const { nodeArgs: extraNodeArgs = [], compiled = false, pipe } = options
  const nodeArgs = compiled ? [] : loaderArgs()
  const env = { ...process.env, ...startEnv(pipe ?? 'kafka', process.env) }
  const execArgv = [...nodeArgs, ...(pipe === undefined ? [] : startFlags(pipe, nodeArgs)), ...extraNodeArgs]
  // The child's stdout goes to our stderr: stdout carries only the JSON result.
  const proc = fork(script, args, { execArgv, env, stdio: ['ignore', 2, 2, 'ipc'] })
  live.add(proc)
  const messages: ChildMessage[] = []
  const listeners = new Set<(m: ChildMessage) => void>()
  proc.on('message', (m) => {
    const msg = m as ChildMessage
    messages.push(msg)
    for (const l of [...listeners]) l(msg)
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => {
      live.delete(proc)
      resolve({ code, signal })
    })
  })
  return {
    process: proc,
    exited,
    messages,
    waitFor(match, timeoutMs) {
      const seen = messages.find(match)
      if (seen !== undefined) return Promise.resolve(seen)
      return new Promise((resolve, reject) => {
        const done = (): void => {
          listeners.delete(listener)
          clearTimeout(timer)
        }
        const listener = (m: ChildMessage): void => {
          if (m.event === 'failed') {
            done()
            reject(new Error(`child ${args[1]} failed: ${String(m.error)}`))
          } else if (match(m)) {
            done()
            resolve(m)
          }
        }
        const timer = setTimeout(() => {
          done()
          reject(new Error(`child ${args[1]}: no expected message within ${timeoutMs} ms`))
        }, timeoutMs)
        listeners.add(listener)
        void exited.then(({ code, signal }) => {
          if (!listeners.has(listener)) return
          // A message sent just before exiting may still be in flight.
          setTimeout(() => {
            if (!listeners.has(listener)) return
            done()
            reject(new Error(`child ${args[1]} exited (code ${code}, signal ${signal}) before the expected message`))
          }, 100)
        })
      })
    },
  }
}
