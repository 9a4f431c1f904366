/**
 * weir/testing: run pipelines in-process or in child processes, crash them at chosen
 * points of the checkpoint protocol (or SIGKILL them), restart, and compare what they
 * produced with a crash-free reference. This is how weir proves exactly-once, and how users
 * prove it for their own processors.
 *
 * @example
 * const ref = await runToCompletion(makePipeline(), { dataDir: tempDataDir() })
 * const crashed = await runToCompletion(makePipeline(), { dataDir: tempDataDir(), crashes: [{ point: 'after-pipe-commit', hit: 2 }] })
 * expect(await readStageOutput(makePipeline(), crashed.dataDir, 'count')).toEqual(...)
 */
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { codecFor, msgpack, stateCodec, type Codec } from '../runtime/codec.ts'
import { startEmbedded, type RunResult } from '../runner/embedded-runner.ts'
import { CRASH_POINTS, Faults, SimulatedCrash, type CrashPoint, type CrashSpec } from '../runtime/faults.ts'
import { EmbeddedPipe, type EmbeddedPipeOptions } from '../runtime/pipe/embedded/embedded-pipe.ts'
import type { Pipe } from '../runtime/pipe/pipe.ts'
import { readRange } from '../runtime/pipe/read-range.ts'
import { type Pipeline, type StageSpec } from '../runtime/api/pipeline.ts'
import { closestName } from '../runtime/suggest.ts'
import { UnknownStageError, WeirError } from '../runtime/errors.ts'
import { chainsOf } from '../runtime/api/chains.ts'
import { naming } from '../runtime/naming.ts'
import { StateStore } from '../runtime/state/state-store.ts'
import { isControlRecord } from '../runtime/watermarks.ts'
import { keyString } from '../runtime/record-keys.ts'
import { isAlive } from './process-alive.ts'
import type { ActorConfig } from '../runtime/actor/actor.ts'
import type { Logger } from 'pino'

export { CRASH_POINTS, SimulatedCrash, UnknownStageError }
export { createSavepoint, type CreateSavepointOptions } from '../runner/create-savepoint.ts'
/** fast-check, the copy `arbitraries` is built with (weir's peer dependency), for properties over weir's arbitraries. */
export { default as fc } from 'fast-check'
export type { CrashPoint, CrashSpec }

/** Directories tempDataDir made in this process and nothing removed yet. */
const madeHere = new Set<string>()
/** Prefixes whose directories of dead processes were swept in this process. */
const swept = new Set<string>()

/**
 * A fresh directory under the OS temp dir (`<prefix>pid<pid>-XXXXXX`), removed without being
 * asked: when this process exits normally, or, when it was killed or ended without an exit
 * event (a vitest worker does), by the next process that calls tempDataDir with the same
 * prefix: a directory whose process is gone is removed then. `removeTempDirs()` removes
 * this process's directories at once (in an `afterAll`, say); `WEIR_KEEP_TEMP_DIRS=1` keeps
 * every directory, to look at a failed run.
 *
 * @example
 * afterAll(removeTempDirs)
 * const dataDir = tempDataDir()
 */
export function tempDataDir(prefix = 'weir-test-'): string {
  const keep = process.env.WEIR_KEEP_TEMP_DIRS === '1'
  if (!keep && !swept.has(prefix)) {
    swept.add(prefix)
    removeDirsOfDeadProcesses(prefix)
  }
  const dir = mkdtempSync(join(tmpdir(), `${prefix}pid${process.pid}-`))
  if (keep) return dir
  if (!process.listeners('exit').includes(removeTempDirs)) process.on('exit', removeTempDirs)
  madeHere.add(dir)
  return dir
}

/** Removes every directory tempDataDir made in this process (e.g. `afterAll(removeTempDirs)`). */
export function removeTempDirs(): void {
  for (const dir of madeHere) rmSync(dir, { recursive: true, force: true })
  madeHere.clear()
  process.removeListener('exit', removeTempDirs)
}

function removeDirsOfDeadProcesses(prefix: string): void {
  const owned = /^pid(\d+)-[A-Za-z0-9]{6}$/
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(prefix)) continue
    const pid = owned.exec(name.slice(prefix.length))?.[1]
    if (pid !== undefined && Number(pid) !== process.pid && !isAlive(Number(pid))) rmSync(join(tmpdir(), name), { recursive: true, force: true })
  }
}

