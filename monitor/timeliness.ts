/**
 * How timely each pipeline output is and what holds it back, as pure functions of what the
 * monitor has seen (actor progress, the topology, the monitor's clock). No I/O, no state:
 * the same inputs give the same answer, which is what the unit tests pin down.
 *
 * @example
 * const stages = stageStatuses(topology, actorsByStage, now)
 * const out = outputStatus('sink', stages, topology, now)
 * console.log(out.timelinessMs, out.holdingBack?.reason)
 */
import type { ActorProgress, WorkerHealth } from '../runtime/control/progress.ts'

export type Topology = WorkerHealth['topology']
export type TopologyStage = Topology['stages'][number]

/** Counter values of one progress event, stamped with the monitor's clock. */
export interface CounterSample {
  /** Monitor clock, ms. */
  at: number
  /** The actor instance: a change means its counters restarted from 0. */
  startedAt: number
  recordsIn: number
  recordsOut: number
  errors: number
  deadLettered: number
  late: number
}
export type Counter = Exclude<keyof CounterSample, 'at' | 'startedAt'>

/** What the timeliness rules need of one actor. */
export interface ActorSnapshot {
  progress: ActorProgress
  /** When the monitor applied the newest event (monitor clock, ms). */
  seenAt: number
  /** The publishing worker's interval, ms: the unit of staleness. */
  intervalMs: number
  /** Oldest first. */
  samples: readonly CounterSample[]
}

/** Rates are taken over this much recent history. */
export const RATE_WINDOW_MS = 60_000
/** An actor silent for this many of its intervals is missing. */
export const MISSING_INTERVALS = 3
/** A pipeline with no commit for max(this, 5 × interval) is stalled. */
export const MIN_STALL_MS = 10_000
const STALL_INTERVALS = 5
/** A stage whose oldest commit is older than max(MIN_STALL_MS, this × the largest interval) is stalled. */
const CHECKPOINT_STALL_INTERVALS = 3

interface WatermarkInput {
  watermark: number | null
  idle: boolean
  ended: boolean
}

/**
 * The combined watermark of a set of actors (a stage, or an output stage): the minimum
 * over those not idle; if all are idle, the maximum of them (so an idle stream does not
 * hold time back forever, and an all-idle one still reports where it is); ended actors
 * count as +Infinity. `null` when a counted actor has no watermark yet (or there are none).
 */
export function combineWatermarks(actors: readonly WatermarkInput[]): number | null {
  if (actors.length === 0) return null
  const live = actors.filter((a) => !a.ended)
  if (live.length === 0) return Infinity
  const active = live.filter((a) => !a.idle)
  if (active.length > 0) {
    // One active actor without a watermark keeps the minimum undefined, as it does downstream.
    if (active.some((a) => a.watermark === null)) return null
    return Math.min(...active.map((a) => a.watermark!))
  }
  const known = live.map((a) => a.watermark).filter((w): w is number => w !== null)
  return known.length === 0 ? null : Math.max(...known)
}

/**
 * now − watermark, at least 0 (event times ahead of the monitor's clock count as on time);
 * 0 once ended; null without a watermark.
 */
export function watermarkLag(now: number, watermark: number | null): number | null {
  if (watermark === null) return null
  if (watermark === Infinity) return 0
  return Math.max(0, now - watermark)
}

/**
 * Per-second rate of a counter over the samples of the last `windowMs`, like Prometheus'
 * `rate()`: a counter that went down, or a new `startedAt` (the actor restarted), is a
 * reset, and the new value counts as the increase since then. Null with fewer than two
 * samples in the window.
 */
export function counterRate(samples: readonly CounterSample[], counter: Counter, now: number, windowMs = RATE_WINDOW_MS): number | null {
  return counterRates(samples, [counter], now, windowMs)[0]!
}

/**
 * `counterRate` of several counters in one pass over the samples (no copies): the status
 * is rebuilt every second for every actor, so this is the monitor's hottest loop.
 */
