/**
 * Runs `node bin/weir.js` as a real child process for CLI tests, with an environment that
 * does not leak the test runner's WEIR_* settings, and temp dirs removed after the file.
 *
 * @example
 * const r = await weir(['run', 'examples/wordcount.ts', '-q'])
 * expect(r.code).toBe(0)
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect } from 'vitest'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const BIN = join(ROOT, 'bin/weir.js')

export interface Outcome {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** These shape a run; a test sets the ones it means. */
const RUN_SETTINGS = ['WEIR_CONFIG', 'WEIR_LOG_LEVEL', 'WEIR_CRASH_AT', 'WEIR_PIPE', 'WEIR_BUS', 'WEIR_MONITOR_TOKEN', 'WEIR_METRICS_TOKEN', 'WEIR_VIEWS_TOKEN']

export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env }
  for (const k of RUN_SETTINGS) delete env[k]
  return { ...env, ...extra }
}

/** A started `weir` process: `stderr()` is what it wrote so far (for a failure message while it runs). */
export function startWeir(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): { child: ChildProcess; done: Promise<Outcome>; stderr: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd ?? ROOT, env: cleanEnv(options.env), stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  const done = new Promise<Outcome>((resolveDone, reject) => {
    child.on('error', reject)
    child.on('close', (code, signal) => resolveDone({ code, signal, stdout, stderr }))
  })
  return { child, done, stderr: () => stderr }
}

export function weir(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<Outcome> {
  return startWeir(args, options).done
}

/** A temp-dir factory whose dirs are removed after the test file. */
export function tempDirs(prefix: string): () => string {
  const made: string[] = []
  afterAll(() => made.forEach((d) => rmSync(d, { recursive: true, force: true })))
  return () => {
    const d = mkdtempSync(join(tmpdir(), prefix))
    made.push(d)
    return d
  }
}

/** Not a hidden file: a sink's staging files are hidden. */
export const visible = (name: string): boolean => !name.startsWith('.')

/** The last count per word in the word count example's JSON-lines output files. */
export function finalCounts(dir: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const f of readdirSync(dir).filter(visible)) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (line === '') continue
      const r = JSON.parse(line) as { word: string; count: number }
      out[r.word] = Math.max(out[r.word] ?? 0, r.count)
    }
  }
  return out
}

/** Per word, the running counts the word count's JSON-lines files hold, in file order (exactly-once: 1..N once each). */
export function countsPerWord(dir: string): Map<string, number[]> {
  const m = new Map<string, number[]>()
  for (const f of readdirSync(dir).filter(visible)) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (line === '') continue
      const r = JSON.parse(line) as { word: string; count: number }
      m.set(r.word, [...(m.get(r.word) ?? []), r.count])
    }
  }
  return m
}

/** Resolves with the first match of `pattern` in what the stream printed so far. */
export function waitFor(stream: NodeJS.ReadableStream, pattern: RegExp, withinMs = 15_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => reject(new Error(`no ${pattern} within ${withinMs} ms; got:\n${seen}`)), withinMs)
    stream.on('data', (d: Buffer) => {
      seen += d.toString()
      const m = pattern.exec(seen)
      if (m !== null) {
        clearTimeout(timer)
        resolve(m)
      }
    })
  })
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** The final counts of a crash-free embedded run of examples/wordcount.ts (`lines` per partition), made in `dir`. */
export async function wordcountReference(dir: string, lines: number): Promise<Record<string, number>> {
  const r = await weir(['run', 'examples/wordcount.ts', '--data-dir', join(dir, 'ref'), '--param', `lines=${lines}`, '--param', `out=${dir}/ref-out/c-{partition}.jsonl`, '-q'])
  expect(r.code, r.stderr).toBe(0)
  return finalCounts(join(dir, 'ref-out'))
}

/** Exactly-once for the word count's output files: the reference's final counts, and every word counted 1..N once each. */
export function expectExactWordCounts(out: string, expected: Record<string, number>): void {
  expect(finalCounts(out)).toEqual(expected)
  for (const [word, counts] of countsPerWord(out)) {
    expect(counts.sort((x, y) => x - y), `${word}: counts not 1..N (lost or doubled)`).toEqual(Array.from({ length: expected[word]! }, (_, i) => i + 1))
  }
}

/**
 * Polls `check` every 50 ms until it returns something other than undefined/false; fails
 * after `withinMs` naming `what` (and the last error `check` threw: a probe may fail while
 * what it asks is down).
 */
export async function until<T>(check: () => T | undefined | false | Promise<T | undefined | false>, withinMs: number, what: string): Promise<T> {
  const deadline = Date.now() + withinMs
  let last: unknown
  for (;;) {
    try {
      const v = await check()
      if (v !== undefined && v !== false) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`not within ${withinMs} ms: ${what}${last === undefined ? '' : ` (last error: ${String(last)})`}`)
    await sleep(50)
  }
}

/** A loopback port nothing listens on (it was free a moment ago). */
export async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number }
      srv.close(() => resolve(port))
    })
  })
}