/**
 * A crash chosen just before the run it ends, from what the runs before it left in the data
 * dir (e.g. relative to how far the sources got), so that the plan can be one the run reaches.
 */
export type CrashPlanner<T> = (dataDir: string) => T | Promise<T>

export interface RunToCompletionOptions {
  dataDir: string
  /**
   * What relative paths of the pipeline's processors resolve against: a JsonlFileSink's
   * `out/counts.jsonl` is written to `<workDir>/out/counts.jsonl`. Default: `dataDir`, so a
   * test never writes into the project's own `out/` (and two runs never share a file).
   */
  workDir?: string
  /** Crashes to inject, one per run, in order; after them a clean run finishes the pipeline. */
  crashes?: Array<CrashSpec | CrashPlanner<CrashSpec>>
  epochIntervalMs?: number
  actorConfig?: Partial<ActorConfig>
  log?: Logger
  /** E.g. `{ compactionMinDirtyRecords: 20 }` to compact changelogs all the time. */
  pipeOptions?: EmbeddedPipeOptions
  /** Start from this savepoint (`createSavepoint`), e.g. to test that a new version of the pipeline restores an old one's state. */
  fromSavepoint?: { dir: string; allowDroppedState?: boolean }
}

export interface CompletedRun {
  dataDir: string
  /** The crash each run was planned to end with (planners resolved), in order. */
  planned: CrashSpec[]
  /** Crashes that actually happened (a point never reached does not crash: compare with `planned`). */
  crashed: CrashSpec[]
  /** The final, clean run's result. */
  result: RunResult
  /** How often the final run reached each crash point: its micro-batches (mid-batch), checkpoints (before-commit), source polls. */
  finalRunHits: Record<CrashPoint, number>
}

/**
 * Runs a bounded pipeline in this process until it finishes, crashing it as planned:
 * a crash abandons the run as a kill would (no final checkpoint), and the next run
 * recovers from the data dir.
 */
export async function runToCompletion(pipeline: Pipeline, options: RunToCompletionOptions): Promise<CompletedRun> {
  const planned: CrashSpec[] = []
  const crashed: CrashSpec[] = []
  for (const crash of options.crashes ?? []) {
    const spec = typeof crash === 'function' ? await crash(options.dataDir) : crash
    planned.push(spec)
    const run = await startEmbedded(pipeline, { dataDir: options.dataDir, workDir: options.workDir ?? options.dataDir, epochIntervalMs: options.epochIntervalMs ?? 50, actorConfig: options.actorConfig, log: options.log, pipeOptions: options.pipeOptions, fromSavepoint: options.fromSavepoint, faults: new Faults(spec, 'throw') })
    try {
      await run.done
    } catch (err) {
      if (!(err instanceof SimulatedCrash)) throw err
      crashed.push(spec)
    }
  }
  const counter = Faults.counter()
  const run = await startEmbedded(pipeline, { dataDir: options.dataDir, workDir: options.workDir ?? options.dataDir, epochIntervalMs: options.epochIntervalMs ?? 50, actorConfig: options.actorConfig, log: options.log, pipeOptions: options.pipeOptions, fromSavepoint: options.fromSavepoint, faults: counter })
  const result = await run.done
  const finalRunHits = Object.fromEntries(CRASH_POINTS.map((p) => [p, counter.hitsOf(p)])) as Record<CrashPoint, number>
  return { dataDir: options.dataDir, planned, crashed, result, finalRunHits }
}

/**
 * A crash for a child-process run: SIGKILL at a protocol point, or from outside after a
 * delay. `params` are added to the pipeline's params for that run only (e.g. a source rate
 * that keeps the child running past the delay).
 */
export type ProcessCrash = { kind: 'point'; spec: CrashSpec } | { kind: 'timer'; afterMs: number; params?: Record<string, string> }

export interface ChildRunOptions {
  dataDir: string
  /**
   * The child's working directory, which relative paths of the pipeline resolve against (a
   * JsonlFileSink's `out/counts.jsonl` is `<workDir>/out/counts.jsonl`). Default: `dataDir`,
   * so a test never writes into the project's own `out/`.
   */
  workDir?: string
  params?: Record<string, string>
  crashes?: Array<ProcessCrash | CrashPlanner<ProcessCrash>>
  epochIntervalMs?: number
  /** Give up on a child after this long, ms. */
  timeoutMs?: number
  /** Extra environment for the child processes (e.g. WEIR_COMPACTION_MIN_DIRTY). */
  env?: Record<string, string>
}

