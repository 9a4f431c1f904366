/**
 * kafkajs errors → weir's typed errors. Fencing is its own class (the actor stops without
 * writing); everything else becomes a PipeError whose `retriable` flag follows Kafka's.
 */
import { ActorFencedError, PipeError, WeirError, type ErrorContext } from '../../errors.ts'

interface KafkaJsErrorLike {
  name?: string
  message?: string
  type?: string
  retriable?: boolean
  cause?: unknown
  originalError?: unknown
}

/** The chain of causes kafkajs builds (retries wrap the last error). */
function* causes(err: unknown): Generator<KafkaJsErrorLike> {
  let e: unknown = err
  for (let depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    const k = e as KafkaJsErrorLike
    yield k
    e = k.originalError ?? k.cause
  }
}

const FENCED = new Set(['INVALID_PRODUCER_EPOCH', 'PRODUCER_FENCED', 'INVALID_PRODUCER_ID_MAPPING', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED_FENCED'])

/** True when the error says a newer producer with the same transactional id exists. */
export function isFenced(err: unknown): boolean {
  for (const c of causes(err)) {
    if (c.type !== undefined && FENCED.has(c.type)) return true
    if (typeof c.message === 'string' && /fenced|has been fenced|Producer attempted an operation with an old epoch/i.test(c.message)) return true
  }
  return false
}

/** The Kafka error type deepest in the chain, for logs. */
export function kafkaCode(err: unknown): string | undefined {
  let code: string | undefined
  for (const c of causes(err)) if (c.type !== undefined) code = c.type
  return code
}

function retriable(err: unknown): boolean {
  for (const c of causes(err)) {
    if (c.retriable === true) return true
    if (c.name === 'KafkaJSConnectionError' || c.name === 'KafkaJSRequestTimeoutError' || c.name === 'KafkaJSNumberOfRetriesExceeded' || c.name === 'KafkaJSConnectionClosedError') return true
    // The coordinator of a group or transactional id is missing while its internal topic is created or loaded.
    if (c.name === 'KafkaJSBrokerNotFound' || c.name === 'KafkaJSLockTimeout' || c.name === 'KafkaJSMetadataNotLoaded' || c.name === 'KafkaJSGroupCoordinatorNotFound') return true
  }
  return false
}

/** Wraps a kafkajs error for an operation; keeps weir errors as they are. */
export function toWeirError(err: unknown, operation: string, context: ErrorContext & { transactionalId?: string } = {}): WeirError {
  if (err instanceof WeirError) return err
  if (context.transactionalId !== undefined && isFenced(err)) return new ActorFencedError(context.transactionalId, undefined, undefined, err)
  const message = err instanceof Error ? err.message : String(err)
  const code = kafkaCode(err)
  return new PipeError(`kafka ${operation} failed: ${message}${code !== undefined ? ` (${code})` : ''}`, context, { retriable: retriable(err), cause: err, kafkaCode: code })
}
