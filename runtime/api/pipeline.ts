/**
 * The pipeline builder: a named DAG of stages wired through pipe topics. Every edge is a
 * topic, so all in-flight data is durable. `keyBy` gives a stream partitioned by key
 * (Kafka's default partitioner) for the stages that read it only: the writing stage's
 * actors write that partitioning to a topic of its own (a 'keyed' stage, as a side output
 * is), in the same transaction as their other outputs, while readers of the stream itself
 * keep its partitioning.
 */
import { createHash } from 'node:crypto'
import { z } from 'zod'
import type { Codec, CodecName } from '../codec.ts'
import { ConfigError } from '../errors.ts'
import { naming } from '../naming.ts'
import { partitionForKey } from '../partitioner.ts'
import { Processor, Source } from './processor.ts'
import { chainsOf } from './chains.ts'

/**
 * What a stage runs: a Processor class (constructed with no arguments) or a function
 * returning a new processor. `In` is the type of the records the stage reads, `Out` of
 * those it emits.
 *
 * @example
 * const count: ProcessorFactory<string, number> = Count
 * const perMinute: ProcessorFactory<Tick, number> = () => new WindowAggregate({ window: tumbling(60_000), aggregate: average })
 */
export type ProcessorFactory<In, Out> = (new () => Processor<In, Out>) | (() => Processor<In, Out>)

/**
 * What a source stage runs: a Source class or a function returning a new source.
 *
 * @example
 * const numbers: SourceFactory<number> = Numbers
 */
export type SourceFactory<Out> = (new () => Source<Out>) | (() => Source<Out>)

/**
 * The key a keyed stream partitions a record by, from its value (see Stream.keyBy).
 *
 * @example
 * const byPage: KeyOf<PageView> = (view) => view.page
 */
export type KeyOf<T> = (value: T) => string | Uint8Array

/** A factory of any stage, as the topology stores it (`In` never: any input type may be stored). */
type StoredFactory = ProcessorFactory<never, unknown>

/** What a stage does with a record whose decoding or processing throws. */
export type FailurePolicy =
  | { kind: 'dead-letter' }
  | { kind: 'fail-stop' }
  | { kind: 'retry'; attempts: number; backoffMs: number; then: 'dead-letter' | 'fail-stop' }

/** Helpers for `onError`. */
export const policy = {
  /** Send the record, its error and origin to the stage's dead-letter topic, then go on. */
  deadLetter: (): FailurePolicy => ({ kind: 'dead-letter' }),
  /** Stop the actor: the pipeline fails, nothing is committed past the failing record. */
  failStop: (): FailurePolicy => ({ kind: 'fail-stop' }),
  /** Retry `attempts` times with exponential backoff from `backoffMs`, then dead-letter or stop. */
  retry: (attempts: number, backoffMs = 100, then: 'dead-letter' | 'fail-stop' = 'dead-letter'): FailurePolicy => ({ kind: 'retry', attempts, backoffMs, then }),
}

/**
 * How a source (or a topic input) derives event-time watermarks: bounded out-of-orderness,
 * as Flink's `forBoundedOutOfOrderness`. The watermark is the newest event time emitted
 * minus `maxOutOfOrdernessMs` minus 1: records at or below it are late.
 *
 * @example
 * p.source('ticks', Ticks, { partitions: 2, watermarks: { maxOutOfOrdernessMs: 2_000, idleTimeoutMs: 10_000 } })
 */
export interface WatermarkOptions {
  /** How far behind the newest event time a record may still arrive on time, ms. Default 0. */
  maxOutOfOrdernessMs?: number
  /**
   * A source partition that brings no records for this long is idle: downstream
   * watermarks stop waiting for it until it brings records again. Default 30 000; 0 never.
   */
  idleTimeoutMs?: number
}

export interface StageOptions {
  /** Number of actors of a source; other stages take their input topic's partition count. */
  partitions?: number
  /** Event-time watermarks of a source's output (sources only). */
  watermarks?: WatermarkOptions
  /**
   * Names of side outputs the processor writes with `ctx.emitTo(name, …)` (for example a
   * window's `late` records); read them with `stream.sideOutput(name)`.
   */
  sideOutputs?: string[]
  /** Codec of this stage's output topic. Default msgpack. */
  codec?: CodecName | Codec<unknown>
  /** Failure policy. Default: dead-letter. */
  onError?: FailurePolicy
  /**
   * Name of this stage's output topic, for outputs other systems read (default
   * `weir.<pipeline>.<stage>`). Created when missing; never purged.
   */
  topic?: string
  /**
   * Keyed state this stage serves as materialized views, by view name (unique in the
   * pipeline): `GET /views/<pipeline>/<view>/<key>` and `weir peek` read it as of the
   * actor's last committed checkpoint. A string names the keyed state (`this.state.value`,
   * `map` or `list`); an object adds a projection of what is served. See docs/views.md.
   *
   * @example
   * stream.keyBy().process('count', CountWords, { views: { counts: 'count' } })
   * stream.keyBy().process('stats', Stats, { views: { totals: { state: 'stats', project: (s) => s.total } } })
   */
  views?: Record<string, string | ViewOptions>
  /**
   * Run this stage in the actor of its upstream stage, with no topic between them (operator
   * chaining, on by default). `false` opts out: the stage is chained neither to its upstream
   * nor to its downstream, and the edges around it stay topics. A stage is chained only
   * where it is safe: a forward edge that only it reads, no views, no checkpoint hooks
   * (runtime/api/chains.ts has the rule, docs/chaining.md the why).
   *
   * @example
   * lines.process('split', SplitWords, { chain: false }) // split reads lines' topic in actors of its own
   */
  chain?: boolean
}

