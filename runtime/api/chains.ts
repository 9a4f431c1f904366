/**
 * Operator chaining: which stages run in one actor with their upstream stage, with no topic
 * between them (Flink chains operators the same way). A chain is one actor, one transaction:
 * its input positions, every member's state changes and every member's outputs commit
 * together (runtime/actor/actor.ts runs it, checkpoint.ts commits it).
 *
 * The rule: stage B is chained to stage A when all of these hold.
 * - B is a processor (not a source) with exactly one input, and that input is A's own
 *   stream as A writes it: not a `keyBy` stream, not a side output, not a topic input.
 * - A is a source or a processor with the same parallelism as B (a forward edge: actor p
 *   of A writes only partition p, which only actor p of B reads).
 * - B is the only stage reading A's stream, and A's output topic has no explicit name
 *   (`topic` option: other systems read it, so it must be written). A's keyed streams and
 *   side outputs may be read by anyone: they stay topics, written in the chain's transaction.
 * - Neither A nor B serves views (a view answers from its actor's own committed store).
 * - B's processor defines neither `onCheckpoint` nor `onCheckpointCommitted`: those are
 *   sinks that stage or publish external writes and name their progress by input position,
 *   which a chained stage does not have.
 * - Neither A nor B opted out with `chain: false`.
 *
 * A chain is a line: A has at most one chained successor (B is A's only reader), which may
 * have its own, and so on.
 */
import type { Pipeline, StageSpec } from './pipeline.ts'
import { instantiate } from './pipeline.ts'
import { constructProcessor } from './state.ts'

/** How a pipeline's actor stages are chained. */
export interface ChainPlan {
  /** Stage → the stage it is chained to (runs in that stage's actor, reads its records directly). */
  readonly upstreamOf: ReadonlyMap<string, string>
  /** Stage → the stage chained to it. */
  readonly downstreamOf: ReadonlyMap<string, string>
}

/** Whether a stage's processor has checkpoint hooks, by spec (each processor is constructed once to find out). */
const hooksOf = new WeakMap<StageSpec, boolean>()

function hasCheckpointHooks(spec: StageSpec): boolean {
  let known = hooksOf.get(spec)
  if (known === undefined) {
    let p
    try {
      p = constructProcessor(spec.name, () => instantiate(spec))
    } catch {
      // A factory that fails is refused when the run starts (validateFactories), with its own error.
      return true
    }
    known = p.onCheckpoint !== undefined || p.onCheckpointCommitted !== undefined
    hooksOf.set(spec, known)
  }
  return known
}

/**
 * Why `downstream` is not chained to its input, or undefined when it is. Constructs the
 * processor of `downstream` once (cached) to see whether it has checkpoint hooks.
 *
 * @example
 * chainRefusal(pipeline, pipeline.stage('split')!) // undefined: split runs in the actor of its source
 */
export function chainRefusal(pipeline: Pipeline, downstream: StageSpec): string | undefined {
  if (downstream.kind !== 'processor') return 'only processors are chained to their upstream'
  if (downstream.chain === false) return 'it opted out (chain: false)'
  if (downstream.inputs.length !== 1) return 'it has more than one input'
  const upstream = pipeline.stage(downstream.inputs[0]!)
  if (upstream === undefined || (upstream.kind !== 'source' && upstream.kind !== 'processor')) return 'its input is a keyed stream, a side output or a topic input'
  if (upstream.chain === false) return `its upstream '${upstream.name}' opted out (chain: false)`
  if (upstream.keyedOutput) return 'it reads its input partitioned by key'
  if (upstream.parallelism !== downstream.parallelism) return 'its upstream has another parallelism'
  if (upstream.topic !== undefined) return `its upstream writes a named topic (${upstream.topic}) that must stay written`
  if (pipeline.downstreamOf(upstream.name).length !== 1) return `another stage also reads '${upstream.name}'`
  if (upstream.views.length > 0 || downstream.views.length > 0) return 'a stage serving views is not chained'
  if (hasCheckpointHooks(downstream)) return 'its processor has checkpoint hooks (onCheckpoint, onCheckpointCommitted)'
  return undefined
}

/**
 * The chains of a pipeline (see the file comment for the rule).
 *
 * @example
 * const plan = chainsOf(pipeline)
 * plan.upstreamOf.get('split') // 'lines': split runs in the actors of source lines
 */
export function chainsOf(pipeline: Pipeline): ChainPlan {
  const upstreamOf = new Map<string, string>()
  const downstreamOf = new Map<string, string>()
  for (const spec of pipeline.actorStages) {
    if (chainRefusal(pipeline, spec) !== undefined) continue
    upstreamOf.set(spec.name, spec.inputs[0]!)
    downstreamOf.set(spec.inputs[0]!, spec.name)
  }
  return { upstreamOf, downstreamOf }
}

/** The stage whose actor runs `stage`: the head of its chain (itself when it is not chained to anything). */
export function chainHead(plan: ChainPlan, stage: string): string {
  let s = stage
  for (let up = plan.upstreamOf.get(s); up !== undefined; up = plan.upstreamOf.get(s)) s = up
  return s
}

/** The stages chained after `head`, in order. */
export function chainMembers(plan: ChainPlan, head: string): string[] {
  const out: string[] = []
  for (let next = plan.downstreamOf.get(head); next !== undefined; next = plan.downstreamOf.get(next)) out.push(next)
  return out
}

/** The actor stages that run actors of their own: every stage not chained to an upstream. */
export function chainHeads(pipeline: Pipeline, plan: ChainPlan = chainsOf(pipeline)): StageSpec[] {
  return pipeline.actorStages.filter((s) => !plan.upstreamOf.has(s.name))
}