export function counterRates(samples: readonly CounterSample[], counters: readonly Counter[], now: number, windowMs = RATE_WINDOW_MS): Array<number | null> {
  const increases = counters.map(() => 0)
  let first: CounterSample | undefined
  let prev: CounterSample | undefined
  for (const cur of samples) {
    if (cur.at < now - windowMs || cur.at > now) continue
    if (prev !== undefined) {
      const reset = cur.startedAt !== prev.startedAt
      for (let c = 0; c < counters.length; c++) {
        const k = counters[c]!
        increases[c]! += reset || cur[k] < prev[k] ? cur[k] : cur[k] - prev[k]
      }
    } else {
      first = cur
    }
    prev = cur
  }
  const seconds = first === undefined || prev === first ? 0 : (prev!.at - first.at) / 1000
  return increases.map((inc) => (seconds > 0 ? inc / seconds : null))
}

const RATE_COUNTERS: readonly Counter[] = ['errors', 'deadLettered', 'late', 'recordsIn', 'recordsOut']

/** Per-second rates summed over actors: failures (errors + dead letters), late, in, out. */
function stageRates(actors: readonly ActorSnapshot[], now: number): { failure: number | null; late: number | null; recordsIn: number | null; recordsOut: number | null } {
  const totals: Array<number | null> = RATE_COUNTERS.map(() => null)
  for (const a of actors) {
    counterRates(a.samples, RATE_COUNTERS, now).forEach((r, i) => {
      if (r !== null) totals[i] = (totals[i] ?? 0) + r
    })
  }
  const [errors, dead, late, recordsIn, recordsOut] = totals
  return { failure: errors === null && dead === null ? null : (errors ?? 0) + (dead ?? 0), late: late!, recordsIn: recordsIn!, recordsOut: recordsOut! }
}

/** Silent for more than MISSING_INTERVALS of its interval. */
export function isMissing(actor: ActorSnapshot, now: number): boolean {
  return now - actor.seenAt > MISSING_INTERVALS * actor.intervalMs
}

function isRunning(p: ActorProgress): boolean {
  // 'committing' is the barrier's short pause inside running.
  return p.lifecycle === 'running' || p.lifecycle === 'committing'
}

export interface StageStatus {
  name: string
  kind: TopologyStage['kind']
  inputs: string[]
  parallelism: number
  /** Event-time ms; null before the first one or once every actor ended (see `ended`). */
  watermark: number | null
  ended: boolean
  watermarkLagMs: number | null
  /** Unprocessed input records, summed over the stage's actors. */
  unprocessed: number
  /** Unprocessed records per input stage (the edge input → this stage). */
  unprocessedByInput: Record<string, number>
  /** (errors + dead-lettered) per second over the last minute; null before two samples. */
  failureRate: number | null
  lateRate: number | null
  recordsInRate: number | null
  recordsOutRate: number | null
  /** now − the oldest newest-commit of its live actors (an actor that never committed: since it started). */
  checkpointAgeMs: number | null
  actors: { running: number; missing: number; ended: number; failed: number; total: number }
  /** Actors of the stage that failed for good (lifecycle 'failed'), with their error. */
  failed: FailedActor[]
  /** Actors of the stage waiting on an outside system (`ctx.waitingOn`), with what and since when. */
  waiting: WaitingActor[]
  /** Longest silence of a missing actor, ms (0 when none is missing). */
  silentMs: number
  /** Missing or failed actors, or a checkpoint older than the stall limit. */
  stalled: boolean
}

/** An actor waiting on an outside system, as its worker reports it. */
export interface WaitingActor {
  actor: string
  on: string
  message: string
  /** When the wait began (publisher's clock). */
  since: number
}

/** An actor that failed for good, as its worker reports it. */
export interface FailedActor {
  actor: string
  worker: string
  code: string
  message: string
  /** The coordinator stopped moving it: it runs again only once an operator clears it. */
  quarantined: boolean
  failedOn: string[]
  /** When it failed (publisher's clock). */
  at: number
}