/**
 * A view of one keyed state with a projection.
 *
 * @example
 * const totals: ViewOptions = { state: 'stats', project: (value, key) => ({ key, total: value.total }) }
 */
export interface ViewOptions {
  /** The keyed state served. */
  state: string
  /** What is served for a key instead of its whole value (runs on each answer, so keep it cheap and pure). */
  project?: (value: any, key: string) => unknown
}

/** @internal A stage's view, resolved. */
export interface ViewSpec {
  name: string
  stage: string
  state: string
  project: ((value: unknown, key: string) => unknown) | undefined
}

/**
 * An existing topic read as a pipeline's input (see Pipeline.fromTopic); `T` is the type
 * of its decoded values.
 *
 * @example
 * const opts: TopicInputOptions<string> = { topic: 'text-lines', partitions: 6, codec: 'string' }
 */
export interface TopicInputOptions<T = unknown> {
  /** The existing topic to read (Kafka topic name). */
  topic: string
  /** Its partition count: the next stage runs one actor per partition. Checked at start. */
  partitions: number
  /** How its values are encoded. Default msgpack; 'string' or 'json' for topics written by other systems. */
  codec?: CodecName | Codec<unknown>
  /** Event time of a record; default the Kafka record timestamp. */
  timestampOf?: (value: T, recordTimestamp: number) => number
  /** Watermarks per partition of the topic. */
  watermarks?: WatermarkOptions
}

export interface StageSpec {
  name: string
  /**
   * 'topic': an existing topic read as input (no actors); see Pipeline.fromTopic.
   * 'side': a side output of the stage in `inputs[0]`, written by its actors (no actors of its own).
   * 'keyed': the stream of `inputs[0]` partitioned by key for the stages that read it,
   * written by the actors that write `inputs[0]` (no actors of its own); see Stream.keyBy.
   */
  kind: 'source' | 'processor' | 'topic' | 'side' | 'keyed'
  factory: StoredFactory
  inputs: string[]
  /** Actors of this stage (= partitions of each input topic). */
  parallelism: number
  /** Partition count of the output topic. */
  outputPartitions: number
  /** Output records are partitioned by key (keyBy) instead of forwarded to the same partition. */
  keyedOutput: boolean
  /** Of a keyed output: the key its records get from their value; default the key they were emitted with. */
  keyOf?: KeyOf<unknown>
  codec: CodecName | Codec<unknown>
  onError: FailurePolicy
  /** An explicitly named output topic (user-owned: created if missing, never purged). */
  topic?: string
  /** Watermark strategy of a source or topic input. */
  watermarks: Required<WatermarkOptions>
  /** Declared side outputs (each has a stage `<name>.<side>` of kind 'side'). */
  sideOutputs: string[]
  /** Of a 'side' stage: the side output's name. */
  sideName?: string
  /** Of a topic input: the event time of a record. */
  timestampOf?: (value: unknown, recordTimestamp: number) => number
  /** Materialized views this stage serves (StageOptions.views). */
  views: ViewSpec[]
  /** StageOptions.chain: false when the stage opted out of chaining. */
  chain?: boolean
}

const defaultWatermarks: Required<WatermarkOptions> = { maxOutOfOrdernessMs: 0, idleTimeoutMs: 30_000 }

const NAME = /^[A-Za-z0-9_-]{1,64}$/
/** state.ts's rule for state names. */
const STATE_NAME = /^[A-Za-z0-9_.-]{1,128}$/
/** Kafka's rule for topic names. */
const TOPIC = /^[A-Za-z0-9._-]{1,249}$/
/**
 * A function option, kept as the user gave it. `z.function()` would hand back a wrapper that
 * validates every call (about 190 ns each): per record for a codec's encode and decode or a
 * `timestampOf`, 30 % of Nexmark q4's CPU with a user codec on its keyed edge.
 */
const fn = z.custom<(...args: never[]) => unknown>((v) => typeof v === 'function', (v: unknown) => ({ message: `Expected function, received ${v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v}` }))
const codecSchema = z.union([z.enum(['msgpack', 'json', 'raw', 'string']), z.object({ name: z.string(), encode: fn, decode: fn })])

const policySchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('dead-letter') }),
  z.object({ kind: z.literal('fail-stop') }),
  z.object({ kind: z.literal('retry'), attempts: z.number().int().min(1).max(100), backoffMs: z.number().min(0).max(600_000), then: z.enum(['dead-letter', 'fail-stop']) }),
])

const watermarkSchema = z
  .object({
    maxOutOfOrdernessMs: z.number().int().min(0).max(365 * 86_400_000).optional(),
    idleTimeoutMs: z.number().int().min(0).max(86_400_000).optional(),
  })
  .strict()

