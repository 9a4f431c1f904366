/**
 * Writes one actor's state into a savepoint directory: the entries of its store (a local
 * store brought to its changelog's end, or a snapshot of a frozen actor's) sorted into the
 * neutral files of manifest.ts. Used by both ways of taking a savepoint: of a stopped
 * pipeline (runner/create-savepoint.ts) and of a running one (live.ts).
 *
 * @example
 * const { actor } = await writeActorState({ pipeline, spec, partition: 0, entries: store.entries(), target })
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Pipeline, StageSpec } from '../api/pipeline.ts'
import { schemasOf } from './plan.ts'
import { INPUT_POSITIONS, SOURCE_FINISHED } from '../actor/state-keys.ts'
import { stateCodec } from '../codec.ts'
import { FrameWriter } from './frames.ts'
import type { SavepointActor, SavepointFile, SavepointState } from './manifest.ts'
import { classify } from './store-layout.ts'

/** Actor-scoped runtime entries a savepoint leaves out: what a restored actor must not redo. */
const NOT_SAVED = new Set(['#checkpoint', '#epoch'])

/** The states a stage's processor declares, as the manifest lists them. */
export function stageStates(spec: StageSpec): SavepointState[] {
  return schemasOf(spec).map((s) => ({ name: s.name, kind: s.kind, keyed: s.keyed, version: s.version }))
}

export interface ActorStateArgs {
  pipeline: Pipeline
  spec: StageSpec
  partition: number
  /** The actor's stored entries, in any order. */
  entries: AsyncIterable<{ key: Buffer; value: Buffer }>
  /** The savepoint directory; the actor's files go to `stages/<stage>/<partition>/`. */
  target: string
}

/** Writes the actor's files; returns its manifest entry and its positions in topics from outside the pipeline. */
export async function writeActorState(args: ActorStateArgs): Promise<{ actor: SavepointActor; topicPositions: Record<string, number> }> {
  const { pipeline, spec, partition: p, target } = args
  const externalTopics = new Set(spec.inputs.map((i) => pipeline.stage(i)!).filter((s) => s.kind === 'topic').map((s) => pipeline.outputTopic(s)))
  const dir = join('stages', spec.name, String(p))
  mkdirSync(join(target, dir), { recursive: true })
  const writers = new Map<string, FrameWriter>()
  const writer = (name: string): FrameWriter => {
    let w = writers.get(name)
    if (w === undefined) {
      w = FrameWriter.create(join(target, dir, `${name}.frames`))
      writers.set(name, w)
    }
    return w
  }
  const actor: SavepointActor = { partition: p, keys: {}, timers: 0, finished: false, files: {} }
  const topicPositions: Record<string, number> = {}
  let n = 0
  for await (const { key, value } of args.entries) {
    const e = classify(key, value)
    if (e.kind === 'keyed') {
      writer(`keyed.${e.state}`).addBytesPair(e.key, e.value)
      actor.keys[e.state] = (actor.keys[e.state] ?? 0) + 1
    } else if (e.kind === 'timer') {
      writer('timers').add([e.domain, e.time, e.key])
      actor.timers++
    } else if (e.kind === 'actor') {
      if (NOT_SAVED.has(e.name)) continue
      let bytes = e.value
      if (e.name === INPUT_POSITIONS) {
        // Positions in the pipeline's own topics mean nothing on another pipe (the cut has nothing in flight there); those in outside topics are kept.
        const kept = Object.fromEntries(Object.entries(stateCodec.decode(e.value) as Record<string, number>).filter(([t]) => externalTopics.has(t)))
        Object.assign(topicPositions, kept)
        if (Object.keys(kept).length === 0) continue
        bytes = stateCodec.encode(kept)
      }
      if (e.name === SOURCE_FINISHED) actor.finished = stateCodec.decode(e.value) === true
      writer('actor').add([e.name, bytes])
    }
    if (++n % 4096 === 0) await Promise.all([...writers.values()].map((w) => w.drained()))
  }
  for (const [name, w] of writers) {
    const summary = await w.close()
    actor.files[name] = { path: join(dir, `${name}.frames`), ...summary } satisfies SavepointFile
  }
  return { actor, topicPositions }
}