function failedActor(p: ActorProgress): FailedActor | undefined {
  if (p.failure === undefined) return undefined
  return { actor: p.actor, worker: p.worker, code: p.failure.code, message: p.failure.message, quarantined: p.failure.quarantined, failedOn: p.failure.failedOn, at: p.failure.at }
}

export interface StageContext {
  now: number
  /** The largest interval of the pipeline's workers, ms. */
  intervalMs: number
  /**
   * How long the monitor has known the pipeline, ms: actors it never heard from count as
   * missing only after MISSING_INTERVALS (a monitor that just started has not heard anyone yet).
   */
  knownForMs: number
}

/** The figures of one stage from its actors' newest progress. */
export function stageStatus(stage: TopologyStage, actors: readonly ActorSnapshot[], ctx: StageContext): StageStatus {
  const { now } = ctx
  const fresh = actors.filter((a) => !isMissing(a, now))
  const staleSeen = actors.length - fresh.length
  // A topic input, side output or keyed stream is a topic without actors of its own.
  const expected = hasActors(stage) ? stage.parallelism : 0
  const unseen = Math.max(0, expected - actors.length)
  const unseenMissing = ctx.knownForMs > MISSING_INTERVALS * ctx.intervalMs ? unseen : 0
  const silentMs = Math.max(0, ...actors.filter((a) => isMissing(a, now)).map((a) => now - a.seenAt), unseenMissing > 0 ? ctx.knownForMs : 0)
  const progress = actors.map((a) => a.progress)
  const wm = combineWatermarks(progress)
  const unprocessedByInput: Record<string, number> = {}
  for (const input of stage.inputs) unprocessedByInput[input] = 0
  for (const p of progress) for (const [input, n] of Object.entries(p.lagByInput)) unprocessedByInput[input] = (unprocessedByInput[input] ?? 0) + n
  const live = progress.filter((p) => !p.ended)
  const commits = live.map((p) => p.lastCommitAt ?? p.startedAt)
  const checkpointAgeMs = commits.length === 0 ? null : Math.max(0, now - Math.min(...commits))
  const missing = staleSeen + unseenMissing
  // A failed actor is reported (not missing) but does nothing until it is moved or cleared.
  const failed = actors.map((a) => failedActor(a.progress)).filter((f): f is FailedActor => f !== undefined)
  const checkpointStallMs = Math.max(MIN_STALL_MS, CHECKPOINT_STALL_INTERVALS * ctx.intervalMs)
  const rates = stageRates(actors, now)
  return {
    name: stage.name,
    kind: stage.kind,
    inputs: [...stage.inputs],
    parallelism: stage.parallelism,
    watermark: wm === Infinity ? null : wm,
    ended: wm === Infinity,
    watermarkLagMs: watermarkLag(now, wm),
    unprocessed: progress.reduce((n, p) => n + p.lag, 0),
    unprocessedByInput,
    failureRate: rates.failure,
    lateRate: rates.late,
    recordsInRate: rates.recordsIn,
    recordsOutRate: rates.recordsOut,
    checkpointAgeMs,
    actors: {
      running: fresh.filter((a) => isRunning(a.progress) && !a.progress.ended).length,
      missing,
      ended: fresh.filter((a) => a.progress.ended).length,
      failed: failed.length,
      total: Math.max(expected, actors.length),
    },
    failed,
    waiting: fresh.flatMap((a) => (a.progress.waiting === undefined ? [] : [{ actor: a.progress.actor, ...a.progress.waiting }])),
    silentMs,
    stalled: missing > 0 || failed.length > 0 || (checkpointAgeMs !== null && checkpointAgeMs > checkpointStallMs),
  }
}