const optionsSchema = z
  .object({
    partitions: z.number().int().min(1).max(4096).optional(),
    watermarks: watermarkSchema.optional(),
    sideOutputs: z.array(z.string().regex(NAME, 'a side output name is 1-64 of A-Z a-z 0-9 _ -')).max(16).optional(),
    codec: codecSchema.optional(),
    onError: policySchema.optional(),
    topic: z.string().regex(TOPIC, 'a topic name is 1-249 of A-Z a-z 0-9 . _ -').optional(),
    views: z
      .record(
        z.string().regex(NAME, 'a view name is 1-64 of A-Z a-z 0-9 _ -'),
        z.union([
          z.string().regex(STATE_NAME, 'a state name is 1-128 of A-Z a-z 0-9 _ . -'),
          z.object({ state: z.string().regex(STATE_NAME, 'a state name is 1-128 of A-Z a-z 0-9 _ . -'), project: fn.optional() }).strict(),
        ]),
      )
      .optional(),
    chain: z.boolean().optional(),
  })
  .strict()

const topicInputSchema = z
  .object({
    topic: z.string().regex(TOPIC, 'a topic name is 1-249 of A-Z a-z 0-9 . _ -'),
    partitions: z.number().int().min(1).max(4096),
    codec: codecSchema.optional(),
    timestampOf: fn.optional(),
    watermarks: watermarkSchema.optional(),
  })
  .strict()

/**
 * For a value that is none of a union's forms (a codec, a view), the issue of the form that got
 * furthest into it (`codec.decode: Expected function`), not zod's "Invalid input".
 */
function mostSpecific(issue: z.ZodIssue): z.ZodIssue {
  if (issue.code !== 'invalid_union') return issue
  let best: z.ZodIssue | undefined
  for (const e of issue.unionErrors) for (const i of e.issues) if (best === undefined || i.path.length > best.path.length) best = i
  return best === undefined ? issue : mostSpecific(best)
}

function validateOptions(stage: string, options: unknown): StageOptions {
  const parsed = optionsSchema.safeParse(options ?? {})
  if (!parsed.success) {
    const issue = mostSpecific(parsed.error.issues[0]!)
    throw new ConfigError(`stages.${stage}.${issue.path.join('.') || 'options'}`, issue.message, { stage })
  }
  return parsed.data as StageOptions
}

/**
 * Options of a whole pipeline.
 *
 * @example
 * new Pipeline('wordcount', { purgeConsumedRecords: false, standbys: 1 })
 */
export interface PipelineOptions {
  /**
   * Delete records of an edge topic once every stage reading it has committed past them,
   * as Kafka Streams purges its repartition topics: every 10 checkpoints of the reading
   * actor and when it stops gracefully. Outputs nobody reads are kept. Default true; false
   * keeps every edge's history (for inspection with weir/testing: readStageOutput refuses a
   * purged edge with WEIR_STAGE_OUTPUT_PURGED).
   */
  purgeConsumedRecords?: boolean
  /**
   * Warm standby replicas of every actor's state kept on other workers of a cluster (by
   * tailing the changelog), so failover does not depend on state size. Default 0.
   */
  standbys?: number
}

/** @internal How a keyed stream partitions its records (see Stream.keyBy). */
export interface Partitioning {
  partitions: number
  keyOf: KeyOf<unknown> | undefined
}

/** @internal What a stage reads: a stage's stream, partitioned as written or by key. */
export interface StageInput {
  stage: string
  partitioning: Partitioning | undefined
}

/**
 * A stage's output, to wire the next stage onto. A stream can be read by several stages
 * (branches); each reads every record.
 */
export class Stream<T> {
  /** @internal */
  constructor(readonly pipeline: Pipeline, readonly stage: string, private readonly partitioning?: Partitioning) {}

  /**
   * This stream partitioned by key (Kafka's murmur2 partitioner) into `partitions`
   * (default: as many as the stream has), as a new stream: the stages that read the
   * returned stream see all records of a key in one partition, so keyed state and timers
   * see all of a key; stages that read this stream keep its partitioning. The key is the
   * one the record was emitted with, or `keyOf(value)` when given (the record then
   * carries that key; a key function that throws or returns no string or bytes fails the
   * writing stage's record, as its own code would). Stages reading the same partitioning
   * (same count, same key function object) share one topic.
   *
   * @example
   * const views = p.source('views', PageViews, { partitions: 2 })
   * views.keyBy((v) => v.page, 4).process('per-page', CountPerPage)
   * views.to('archive', () => new JsonlFileSink({ path: 'out/views-{partition}.jsonl' })) // as the source partitioned them
   */
  keyBy(partitions?: number): Stream<T>
  keyBy(keyOf: KeyOf<T>, partitions?: number): Stream<T>
  keyBy(keyOfOrPartitions?: KeyOf<T> | number, partitions?: number): Stream<T> {
    const keyOf = typeof keyOfOrPartitions === 'function' ? (keyOfOrPartitions as KeyOf<unknown>) : undefined
    const count = typeof keyOfOrPartitions === 'function' ? partitions : keyOfOrPartitions
    return new Stream<T>(this.pipeline, this.stage, this.pipeline.partitionBy(this.stage, keyOf, count, keyOfOrPartitions))
  }