const here = dirname(fileURLToPath(import.meta.url))
// Compiled (an installed weir): the child runner is JavaScript and loads pipeline files
// itself (runtime/module-import.ts). From weir's TypeScript sources: through tsx.
const fromSources = import.meta.url.endsWith('.ts')
const childRunner = join(here, fromSources ? 'child-runner.ts' : 'child-runner.js')
const childLoader = fromSources ? ['--import', 'tsx'] : []

/** How a child run ended. `finished`: the pipeline finished (the child reported it), whatever signal came after. */
export interface ChildOutcome {
  code: number | null
  signal: NodeJS.Signals | null
  finished: boolean
  stderr: string
}

/**
 * Runs a pipeline file once in a child process; resolves with how it ended. The child works
 * in `workDir` (default `dataDir`): relative paths of the pipeline resolve there.
 */
export function runPipelineFile(file: string, options: { dataDir: string; workDir?: string; params?: Record<string, string>; crashAt?: CrashSpec; killAfterMs?: number; epochIntervalMs?: number; timeoutMs?: number; env?: Record<string, string> }): Promise<ChildOutcome> {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env, WEIR_CRASH_AT: options.crashAt ? Faults.envValue(options.crashAt) : '', WEIR_TEST_WORK_DIR: resolve(options.workDir ?? options.dataDir) }
  const args = [...childLoader, childRunner, resolve(file), options.dataDir, JSON.stringify(options.params ?? {}), String(options.epochIntervalMs ?? 50)]
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    const kill = options.killAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), options.killAfterMs)
    const limit = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`child run of ${file} timed out; stderr:\n${stderr}`)) }, options.timeoutMs ?? 120_000)
    child.on('close', (code, signal) => {
      clearTimeout(kill)
      clearTimeout(limit)
      resolvePromise({ code, signal, finished: stdout.includes('"outcome":"finished"'), stderr })
    })
  })
}

export interface FileRunResult {
  /** Runs that ended by SIGKILL before the pipeline finished. */
  kills: number
  /** The crash each run was planned to end with (planners resolved), in order. */
  planned: ProcessCrash[]
  /** The planned crashes that killed a running child; a kill after the pipeline finished, or a point never reached, is not one. */
  crashed: ProcessCrash[]
}

/**
 * Runs a pipeline file in child processes until it finishes: each planned crash is a real
 * SIGKILL (self-inflicted at a protocol point, or sent from here after a delay), then the
 * next process recovers from the data dir.
 */
export async function runFileToCompletion(file: string, options: ChildRunOptions): Promise<FileRunResult> {
  const planned: ProcessCrash[] = []
  const crashed: ProcessCrash[] = []
  for (const plan of options.crashes ?? []) {
    const crash = typeof plan === 'function' ? await plan(options.dataDir) : plan
    planned.push(crash)
    const r = await runPipelineFile(file, {
      dataDir: options.dataDir,
      workDir: options.workDir,
      params: crash.kind === 'timer' ? { ...options.params, ...crash.params } : options.params,
      epochIntervalMs: options.epochIntervalMs,
      timeoutMs: options.timeoutMs,
      env: options.env,
      ...(crash.kind === 'point' ? { crashAt: crash.spec } : { killAfterMs: crash.afterMs }),
    })
    if (r.signal === 'SIGKILL' && !r.finished) crashed.push(crash)
    else if (r.code !== 0 && !r.finished) throw new Error(`child run failed with code ${r.code}, signal ${r.signal}:\n${r.stderr}`)
  }
  const last = await runPipelineFile(file, { dataDir: options.dataDir, workDir: options.workDir, params: options.params, epochIntervalMs: options.epochIntervalMs, timeoutMs: options.timeoutMs, env: options.env })
  if (last.code !== 0) throw new Error(`final child run failed (code ${last.code}, signal ${last.signal}):\n${last.stderr}`)
  return { kills: crashed.length, planned, crashed }
}

export interface ReadRecord<T = unknown> {
  partition: number
  offset: number
  key: string | null
  value: T
  timestamp: number
}

/**
 * Every committed data record of a topic, decoded: from an embedded data dir, or from an
 * open pipe (Kafka: read_committed, so aborted and uncommitted records never show).
 * Watermark marks (control records) are left out.
 */
