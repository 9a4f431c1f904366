/**
 * Typed errors. Every weir error has a stable `code`, a `retriable` flag that retry logic
 * reads (never the message text), and the context an operator needs to act on it.
 *
 * @example
 * try { await pipe.producer('p.s.0') } catch (e) {
 *   if (e instanceof WeirError && e.retriable) scheduleRetry()
 * }
 */
export interface ErrorContext {
  topic?: string
  partition?: number
  offset?: number
  stage?: string
  actor?: string
  field?: string
  [extra: string]: unknown
}

export class WeirError extends Error {
  readonly code: string
  readonly retriable: boolean
  readonly context: ErrorContext

  constructor(code: string, message: string, context: ErrorContext = {}, options: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = code
    this.retriable = options.retriable ?? false
    this.context = context
  }

  /** A plain object for logs and dead-letter records. */
  toJSON(): { name: string; code: string; message: string; retriable: boolean; context: ErrorContext } {
    return { name: this.name, code: this.code, message: this.message, retriable: this.retriable, context: this.context }
  }
}

/** Configuration or CLI input is invalid; `context.field` names what is wrong. */
export class ConfigError extends WeirError {
  constructor(field: string, message: string, context: ErrorContext = {}) {
    super('WEIR_CONFIG_INVALID', `${field}: ${message}`, { ...context, field })
  }
}

/**
 * A stage name that the pipeline does not have (a test reading a stage's output, state or
 * dead letters, say): the message lists the pipeline's stages and the closest one.
 */
export class UnknownStageError extends WeirError {
  constructor(stage: string, pipeline: string, stages: readonly string[], suggestion: string | undefined) {
    const hint = suggestion === undefined ? '' : `; did you mean '${suggestion}'?`
    super('WEIR_STAGE_UNKNOWN', `no stage '${stage}' in pipeline '${pipeline}'; its stages are: ${stages.join(', ')}${hint}`, { stage, pipeline, stages, suggestion })
  }
}

/** A newer instance of this actor's producer exists; this instance must stop without writing. */
export class ActorFencedError extends WeirError {
  /** Epochs are known on the embedded pipe; Kafka only says that a newer producer exists. */
  constructor(transactionalId: string, epoch?: number, currentEpoch?: number, cause?: unknown) {
    const which = epoch === undefined ? '' : ` epoch ${epoch}`
    const by = currentEpoch === undefined ? 'a newer instance' : `epoch ${currentEpoch}`
    super('WEIR_ACTOR_FENCED', `producer ${transactionalId}${which} was fenced by ${by}`, { actor: transactionalId, epoch, currentEpoch }, { cause })
  }
}

/**
 * The pipe failed an operation. `retriable` errors (broker unreachable, leader moving,
 * coordinator loading) clear up on their own: the actor restarts from its last checkpoint.
 * The rest (authorization, invalid configuration) need an operator.
 */
export class PipeError extends WeirError {
  constructor(message: string, context: ErrorContext, options: { retriable: boolean; cause?: unknown; kafkaCode?: string }) {
    super(options.retriable ? 'WEIR_PIPE_UNAVAILABLE' : 'WEIR_PIPE_FAILED', message, { ...context, kafkaCode: options.kafkaCode }, options)
  }
}

/** A topic does not exist or exists with a different shape than the pipeline needs. */
export class TopicError extends WeirError {
  constructor(code: 'WEIR_TOPIC_MISSING' | 'WEIR_TOPIC_MISMATCH', message: string, context: ErrorContext) {
    super(code, message, context)
  }
}

/** A record could not be decoded by its topic's codec. */
export class DecodeError extends WeirError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('WEIR_DECODE_FAILED', message, context, { cause })
  }
}

/** A processor threw while handling a record or timer. */
export class ProcessingError extends WeirError {
  constructor(message: string, context: ErrorContext, cause?: unknown) {
    super('WEIR_PROCESSING_FAILED', message, context, { cause })
  }
}

/**
 * A value handed to `ctx.emit` or a state handle would not come back as it went in (a
 * function, a Map, a class instance, NaN in JSON): refused there, so nothing is lost
 * silently. `path` names the bad field (`value.items[2]`).
 */
export class ValueError extends WeirError {
  constructor(what: string, reason: string, context: ErrorContext & { path: string }) {
    const key = context.key === undefined ? '' : `, key ${JSON.stringify(context.key)}`
    super('WEIR_VALUE_UNSUPPORTED', `stage ${context.stage}${key}: ${what}: ${context.path} ${reason}`, context)
  }
}

/**
 * User code touched state, timers or emit outside the unit it belongs to: keyed state
 * outside a record or timer (in open, onCheckpoint, close), or anything after the record,
 * timer or hook returned (a callback that runs later). Such a change would belong to no
 * checkpoint, or to the wrong key.
 */
export class ScopeError extends WeirError {
  constructor(message: string, context: ErrorContext & { rule: string }) {
    super('WEIR_OUT_OF_SCOPE', message, context)
  }
}

/** The pipeline in a data dir was built from a different topology than the one being started. */
export class TopologyMismatchError extends WeirError {
  constructor(message: string, context: ErrorContext = {}) {
    super('WEIR_TOPOLOGY_CHANGED', message, context)
  }
}

/** Local state is unusable (for example ahead of the changelog); recovery wipes it and replays. */
export class StateCorruptedError extends WeirError {
  constructor(message: string, context: ErrorContext = {}) {
    super('WEIR_STATE_CORRUPTED', message, context)
  }
}

/**
 * A processor's `onCheckpointCommitted` kept failing for a committed checkpoint. Retriable
 * unless the hook's own error was not: the actor restarts and publishes the checkpoint again.
 */
export class PublishError extends WeirError {
  constructor(message: string, context: ErrorContext, options: { retriable: boolean; cause: unknown }) {
    super('WEIR_PUBLISH_FAILED', message, context, options)
  }
}

/**
 * A sink's store refused this instance's write because a newer instance of the actor claimed
 * it (the write of a zombie: a paused instance whose actor moved on). The instance stops as a
 * fenced one does; nothing it wrote after the claim is in the store.
 */
export class SinkFencedError extends WeirError {
  constructor(message: string, context: ErrorContext) {
    super('WEIR_SINK_FENCED', message, context)
  }
}

/**
 * A sink cannot go on with its store for a reason no record is to blame for (a missing table,
 * refused credentials, a store whose progress went backwards): the actor stops, its records
 * are not dead-lettered. `retriable` when a restart may help.
 */
export class SinkError extends WeirError {
  constructor(message: string, context: ErrorContext, options: { retriable?: boolean; cause?: unknown } = {}) {
    super('WEIR_SINK_FAILED', message, context, options)
  }
}

/**
 * Errors about the actor rather than the record it was processing: thrown from `onRecord`
 * they stop (or fence) the actor instead of sending the record to the dead-letter topic.
 */
export function failsActor(err: unknown): boolean {
  return err instanceof ActorFencedError || err instanceof SinkFencedError || err instanceof SinkError || err instanceof StateCorruptedError
}

/** The pipe or store was closed while an operation was waiting on it. */
export class ClosedError extends WeirError {
  constructor(what: string) {
    super('WEIR_CLOSED', `${what} is closed`, {})
  }
}

export function describeError(err: unknown): { name: string; code: string; message: string; stack?: string; context?: ErrorContext } {
  if (err instanceof WeirError) return { ...err.toJSON(), stack: err.stack }
  if (err instanceof Error) return { name: err.name, code: 'WEIR_USER_ERROR', message: err.message, stack: err.stack }
  return { name: 'Thrown', code: 'WEIR_USER_ERROR', message: String(err) }
}