  /**
   * Adds a stage that reads this stream and returns its output. The processor must take
   * this stream's records (`Processor<T, …>` or a wider input type); what it emits is the
   * type of the returned stream.
   *
   * @example
   * lines.process('split', SplitWords) // Stream<string>: SplitWords extends Processor<string, string>
   *   .keyBy(4)
   *   .process('count', CountWords)    // Stream<number>: CountWords extends Processor<string, number>
   */
  process<Out>(name: string, factory: ProcessorFactory<T, Out>, options?: StageOptions): Stream<Out> {
    return this.pipeline.addStage<Out>(name, 'processor', factory as StoredFactory, [{ stage: this.stage, partitioning: this.partitioning }], options)
  }

  /**
   * The records this stream's stage sends to side output `name` (declared in its
   * `sideOutputs` option), as a stream of their own.
   *
   * @example
   * const avg = ticks.process('avg', () => tumbling, { sideOutputs: ['late'] })
   * avg.sideOutput<Tick>('late').to('late-file', () => new JsonlFileSink({ path: 'late.jsonl' }))
   */
  sideOutput<S>(name: string): Stream<S> {
    if (this.partitioning !== undefined) throw new ConfigError(`stages.${this.stage}.sideOutputs`, 'take the side output of the stream itself, then keyBy it: stream.sideOutput(name).keyBy(…)', { stage: this.stage })
    return new Stream<S>(this.pipeline, this.pipeline.sideStage(this.stage, name).name)
  }

  /**
   * Adds a sink stage (a processor whose output nobody reads) that takes this stream's records.
   *
   * @example
   * counts.to('file', () => new JsonlFileSink({ path: 'out/counts-{partition}.jsonl' }))
   */
  to(name: string, factory: ProcessorFactory<T, unknown>, options?: StageOptions): Stream<never> {
    this.process<unknown>(name, factory, options)
    return new Stream<never>(this.pipeline, name)
  }

  /**
   * Two streams into one stage whose processor sees which input each record came from
   * (`record.input`: 0 for this stream, 1 for `other`). Both must have the same partition
   * count; a keyed join keys both to the same count, so the records of a key from either
   * side reach the same actor and share its keyed state and timers. The stage's watermark
   * is the minimum of both inputs'. See docs/joins.md and the joins in weir/processors.
   *
   * @example
   * bids.keyBy((b) => String(b.auction), 4)
   *   .connect(auctions.keyBy((a) => String(a.id), 4))
   *   .process('bid-auction', () => new IntervalJoin({ lowerBoundMs: 0, upperBoundMs: 10_000, join: (bid, auction) => ({ bid, auction }) }))
   */
  connect<U>(other: Stream<U>): ConnectedStreams<T, U> {
    return new ConnectedStreams<T, U>(this.pipeline, [this.asInput(), this.inputFrom(other, 'connect')])
  }

  /**
   * This stream and `others` merged into the stage added next (Flink's union): it reads
   * every record of each, and `record.input` is the index of the stream a record came
   * from (0 for this one, 1 for the first of `others`, …). All must have the same
   * partition count; the stage's watermark is the minimum of theirs.
   *
   * @example
   * eu.union(us, asia).process('all-orders', CountOrders)
   */
  union(...others: Array<Stream<T>>): ConnectedStreams<T, T> {
    if (others.length === 0) throw new ConfigError(`stages.${this.stage}.union`, 'union takes at least one other stream', { stage: this.stage })
    return new ConnectedStreams<T, T>(this.pipeline, [this.asInput(), ...others.map((o) => this.inputFrom(o, 'union'))])
  }

  /** @internal What a stage reading this stream lists as its input. */
  asInput(): StageInput {
    return { stage: this.stage, partitioning: this.partitioning }
  }

  private inputFrom(other: Stream<unknown>, method: string): StageInput {
    if (!(other instanceof Stream) || other.pipeline !== this.pipeline) {
      throw new ConfigError(`stages.${this.stage}.${method}`, `${method} takes a stream of the same pipeline ('${this.pipeline.name}')`, { stage: this.stage })
    }
    return other.asInput()
  }
}

/**
 * Two (or, from `union`, more) streams that the next stage reads together: one actor per
 * partition reads partition p of each, and its processor tells them apart by
 * `record.input`. Made by `Stream.connect` and `Stream.union`.
 *
 * @example
 * const joined = clicks.keyBy(4).connect(users.keyBy(4)).process('enrich', () => new StreamTableJoin({ join: (click, user) => ({ ...click, user }) }))
 */
export class ConnectedStreams<A, B> {
  /** @internal */
  constructor(private readonly pipeline: Pipeline, private readonly inputs: StageInput[]) {}

  /**
   * Adds a stage that reads every connected stream and returns its output; its processor
   * takes records of either type and can ask `record.input` which stream one came from.
   *
   * @example
   * left.connect(right).process('join', () => new IntervalJoin({ lowerBoundMs: -5_000, upperBoundMs: 5_000, join: (l, r) => [l, r] }))
   */
  process<Out>(name: string, factory: ProcessorFactory<A | B, Out>, options?: StageOptions): Stream<Out> {
    return this.pipeline.addStage<Out>(name, 'processor', factory as StoredFactory, this.inputs, options)
  }