export async function readTopic<T = unknown>(from: string | Pipe, topic: string, codec: Codec<unknown> = msgpack): Promise<Array<ReadRecord<T>>> {
  return withPipe(from, (pipe) => readOpenTopic<T>(pipe, topic, codec))
}

async function withPipe<R>(from: string | Pipe, use: (pipe: Pipe) => Promise<R>): Promise<R> {
  const pipe = typeof from === 'string' ? await EmbeddedPipe.open(from) : from
  try {
    return await use(pipe)
  } finally {
    if (typeof from === 'string') await pipe.close()
  }
}

async function readOpenTopic<T>(pipe: Pipe, topic: string, codec: Codec<unknown>): Promise<Array<ReadRecord<T>>> {
  const spec = await pipe.describeTopic(topic)
  if (spec === undefined) return []
  const out: Array<ReadRecord<T>> = []
  for (let p = 0; p < spec.partitions; p++) {
    await readRange(pipe, topic, p, await pipe.startOffset(topic, p), await pipe.endOffset(topic, p), (batch) => {
      for (const r of batch) if (!isControlRecord(r)) out.push({ partition: p, offset: r.offset, key: r.key === null ? null : keyString(r.key), value: (r.value === null ? null : codec.decode(r.value)) as T, timestamp: r.timestamp })
    })
  }
  return out
}

/**
 * The stage named `stage`, from `among` (default: every stage of the pipeline); an
 * UnknownStageError listing them, with the closest name, when there is none.
 */
function stageOf(pipeline: Pipeline, stage: string, among: readonly StageSpec[] = pipeline.topology): StageSpec {
  const spec = among.find((s) => s.name === stage)
  if (spec !== undefined) return spec
  const names = among.map((s) => s.name)
  throw new UnknownStageError(stage, pipeline.name, names, closestName(stage, names))
}

/**
 * A stage's committed output records. A stage the pipeline does not have is an
 * UnknownStageError that lists its stages. A stage chained to its reader
 * (docs/chaining.md) writes no topic, so reading it is refused (WEIR_STAGE_CHAINED) rather
 * than answered with nothing: read the stage it is chained to, or give that one `{ chain: false }`.
 * So is an output that other stages read and that was purged as they consumed it
 * (WEIR_STAGE_OUTPUT_PURGED; `purgeConsumedRecords`, on by default, deletes it by the end of
 * a run): read the last stage or a sink's output, or create the pipeline with
 * `{ purgeConsumedRecords: false }` to keep the edge.
 *
 * @example
 * const counts = await readStageOutput<number>(pipeline, dataDir, 'count')   // a stage no other stage reads
 */
export function readStageOutput<T = unknown>(pipeline: Pipeline, dataDir: string | Pipe, stage: string): Promise<Array<ReadRecord<T>>> {
  const spec = stageOf(pipeline, stage)
  const reader = chainsOf(pipeline).downstreamOf.get(stage)
  if (reader !== undefined) {
    throw new WeirError('WEIR_STAGE_CHAINED', `stage '${stage}' is chained to '${reader}': what it emits goes to '${reader}' without a topic, so it has no output to read; read '${reader}', or give '${reader}' { chain: false }`, { stage })
  }
  const topic = pipeline.outputTopic(spec)
  const readers = pipeline.downstreamOf(stage).map((s) => s.name)
  const purgeable = pipeline.options.purgeConsumedRecords && spec.topic === undefined && readers.length > 0
  return withPipe(dataDir, async (pipe) => {
    if (purgeable && (await pipe.describeTopic(topic)) !== undefined) {
      let purged = 0
      for (let p = 0; p < spec.outputPartitions; p++) purged += await pipe.startOffset(topic, p)
      if (purged > 0) {
        throw new WeirError('WEIR_STAGE_OUTPUT_PURGED', `stage '${stage}''s output (${topic}) is read by ${readers.map((r) => `'${r}'`).join(', ')}, and ${purged} of its records were purged once consumed (purgeConsumedRecords, on by default): read a stage no other stage reads or a sink's output, or create the pipeline with new Pipeline('${pipeline.name}', { purgeConsumedRecords: false }) to keep this edge`, { stage, topic })
      }
    }
    return readOpenTopic<T>(pipe, topic, codecFor(spec.codec))
  })
}

