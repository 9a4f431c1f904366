/**
 * What every benchmark line records about the run itself: the commit, whether the measured
 * code had uncommitted changes, the machine's load at the start and end, the Node version
 * and the total time.
 *
 * @example
 * const info = startRunInfo(['runtime', 'coordinator'])
 * // … measure …
 * process.stdout.write(JSON.stringify({ ...figures, ...info.finish() }) + '\n')
 */
import { execFileSync } from 'node:child_process'
import { loadavg } from 'node:os'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { round } from './stats.ts'

/** The repository root: pathspecs like 'runtime' are relative to it. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/** `git args…` in the repository; null when git is not there. */
export function git(args: string[]): string | null {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch {
    return null
  }
}

export interface RunInfo {
  readonly rev: string | null
  /** The `--porcelain` status of the watched folders ('' when clean, null without git). */
  readonly dirty: string | null
  readonly loadAtStart: number
  readonly started: number
  /** The run's figures, taken now: total_s, load averages, node, git_rev, runtime_uncommitted_changes. */
  finish(): Record<string, unknown>
}

/**
 * Starts recording; `watched` are the folders whose uncommitted changes the line reports
 * (BENCH_GIT_REV names the revision when the tree is an export without .git); `started`
 * is when the run began, for total_s.
 */
export function startRunInfo(watched: string[], started = performance.now()): RunInfo {
  const rev = process.env.BENCH_GIT_REV ?? git(['rev-parse', '--short', 'HEAD'])
  const dirty = process.env.BENCH_GIT_REV === undefined ? git(['status', '--porcelain', '--', ...watched]) : ''
  const loadAtStart = loadavg()[0]!
  return {
    rev,
    dirty,
    loadAtStart,
    started,
    finish: () => ({
      total_s: round((performance.now() - started) / 1000),
      load_avg_1m_start: round(loadAtStart),
      load_avg_1m_end: round(loadavg()[0]!),
      node: process.version,
      git_rev: rev,
      runtime_uncommitted_changes: dirty === null ? null : dirty !== '',
    }),
  }
}

/**
 * Prints a benchmark's one JSON line: its figures and the run's. With `failures` (an output
 * check ran) the line says `exact` and lists them; each also goes to stderr and the exit code
 * becomes 1.
 *
 * @example
 * printResult({ bench: 'views', lookups_per_s: 3470 }, info, failures)
 */
export function printResult(result: Record<string, unknown>, info: RunInfo, failures?: readonly string[]): void {
  if (failures !== undefined) {
    result.exact = failures.length === 0
    if (failures.length > 0) result.failures = failures
  }
  process.stdout.write(JSON.stringify({ ...result, ...info.finish() }) + '\n')
  if (failures === undefined || failures.length === 0) return
  for (const f of failures) process.stderr.write(`wrong: ${f}\n`)
  process.exitCode = 1
}