  /**
   * Adds a sink stage that reads every connected stream.
   *
   * @example
   * orders.union(refunds).to('ledger', () => new JsonlFileSink({ path: 'out/ledger-{partition}.jsonl' }))
   */
  to(name: string, factory: ProcessorFactory<A | B, unknown>, options?: StageOptions): Stream<never> {
    this.process<unknown>(name, factory, options)
    return new Stream<never>(this.pipeline, name)
  }
}

/**
 * A named pipeline. Export it as the default export of a pipeline file for `weir run`.
 *
 * @example
 * const p = new Pipeline('wordcount')
 * p.source('lines', Lines, { partitions: 2 }).process('split', Split).keyBy().process('count', Count)
 * export default p
 */
export class Pipeline {
  private readonly stages = new Map<string, StageSpec>()
  private readonly outputNotes: string[] = []
  /** The stage addStage is wiring the inputs of (not in `stages` yet, so that keyed stages made for it come before it). */
  private pendingReader: Pick<StageSpec, 'name' | 'kind' | 'inputs'> | undefined

  readonly options: Required<PipelineOptions>

  constructor(readonly name: string, options: PipelineOptions = {}) {
    if (!NAME.test(name)) throw new ConfigError('pipeline.name', `'${name}' must match ${NAME}`)
    const purge = options.purgeConsumedRecords ?? true
    if (typeof purge !== 'boolean') throw new ConfigError('pipeline.purgeConsumedRecords', `must be a boolean, got ${typeof purge}`)
    const standbys = options.standbys ?? 0
    if (!Number.isInteger(standbys) || standbys < 0 || standbys > 3) throw new ConfigError('pipeline.standbys', `must be an integer in 0..3, got ${String(standbys)}`)
    this.options = { purgeConsumedRecords: purge, standbys }
  }

  /**
   * Tells users where results go; `weir run` prints these notes in its summary.
   *
   * @example
   * p.describeOutput('signals: out/ticker/signals.jsonl')
   */
  describeOutput(note: string): this {
    this.outputNotes.push(note)
    return this
  }

  get outputDescriptions(): readonly string[] {
    return this.outputNotes
  }

  /**
   * Adds a source stage: `partitions` actors (default 1), each running its own Source.
   *
   * @example
   * const numbers = p.source('numbers', Numbers, { partitions: 2 }) // Stream<number>: Numbers extends Source<number>
   */
  source<Out>(name: string, factory: SourceFactory<Out>, options?: StageOptions): Stream<Out> {
    return this.addStage<Out>(name, 'source', factory as unknown as StoredFactory, [], options)
  }

  /**
   * Reads an existing topic (for example one that other systems write to Kafka) as the
   * input of the next stage, which runs one actor per partition. Positions are committed
   * with each checkpoint; the topic is never purged. A pipeline with a topic input is
   * unbounded: it runs until stopped.
   *
   * @example
   * p.fromTopic<string>('lines', { topic: 'text-lines', partitions: 6, codec: 'string' })
   *   .process('split', SplitWords).keyBy(8)
   *   .process('count', CountWords, { topic: 'word-counts', codec: 'json' })
   */
  fromTopic<Out>(name: string, options: TopicInputOptions<Out>): Stream<Out> {
    if (!NAME.test(name)) throw new ConfigError(`stages.${name}`, `stage name must match ${NAME}`)
    if (this.stages.has(name)) throw new ConfigError(`stages.${name}`, 'a stage with this name already exists')
    const parsed = topicInputSchema.safeParse(options)
    if (!parsed.success) {
      const issue = mostSpecific(parsed.error.issues[0]!)
      throw new ConfigError(`stages.${name}.${issue.path.join('.') || 'options'}`, issue.message, { stage: name })
    }
    const o = parsed.data as TopicInputOptions<unknown>
    this.stages.set(name, {
      name,
      kind: 'topic',
      factory: () => {
        throw new ConfigError(`stages.${name}`, 'a topic input has no processor')
      },
      inputs: [],
      parallelism: o.partitions,
      outputPartitions: o.partitions,
      keyedOutput: false,
      codec: o.codec ?? 'msgpack',
      onError: { kind: 'dead-letter' },
      topic: o.topic,
      watermarks: { ...defaultWatermarks, ...o.watermarks },
      sideOutputs: [],
      timestampOf: o.timestampOf,
      views: [],
    })
    return new Stream<Out>(this, name)
  }