/**
 * A stage's dead-letter records: each record the stage could not decode or process (its
 * `onError` policy sent it to `weir.<pipeline>.<stage>.dlq`), with the error, where it was
 * read (or the timer that failed), the attempts, and the original key and value bytes.
 * Reads an embedded data dir or an open pipe, as readTopic does; the stage must be one that
 * runs actors (a source or a processor).
 *
 * @example
 * const dead = await readDeadLetters(pipeline, dataDir, 'parse')
 * expect(dead.map((d) => [d.value.error.code, d.value.origin?.offset])).toEqual([['WEIR_PROCESSING_FAILED', 7]])
 * JSON.parse(dead[0].value.value!.toString('utf8'))   // the record as it was written (a json stage)
 */
export function readDeadLetters(pipeline: Pipeline, dataDir: string | Pipe, stage: string): Promise<Array<ReadRecord<DeadLetter>>> {
  stageOf(pipeline, stage, pipeline.actorStages)
  return readTopic<DeadLetter>(dataDir, naming.deadLetter(pipeline.name, stage), stateCodec)
}

export interface DeadLetter {
  error: { code: string; message: string; cause?: { name: string; message: string; stack?: string } }
  /** Where the failing record was read; absent for a failing timer (see `timer`). */
  origin?: { topic: string; partition: number; offset: number; timestamp: number; lastOffset?: number }
  /** The timer whose `onTimer` failed (its key is also in `key`; `value` is null). */
  timer?: { key: string | null; time: number; domain: 'processing-time' | 'event-time' }
  stage: string
  actor: string
  attempts: number
  key: Buffer | null
  value: Buffer | null
  /** What `ctx.deadLetter` was given besides the error (a database's error fields, an HTTP response). */
  detail?: unknown
  failedAt: number
}

export interface StageState {
  /** Keyed state: state name → record key (as `StreamRecord.key` shows it) → value. */
  keyed: Record<string, Record<string, unknown>>
  /** Actor-scoped state: partition → state name → value. */
  actor: Record<number, Record<string, unknown>>
  /** Registered timers per partition. */
  timers: Record<number, number>
  /** Source partitions that committed the end of their input. */
  finished: Record<number, boolean>
}

/** Adds one stored state entry of partition `p` to `state`. */
function addStateEntry(state: StageState, p: number, key: Buffer, value: Buffer): void {
  const k = key.toString('utf8')
  if (k.startsWith('\u0000')) return
  if (k.startsWith('\u0001') || k.startsWith('\u0003')) { state.timers[p] = (state.timers[p] ?? 0) + 1; return }
  // '#…' names are the runtime's own (source finished, input positions), not the processor's.
  if (k.startsWith('\u0002')) {
    if (k === SOURCE_FINISHED_KEY) state.finished[p] = stateCodec.decode(value) === true
    else if (!k.startsWith('\u0002#')) (state.actor[p] ??= {})[k.slice(1)] = stateCodec.decode(value)
    return
  }
  // Keyed entries: the state's name, \0, then the record key's own bytes.
  const sep = key.indexOf(0)
  const name = key.toString('utf8', 0, sep)
  const recordKey = keyString(key.subarray(sep + 1))
  ;(state.keyed[name] ??= {})[recordKey] = stateCodec.decode(value)
}

const SOURCE_FINISHED_KEY = '\u0002#finished'

/** The committed state of every actor of a stage, read from local RocksDB (run the pipeline to completion first). */
export async function readState(pipeline: Pipeline, dataDir: string, stage: string): Promise<StageState> {
  const spec = stageOf(pipeline, stage, pipeline.actorStages)
  const state: StageState = { keyed: {}, actor: {}, timers: {}, finished: {} }
  for (let p = 0; p < spec.parallelism; p++) {
    const path = join(dataDir, 'state', stage, String(p))
    if (!existsSync(path)) continue
    const store = await StateStore.open(path)
    try {
      for (const { key, value } of await store.scan('')) addStateEntry(state, p, key, value)
    } finally {
      await store.close()
    }
  }
  return state
}

/**
 * The state of every actor of a stage as its changelog has it committed (the truth a
 * restart recovers; local RocksDB may be behind it after a crash): from an embedded data
 * dir or an open pipe (Kafka: read_committed). Works between the runs of a crashed pipeline.
 *
 * @example
 * const { actor, finished } = await readCommittedState(pipeline, dataDir, 'lines')  // how far each source partition got
 */
