/**
 * What user code emits, as pipe records: encoded with the output's codec and partitioned
 * as the stage's output says (by key with Kafka's partitioner after a keyBy, else to the
 * actor's own partition), and once more to each keyed stream of that output (partitioned
 * by key for the stages reading it). Records are held by the current unit and reach the
 * transaction only when the unit succeeded, so every copy commits or none does.
 */
import type { Pipeline, StageSpec } from '../api/pipeline.ts'
import type { EmitOptions } from '../api/processor.ts'
import { codecFor, encodeForSend, type Codec, type CodecName } from '../codec.ts'
import { ValueError, WeirError } from '../errors.ts'
import { partitionForKey } from '../partitioner.ts'
import type { OutgoingRecord } from '../pipe/pipe.ts'
import { checkValue, copyCheckedValue, findValueProblem, VALUE_REFUSED, type ValueProblem } from '../values.ts'
import { isTextKey, keyBytes } from '../record-keys.ts'
import { HandedRecord } from './handed.ts'
import type { UnitScope } from './scope.ts'

interface Output {
  topic: string
  spec: StageSpec
  codec: Codec<unknown>
  /** The built-in codec whose round trip values are checked against; undefined for a user codec. */
  builtin: CodecName | undefined
  /** `ctx.emit` or `ctx.emitTo('name')`, for errors. */
  what: string
}

export class Outputs {
  /** The stage's output and its keyed streams. */
  private readonly main: Output[]
  /** Each side output and its keyed streams. */
  private readonly sides = new Map<string, Output[]>()
  /** The output topic a chained stage reads in this actor: its records are handed as values (handed.ts). */
  private chainedTopic: string | undefined

  constructor(pipeline: Pipeline, private readonly spec: StageSpec, private readonly partition: number, private readonly actor: string, private readonly scope: UnitScope) {
    const withKeyed = (s: StageSpec, what: string): Output[] => [s, ...pipeline.keyedStagesOf(s.name)].map((o) => output(pipeline, o, what))
    this.main = withKeyed(spec, 'ctx.emit')
    for (const side of pipeline.sideStagesOf(spec.name)) {
      this.sides.set(side.sideName!, withKeyed(side, `ctx.emitTo('${side.sideName!}')`))
    }
  }

  /**
   * The stage's output is read by the stage chained to it, in this actor: records to it are
   * handed over as copies of their values, not encoded, when its codec is msgpack or string
   * (whose round trip checkValue makes exact); another codec's are still encoded.
   */
  chainTo(topic: string): void {
    this.chainedTopic = topic
  }

  /** `ctx.emit`: a record to the stage's output. */
  emit(key: string | Uint8Array | null, value: unknown, options: EmitOptions | undefined): void {
    for (const out of this.main) this.hold(out, key, value, options)
  }

  /** `ctx.emitTo`: a record to side output `name`. */
  emitTo(name: string, key: string | Uint8Array | null, value: unknown, options: EmitOptions | undefined): void {
    const side = this.sides.get(name)
    if (side === undefined) throw new WeirError('WEIR_SIDE_OUTPUT_UNKNOWN', `stage ${this.spec.name} has no side output '${name}' (declare it in the stage's sideOutputs option)`, { stage: this.spec.name, actor: this.actor })
    for (const out of side) this.hold(out, key, value, options)
  }

  private hold(out: Output, key: string | Uint8Array | null, value: unknown, options: EmitOptions | undefined): void {
    this.scope.requireUnit(out.what)
    if (key !== null && typeof key !== 'string' && !(key instanceof Uint8Array)) {
      const given = key === undefined ? 'undefined' : `a ${typeof key}${typeof key === 'bigint' || typeof key === 'number' ? ` (${String(key)})` : ''}`
      throw new ValueError(out.what, `is ${given}; a record key is a string, a Buffer or null: convert it (String(key)) or emit null for no key`, { stage: this.spec.name, actor: this.actor, path: 'key' })
    }
    const handing = out.topic === this.chainedTopic && (out.builtin === 'msgpack' || out.builtin === 'string')
    // What a chained stage gets: a copy taken now (the sender may change its object later).
    let handedValue = value
    if (out.builtin !== undefined && value !== undefined) {
      let problem: ValueProblem | undefined
      if (handing && out.builtin === 'msgpack') {
        // Handed over without an encode, frozen objects are checked too: the encode is what
        // catches, on a topic, a value user code froze that msgpack cannot hold.
        const copy = copyCheckedValue(value)
        if (copy === VALUE_REFUSED) problem = findValueProblem(value, 'msgpack') ?? { path: 'value', reason: 'is not a value msgpack gives back unchanged' }
        else handedValue = copy
      } else problem = checkValue(value, out.builtin)
      if (problem !== undefined) throw new ValueError(out.what, problem.reason, { stage: this.spec.name, actor: this.actor, key, path: problem.path, codec: out.builtin })
    }
    const keyOf = out.spec.keyOf
    const newKey = keyOf === undefined ? key : keyOf(value)
    if (keyOf !== undefined && typeof newKey !== 'string' && !(newKey instanceof Uint8Array)) {
      throw new WeirError('WEIR_KEY_INVALID', `the keyBy key function of stage ${this.spec.name} returned ${newKey === null ? 'null' : typeof newKey}; it must return a string or a Uint8Array`, { stage: this.spec.name, actor: this.actor })
    }
    const n = out.spec.outputPartitions
    const timestamp = options?.timestamp ?? this.scope.timestamp
    // The key as the producer takes it: the record's own key's bytes when emitting under it (a
    // count, an aggregate), a text key as itself (written as UTF-8 into the batch; see
    // partitionForKey), other keys as their bytes.
    let keyOut: Buffer | string | null
    if (newKey === null) keyOut = null
    else if (newKey === this.scope.key && this.scope.keyBytes !== null) keyOut = this.scope.keyBytes
    else if (typeof newKey === 'string' && !handing && isTextKey(newKey)) keyOut = newKey
    else keyOut = keyBytes(newKey)
    const partition = out.spec.keyedOutput && keyOut !== null ? partitionForKey(keyOut, n) : this.partition % n
    if (handing) {
      // A handed record keeps its key as bytes: the text branch above is skipped when handing.
      const handed = new HandedRecord(keyOut as Buffer | null, handedValue, timestamp, out.codec)
      if (options?.headers !== undefined) handed.headers = options.headers
      this.scope.emits.push({ topic: out.topic, partition, record: handed })
      return
    }
    let valueOut: Buffer | string | null
    try {
      valueOut = value === undefined ? null : encodeForSend(out.codec, value)
    } catch (err) {
      // A frozen object skips the check above (taken as a checked state value); one frozen by
      // user code that the codec refused is reported as the check would have.
      const c = err instanceof WeirError && err.code === 'WEIR_VALUE_UNSUPPORTED' ? err.context : undefined
      if (c === undefined || typeof c.reason !== 'string' || typeof c.path !== 'string') throw err
      throw new ValueError(out.what, c.reason, { stage: this.spec.name, actor: this.actor, key, path: c.path, codec: out.builtin })
    }
    const record: OutgoingRecord = { key: keyOut, value: valueOut, timestamp }
    if (options?.headers !== undefined) record.headers = options.headers
    this.scope.emits.push({ topic: out.topic, partition, record })
  }
}

function output(pipeline: Pipeline, spec: StageSpec, what: string): Output {
  return { topic: pipeline.outputTopic(spec), spec, codec: codecFor(spec.codec), builtin: typeof spec.codec === 'string' ? spec.codec : undefined, what }
}