  /** @internal */
  addStage<Out>(name: string, kind: StageSpec['kind'], factory: StoredFactory, inputs: StageInput[], options?: StageOptions): Stream<Out> {
    if (!NAME.test(name)) throw new ConfigError(`stages.${name}`, `stage name must match ${NAME}`)
    if (this.stages.has(name)) throw new ConfigError(`stages.${name}`, 'a stage with this name already exists')
    if (typeof factory !== 'function') throw new ConfigError(`stages.${name}.processor`, 'must be a Processor class or a function returning a processor')
    const opts = validateOptions(name, options)
    let parallelism: number
    if (kind === 'source') {
      parallelism = opts.partitions ?? 1
    } else {
      const counts = new Set(inputs.map((i) => i.partitioning?.partitions ?? this.stages.get(i.stage)!.parallelism))
      if (counts.size > 1) throw new ConfigError(`stages.${name}.inputs`, `inputs have different partition counts (${[...counts].join(', ')}); keyBy them to the same count`)
      parallelism = [...counts][0]!
      if (opts.partitions !== undefined && opts.partitions !== parallelism) {
        throw new ConfigError(`stages.${name}.partitions`, `a stage runs one actor per input partition (${parallelism}); use keyBy(${opts.partitions}) upstream to change it`)
      }
      if (opts.watermarks !== undefined) throw new ConfigError(`stages.${name}.watermarks`, 'only sources and topic inputs generate watermarks; other stages take the minimum of their inputs')
    }
    const sideOutputs = opts.sideOutputs ?? []
    if (new Set(sideOutputs).size !== sideOutputs.length) throw new ConfigError(`stages.${name}.sideOutputs`, 'a side output is declared twice')
    const views = Object.entries(opts.views ?? {}).map(([view, v]): ViewSpec => (typeof v === 'string' ? { name: view, stage: name, state: v, project: undefined } : { name: view, stage: name, state: v.state, project: v.project as ViewSpec['project'] }))
    for (const v of views) {
      const other = this.view(v.name)
      if (other !== undefined) throw new ConfigError(`stages.${name}.views.${v.name}`, `stage ${other.stage} already serves a view '${v.name}': view names are unique in a pipeline (they name /views/${this.name}/<view>)`, { stage: name })
    }
    for (let i = 0; i < inputs.length; i++) {
      for (let j = 0; j < i; j++) {
        if (sameInput(inputs[i]!, inputs[j]!)) {
          throw new ConfigError(`stages.${name}.inputs`, `inputs ${j} and ${i} are the same stream (of stage '${inputs[i]!.stage}'): a stage reads a stream once; a self-join reads it once and keeps both sides in one processor`, { stage: name })
        }
      }
    }
    // Everything is valid: only now may wiring the inputs rearrange how their stages write.
    // The new stage already counts as a reader of the inputs wired before the next one, so
    // two partitionings of one stream (connect(s.keyBy(f), s)) get a topic each.
    const reader = { name, kind, inputs: [] as string[] }
    this.pendingReader = reader
    try {
      for (const i of inputs) {
        // Wiring an input may rename an earlier one of this stage (moved to a keyed stage): push after it.
        const stage = this.inputStage(i)
        reader.inputs.push(stage)
      }
    } finally {
      this.pendingReader = undefined
    }
    this.stages.set(name, {
      name,
      kind,
      factory,
      inputs: reader.inputs,
      parallelism,
      outputPartitions: parallelism,
      keyedOutput: false,
      codec: opts.codec ?? 'msgpack',
      onError: opts.onError ?? { kind: 'dead-letter' },
      topic: opts.topic,
      watermarks: { ...defaultWatermarks, ...opts.watermarks },
      sideOutputs,
      views,
      chain: opts.chain,
    })
    // Each side output is a stage of its own (no actors), so the stages reading it wire
    // onto it like onto any stream; its name has a dot, which user stage names cannot.
    for (const side of sideOutputs) {
      this.stages.set(`${name}.${side}`, {
        name: `${name}.${side}`,
        kind: 'side',
        factory: () => {
          throw new ConfigError(`stages.${name}.sideOutputs`, 'a side output has no processor')
        },
        inputs: [name],
        parallelism,
        outputPartitions: parallelism,
        keyedOutput: false,
        codec: 'msgpack',
        onError: { kind: 'dead-letter' },
        watermarks: defaultWatermarks,
        sideOutputs: [],
        sideName: side,
        views: [],
      })
    }
    return new Stream<Out>(this, name)
  }

  /** @internal The stage of side output `side` of `stage`. */
  sideStage(stage: string, side: string): StageSpec {
    const spec = this.stages.get(`${stage}.${side}`)
    if (spec === undefined || spec.kind !== 'side') throw new ConfigError(`stages.${stage}.sideOutputs`, `no side output '${side}' is declared (declared: ${this.stages.get(stage)?.sideOutputs.join(', ') || 'none'})`, { stage })
    return spec
  }

  /**
   * @internal The partitioning `Stream.keyBy` asks for, checked. A stream nobody reads yet
   * is written keyed at once (a stage's own output topic, as before keyed streams were
   * streams of their own), so that keying a pipeline's output keeps working.
   */
  partitionBy(stage: string, keyOf: KeyOf<unknown> | undefined, partitions: number | undefined, given: unknown): Partitioning {
    const spec = this.stages.get(stage)!
    if (given !== undefined && typeof given !== 'function' && typeof given !== 'number') {
      throw new ConfigError(`stages.${stage}.keyBy`, `takes a key function, a partition count, or both (keyBy(keyOf, partitions)); got ${typeof given}`, { stage })
    }
    if (partitions !== undefined && (!Number.isInteger(partitions) || partitions < 1 || partitions > 4096)) {
      throw new ConfigError(`stages.${stage}.keyBy`, `partitions must be an integer in 1..4096, got ${partitions}`, { stage })
    }
    if (spec.kind === 'topic') {
      throw new ConfigError(`stages.${stage}.keyBy`, `topic input '${stage}' is partitioned by the systems that write ${spec.topic!}; keyBy the output of the stage that reads it`, { stage })
    }
    const partitioning: Partitioning = { partitions: partitions ?? spec.parallelism, keyOf }
    if (this.readersOf(stage).length === 0 && !spec.keyedOutput) writeKeyed(spec, partitioning)
    return partitioning
  }