/** Longest path from a source, per stage: sources 0. Unknown inputs and cycles count as sources. */
export function stageDepths(topology: Topology): Map<string, number> {
  const byName = new Map(topology.stages.map((s) => [s.name, s]))
  const depth = new Map<string, number>()
  const visiting = new Set<string>()
  const visit = (name: string): number => {
    const known = depth.get(name)
    if (known !== undefined) return known
    const stage = byName.get(name)
    if (stage === undefined || visiting.has(name)) return -1
    visiting.add(name)
    const d = stage.inputs.reduce((m, i) => Math.max(m, visit(i) + 1), 0)
    visiting.delete(name)
    depth.set(name, d)
    return d
  }
  for (const s of topology.stages) visit(s.name)
  return depth
}

/** The output stage and every stage upstream of it. */
export function upstreamOf(output: string, topology: Topology): Set<string> {
  const byName = new Map(topology.stages.map((s) => [s.name, s]))
  const seen = new Set<string>()
  const stack = [output]
  while (stack.length > 0) {
    const name = stack.pop()!
    if (seen.has(name) || !byName.has(name)) continue
    seen.add(name)
    stack.push(...byName.get(name)!.inputs)
  }
  return seen
}

export interface HoldingBack {
  stage: string
  reason: string
  /** The stage's actors that failed for good, when that is what holds the output back. */
  failedActors?: string[]
  /** The stage's actors waiting on an outside system, when that is what holds the output back. */
  waitingActors?: string[]
}

/** `12400` → `12 400`: readable at a glance, unambiguous in any locale. */
export function formatCount(n: number): string {
  return Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ' ')
}

/** ms → `3.2 s` (one decimal below a minute, whole seconds above). */
export function formatSeconds(ms: number): string {
  const s = ms / 1000
  return s < 60 ? `${s.toFixed(1)} s` : `${Math.round(s)} s`
}

/** Sources and processors run actors; topic inputs, side outputs and keyed streams are topics others write. */
function hasActors(stage: Pick<TopologyStage, 'kind'>): boolean {
  return stage.kind === 'source' || stage.kind === 'processor'
}

/**
 * Watermark lag for comparisons: no watermark holds back without bound. A topic stage has
 * no actors (its reader makes the watermark), so it adds nothing: its reader counts as a
 * source. A side output or keyed stream is as late as the stage writing it.
 */
function lagOf(s: StageStatus | undefined, stages: ReadonlyMap<string, StageStatus>): number {
  if (s?.kind === 'topic') return 0
  if (s?.kind === 'side' || s?.kind === 'keyed') return lagOf(stages.get(s.inputs[0]!), stages)
  return s?.watermarkLagMs ?? Infinity
}

/**
 * The stage on the output's upstream path (the output included) that holds it back most.
 * A stalled stage (missing actors, or no checkpoint for too long) wins; otherwise the one
 * adding the most watermark delay: its lag minus the largest lag among its inputs (a
 * source: its whole lag). Ties go to the most upstream stage. Null when nothing adds delay.
 */
export function holdingBack(output: string, stages: ReadonlyMap<string, StageStatus>, topology: Topology, now = Date.now()): HoldingBack | null {
  const depths = stageDepths(topology)
  const order = topology.stages.map((s) => s.name)
  const path = [...upstreamOf(output, topology)].filter((n) => stages.has(n) && hasActors(stages.get(n)!))
  // Most upstream first; the topology's own order breaks ties, so the answer is stable.
  path.sort((a, b) => (depths.get(a) ?? 0) - (depths.get(b) ?? 0) || order.indexOf(a) - order.indexOf(b))

  // A failed actor stalls everything downstream of it (its watermark is frozen): it is the answer.
  const failing = path.map((n) => stages.get(n)!).find((s) => s.failed.length > 0)
  if (failing !== undefined) return { stage: failing.name, reason: failedReason(failing), failedActors: failing.failed.map((f) => f.actor) }
  // An actor waiting on an outside system (a sink's store that is down) commits nothing until it answers.
  const waiting = path.map((n) => stages.get(n)!).find((s) => s.waiting.length > 0)
  if (waiting !== undefined) return { stage: waiting.name, reason: waitingReason(waiting, now), waitingActors: waiting.waiting.map((w) => w.actor) }
  const stalled = path.map((n) => stages.get(n)!).find((s) => s.stalled)
  if (stalled !== undefined) return { stage: stalled.name, reason: stalledReason(stalled) }

  let best: { stage: StageStatus; added: number } | undefined
  for (const name of path) {
    const s = stages.get(name)!
    const own = lagOf(s, stages)
    const upstream = s.inputs.length === 0 ? 0 : Math.max(...s.inputs.map((i) => lagOf(stages.get(i), stages)))
    // Infinity − Infinity: the stage has no watermark because an input has none; not its doing.
    const added = own === Infinity && upstream === Infinity ? 0 : own - upstream
    if (added > 0 && (best === undefined || added > best.added)) best = { stage: s, added }
  }
  if (best === undefined) return null
  return { stage: best.stage.name, reason: delayReason(best.stage, best.added) }
}