export async function readCommittedState(pipeline: Pipeline, from: string | Pipe, stage: string): Promise<StageState> {
  const spec = stageOf(pipeline, stage, pipeline.actorStages)
  const pipe = typeof from === 'string' ? await EmbeddedPipe.open(from) : from
  const state: StageState = { keyed: {}, actor: {}, timers: {}, finished: {} }
  try {
    const topic = naming.changelog(pipeline.name, stage)
    if ((await pipe.describeTopic(topic)) === undefined) return state
    for (let p = 0; p < spec.parallelism; p++) {
      // The newest record per key wins; a null value deletes the key.
      const latest = new Map<string, Buffer | null>()
      await readRange(pipe, topic, p, await pipe.startOffset(topic, p), await pipe.endOffset(topic, p), (batch) => {
        for (const r of batch) if (r.key !== null) latest.set(r.key.toString('latin1'), r.value)
      })
      for (const [key, value] of latest) if (value !== null) addStateEntry(state, p, Buffer.from(key, 'latin1'), value)
    }
    return state
  } finally {
    if (typeof from === 'string') await pipe.close()
  }
}

/**
 * Records deleted from a pipeline's edge topics (those a later stage reads, keyed branches
 * and side outputs included) so far: the sum
 * of their start offsets. Consumed edge records are purged by default (Pipeline option
 * purgeConsumedRecords), so a recovery test can check that the deleting path ran.
 *
 * @example
 * expect(await purgedRecords(pipeline, dataDir)).toBeGreaterThan(0)
 */
export async function purgedRecords(pipeline: Pipeline, from: string | Pipe): Promise<number> {
  const pipe = typeof from === 'string' ? await EmbeddedPipe.open(from) : from
  try {
    let purged = 0
    // Every topic actors write (outputs, side outputs, keyed branches) that a stage reads.
    for (const s of pipeline.actorStages.flatMap((a) => pipeline.writtenBy(a))) {
      if (pipeline.downstreamOf(s.name).length === 0) continue
      const topic = pipeline.outputTopic(s)
      if ((await pipe.describeTopic(topic)) === undefined) continue
      for (let p = 0; p < s.outputPartitions; p++) purged += await pipe.startOffset(topic, p)
    }
    return purged
  } finally {
    if (typeof from === 'string') await pipe.close()
  }
}

/** Elements in `actual` missing from or extra to `expected`, compared as multisets of JSON. */
export function multisetDiff(expected: unknown[], actual: unknown[]): { missing: string[]; extra: string[] } {
  const count = new Map<string, number>()
  for (const e of expected) { const k = JSON.stringify(e); count.set(k, (count.get(k) ?? 0) + 1) }
  const extra: string[] = []
  for (const a of actual) {
    const k = JSON.stringify(a)
    const n = count.get(k) ?? 0
    if (n === 0) extra.push(k)
    else count.set(k, n - 1)
  }
  const missing: string[] = []
  for (const [k, n] of count) for (let i = 0; i < n; i++) missing.push(k)
  return { missing, extra }
}

/** Removes data dirs made for a test. */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
  madeHere.delete(dir)
}

/** Files in a directory (e.g. a sink's part files), sorted; hidden ones (a sink's staging files) left out. */
export function listFiles(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).filter((f) => !f.startsWith('.')).sort().map((f) => join(dir, f)) : []
}

/** fast-check arbitraries for crash schedules. */
export const arbitraries = {
  crashPoint: (points: readonly CrashPoint[] = CRASH_POINTS): fc.Arbitrary<CrashPoint> => fc.constantFrom(...points),
  crashSpec: (points?: readonly CrashPoint[], maxHit = 8): fc.Arbitrary<CrashSpec> => fc.record({ point: arbitraries.crashPoint(points), hit: fc.integer({ min: 1, max: maxHit }) }),
  /** One to `max` crashes, one per run. */
  crashSchedule: (max = 3, points?: readonly CrashPoint[]): fc.Arbitrary<CrashSpec[]> => fc.array(arbitraries.crashSpec(points), { minLength: 1, maxLength: max }),
  /** Crashes for child processes: protocol points (self-SIGKILL) or external SIGKILL after a delay. */
  processCrash: (maxDelayMs = 1500): fc.Arbitrary<ProcessCrash> =>
    fc.oneof(
      arbitraries.crashSpec().map((spec): ProcessCrash => ({ kind: 'point', spec })),
      fc.integer({ min: 0, max: maxDelayMs }).map((afterMs): ProcessCrash => ({ kind: 'timer', afterMs })),
    ),
}