  /**
   * The stage a reader of `input` lists as its input. A stage's own output topic carries
   * the partitioning of its readers as long as they agree (one topic, and the topology a
   * pipeline had before keyed streams were streams of their own); every other partitioning
   * readers ask for is a 'keyed' stage of its own, whose topic the same actors write. So a
   * branch keyed by key and a branch reading the stream as written each get theirs.
   */
  private inputStage(input: StageInput): string {
    const spec = this.stages.get(input.stage)!
    const wanted = input.partitioning
    const readers = this.readersOf(spec.name)
    if (wanted === undefined) {
      if (spec.keyedOutput) {
        // Readers of the keyed output move to a keyed stage; the output goes back to as written.
        if (readers.length > 0) {
          const keyed = this.addKeyedStage(spec, { partitions: spec.outputPartitions, keyOf: spec.keyOf })
          for (const r of readers) r.inputs = r.inputs.map((i) => (i === spec.name ? keyed.name : i))
        }
        spec.keyedOutput = false
        spec.outputPartitions = spec.parallelism
        spec.keyOf = undefined
      }
      return spec.name
    }
    if (spec.keyedOutput && samePartitioning(spec, wanted)) return spec.name
    if (readers.length === 0) {
      writeKeyed(spec, wanted)
      return spec.name
    }
    const existing = this.keyedStagesOf(spec.name).find((k) => samePartitioning(k, wanted))
    return (existing ?? this.addKeyedStage(spec, wanted)).name
  }

  private addKeyedStage(of: StageSpec, partitioning: Partitioning): StageSpec {
    // Two dots: neither a user stage (no dots) nor a side output (`stage.side`) can have this name.
    const name = `${of.name}.keyBy.${this.keyedStagesOf(of.name).length + 1}`
    const spec: StageSpec = {
      name,
      kind: 'keyed',
      factory: () => {
        throw new ConfigError(`stages.${of.name}.keyBy`, 'a keyed stream has no processor')
      },
      inputs: [of.name],
      parallelism: of.parallelism,
      outputPartitions: partitioning.partitions,
      keyedOutput: true,
      keyOf: partitioning.keyOf,
      views: [],
      codec: of.codec,
      onError: { kind: 'dead-letter' },
      watermarks: defaultWatermarks,
      sideOutputs: [],
    }
    this.stages.set(name, spec)
    return spec
  }

  /** Stages that read `stage`'s stream as its own output topic carries it (and the stage being added, while its inputs are wired). */
  private readersOf(stage: string): Array<Pick<StageSpec, 'name' | 'kind' | 'inputs'>> {
    const readers: Array<Pick<StageSpec, 'name' | 'kind' | 'inputs'>> = this.downstreamOf(stage)
    if (this.pendingReader?.inputs.includes(stage) === true) readers.push(this.pendingReader)
    return readers
  }

  /** Keyed stages of `stage`: its stream partitioned otherwise than its own output topic, for the stages reading each. */
  keyedStagesOf(stage: string): StageSpec[] {
    return this.topology.filter((s) => s.kind === 'keyed' && s.inputs[0] === stage)
  }

  /** The stage whose actors write `stage`'s topic: itself, or for a side output or keyed stage the stage they come from; undefined for a topic input. */
  writerOf(stage: StageSpec): StageSpec | undefined {
    let s = stage
    while (s.kind === 'side' || s.kind === 'keyed') s = this.stages.get(s.inputs[0]!)!
    return s.kind === 'topic' ? undefined : s
  }

  /** Every stage whose topic the actors of `stage` write: its output, its side outputs, and the keyed stages of each. */
  writtenBy(stage: StageSpec): StageSpec[] {
    const own = [stage, ...this.sideStagesOf(stage.name)]
    return own.flatMap((s) => [s, ...this.keyedStagesOf(s.name)])
  }

  /** Stages in the order they were added (a topological order). */
  get topology(): StageSpec[] {
    return [...this.stages.values()]
  }

  /** Stages that run actors (all but topic inputs, side outputs and keyed stages). */
  get actorStages(): StageSpec[] {
    return this.topology.filter((s) => s.kind === 'source' || s.kind === 'processor')
  }

  /** The topic a stage writes (or, for a topic input, reads; for a side output or keyed stage, the stage it comes from writes). */
  outputTopic(stage: StageSpec): string {
    if (stage.kind === 'side') return naming.side(this.name, stage.inputs[0]!, stage.sideName!)
    return stage.topic ?? naming.output(this.name, stage.name)
  }

  /** Side output stages of `stage`. */
  sideStagesOf(stage: string): StageSpec[] {
    return this.topology.filter((s) => s.kind === 'side' && s.inputs[0] === stage)
  }