function failedReason(s: StageStatus): string {
  const each = s.failed.map((f) => `${f.actor} failed${f.quarantined ? ` (quarantined after failing on ${f.failedOn.join(' and ')})` : ` on ${f.worker}`}: ${f.message}`)
  return `${s.name}: ${each.join('; ')}`
}

function waitingReason(s: StageStatus, now: number): string {
  const first = s.waiting[0]!
  const others = s.waiting.length > 1 ? ` (and ${s.waiting.length - 1} more of its actors)` : ''
  return `${s.name}: ${first.actor} waits for ${first.on} for ${formatSeconds(Math.max(0, now - first.since))}${others}${first.message === '' ? '' : `: ${first.message}`}`
}

function stalledReason(s: StageStatus): string {
  if (s.actors.missing > 0) return `${s.name}: ${s.actors.missing} of ${s.actors.total} actors send no progress for ${Math.round(s.silentMs / 1000)} s`
  return `${s.name}: no checkpoint committed for ${formatSeconds(s.checkpointAgeMs ?? 0)}`
}

function delayReason(s: StageStatus, added: number): string {
  const unprocessed = s.unprocessed > 0 ? `; ${formatCount(s.unprocessed)} unprocessed records` : ''
  if (added === Infinity) return `${s.name} has no watermark yet${unprocessed}`
  return `${s.name} adds ${formatSeconds(added)} of watermark delay${unprocessed}`
}

export interface OutputStatus {
  output: string
  /** now − output watermark, ms; 0 once ended; null before the first watermark. */
  timelinessMs: number | null
  /** Max over the output stage's actors of their last commit's end-to-end latency, ms. */
  endToEndMs: number | null
  watermark: number | null
  ended: boolean
  holdingBack: HoldingBack | null
}

/** The timeliness of one output stage. */
export function outputStatus(output: string, actors: readonly ActorSnapshot[], stages: ReadonlyMap<string, StageStatus>, topology: Topology, now: number): OutputStatus {
  const wm = combineWatermarks(actors.map((a) => a.progress))
  const e2e = actors.map((a) => a.progress.endToEndMs).filter((v): v is number => v !== null)
  return {
    output,
    timelinessMs: watermarkLag(now, wm),
    endToEndMs: e2e.length === 0 ? null : Math.max(...e2e),
    watermark: wm === Infinity ? null : wm,
    ended: wm === Infinity,
    holdingBack: wm === Infinity ? null : holdingBack(output, stages, topology, now),
  }
}

/**
 * No actor committed a checkpoint for max(MIN_STALL_MS, 5 × interval) while some still
 * report progress: the pipeline processes (or tries to) but makes nothing durable.
 * Actors that ended are left out; an actor that never committed counts from its start.
 */
export function pipelineStalled(actors: readonly ActorSnapshot[], now: number, intervalMs: number): boolean {
  const reporting = actors.filter((a) => !isMissing(a, now) && !a.progress.ended)
  if (reporting.length === 0) return false
  const newest = Math.max(...actors.filter((a) => !a.progress.ended).map((a) => a.progress.lastCommitAt ?? a.progress.startedAt))
  return now - newest > Math.max(MIN_STALL_MS, STALL_INTERVALS * intervalMs)
}