  /**
   * The actors that may write partition `partition` of `stage`'s output topic: all actors
   * of the writing stage for a keyed edge, the one with the same partition for a forward
   * edge; undefined for a topic input, whose writers are outside the pipeline.
   */
  writersOf(stage: StageSpec, partition: number): string[] | undefined {
    const writer = this.writerOf(stage)
    if (writer === undefined) return undefined
    if (stage.keyedOutput) return Array.from({ length: writer.parallelism }, (_, p) => naming.actor(writer.name, p))
    return [naming.actor(writer.name, partition % writer.parallelism)]
  }

  stage(name: string): StageSpec | undefined {
    return this.stages.get(name)
  }

  /** The materialized views of the pipeline's stages (StageOptions.views). */
  get views(): ViewSpec[] {
    return this.topology.flatMap((s) => s.views)
  }

  /** The view named `name`, if a stage serves one. */
  view(name: string): ViewSpec | undefined {
    for (const s of this.stages.values()) {
      const v = s.views.find((x) => x.name === name)
      if (v !== undefined) return v
    }
    return undefined
  }

  /**
   * The partition of `stage` that holds the state of record key `key`, when its inputs are
   * partitioned by key (keyBy: the pipe's murmur2 partitioner); undefined when they are not
   * (forwarded records: a key may be in any partition).
   */
  partitionOfKey(stage: StageSpec, key: Buffer): number | undefined {
    return this.isKeyPartitioned(stage) ? partitionForKey(key, stage.parallelism) : undefined
  }

  /** Whether every input of `stage` is partitioned by record key (so a key's state is in partitionOfKey). */
  isKeyPartitioned(stage: StageSpec): boolean {
    if (stage.kind !== 'processor' || stage.inputs.length === 0) return false
    return stage.inputs.every((i) => this.stages.get(i)?.kind === 'keyed' || this.stages.get(i)?.keyedOutput === true)
  }

  /**
   * Stages that read `stage`'s topic (its side outputs and keyed stages are topics it
   * writes, not readers: see writtenBy).
   */
  downstreamOf(stage: string): StageSpec[] {
    return this.topology.filter((s) => s.kind !== 'side' && s.kind !== 'keyed' && s.inputs.includes(stage))
  }

  /** Stages whose output nobody reads: the pipeline's outputs. */
  get outputs(): StageSpec[] {
    return this.actorStages.filter((s) => this.downstreamOf(s.name).length === 0 && this.keyedStagesOf(s.name).length === 0)
  }

  /** The shape that state and offsets depend on; a change here cannot reuse existing state (savepoints, which would carry it across, are not built yet). */
  describe(): TopologyDescription {
    const chains = chainsOf(this)
    return {
      pipeline: this.name,
      stages: this.topology.map((s) => ({ name: s.name, kind: s.kind, inputs: s.inputs, parallelism: s.parallelism, outputPartitions: s.outputPartitions, keyedOutput: s.keyedOutput, topic: s.topic, chainedTo: chains.upstreamOf.get(s.name) })),
    }
  }

  fingerprint(): string {
    return createHash('sha256').update(JSON.stringify(this.describe())).digest('hex').slice(0, 16)
  }
}

/** Whether two inputs of a stage would read the same topic: the same stream, partitioned alike. */
function sameInput(a: StageInput, b: StageInput): boolean {
  if (a.stage !== b.stage) return false
  if (a.partitioning === undefined || b.partitioning === undefined) return a.partitioning === b.partitioning
  return a.partitioning.partitions === b.partitioning.partitions && a.partitioning.keyOf === b.partitioning.keyOf
}

function writeKeyed(spec: StageSpec, partitioning: Partitioning): void {
  spec.keyedOutput = true
  spec.outputPartitions = partitioning.partitions
  spec.keyOf = partitioning.keyOf
}

function samePartitioning(spec: StageSpec, partitioning: Partitioning): boolean {
  return spec.keyedOutput && spec.outputPartitions === partitioning.partitions && spec.keyOf === partitioning.keyOf
}

export interface TopologyDescription {
  pipeline: string
  stages: Array<Pick<StageSpec, 'name' | 'kind' | 'inputs' | 'parallelism' | 'outputPartitions' | 'keyedOutput' | 'topic'> & {
    /** The stage this one is chained to (runs in its actor, no topic between them); absent when not chained. */
    chainedTo?: string
  }>
}

/** Instantiates a stage's processor from its factory. */
export function instantiate(spec: StageSpec): Processor<unknown, unknown> {
  const f = spec.factory as unknown as { prototype?: unknown }
  const isClass = typeof f.prototype === 'object' && f.prototype instanceof Processor
  // The runtime hands a processor only records of its input's type (the builder's types
  // checked it), so it may hold it as taking any record.
  const p: unknown = isClass ? new (spec.factory as new () => Processor<never, unknown>)() : (spec.factory as () => Processor<never, unknown>)()
  if (!(p instanceof Processor)) throw new ConfigError(`stages.${spec.name}.processor`, 'the factory did not return a Processor')
  if (spec.kind === 'source' && !(p instanceof Source)) throw new ConfigError(`stages.${spec.name}.processor`, 'a source stage needs a Source')
  if (spec.kind === 'processor' && p instanceof Source) throw new ConfigError(`stages.${spec.name}.processor`, 'a Source can only be added with pipeline.source()')
  return p as Processor<unknown, unknown>
}

