/**
 * Between an actor's stored entries (runtime/actor/state-keys.ts, runtime/state/timers.ts)
 * and a savepoint's neutral entries: keyed state as (state, record key bytes, value), timers
 * as (domain, time, record key bytes), actor-scoped state as (name, value). Values stay the
 * MessagePack bytes the state codec wrote.
 */
import { ACTOR_PREFIX, keyedPrefix, NULL_KEY } from '../actor/state-keys.ts'
import { EVENT_TIMER_PREFIX, TIMER_PREFIX } from '../state/timers.ts'

const NULL_KEY_BYTES = Buffer.from(NULL_KEY)
const TIMER_BYTE = TIMER_PREFIX.charCodeAt(0)
const EVENT_TIMER_BYTE = EVENT_TIMER_PREFIX.charCodeAt(0)
const ACTOR_BYTE = ACTOR_PREFIX.charCodeAt(0)
/** Timer values are a marker; its encoding as the state codec writes it (msgpack 1). */
export const TIMER_VALUE = Buffer.from([0x01])

export type TimerDomain = 'processing' | 'event'

export type StoredEntry =
  | { kind: 'keyed'; state: string; key: Buffer | null; value: Buffer }
  | { kind: 'timer'; domain: TimerDomain; time: number; key: Buffer | null }
  | { kind: 'actor'; name: string; value: Buffer }
  | { kind: 'meta' }

function recordKey(bytes: Buffer): Buffer | null {
  return bytes.equals(NULL_KEY_BYTES) ? null : bytes
}

/** What a stored entry of an actor's RocksDB is. */
export function classify(key: Buffer, value: Buffer): StoredEntry {
  const first = key[0]
  if (first === 0) return { kind: 'meta' }
  if (first === ACTOR_BYTE) return { kind: 'actor', name: key.toString('utf8', 1), value }
  if (first === TIMER_BYTE || first === EVENT_TIMER_BYTE) {
    const sep = key.indexOf(0, 1)
    return { kind: 'timer', domain: first === TIMER_BYTE ? 'processing' : 'event', time: parseInt(key.toString('latin1', 1, sep), 36), key: recordKey(key.subarray(sep + 1)) }
  }
  const sep = key.indexOf(0)
  return { kind: 'keyed', state: key.toString('utf8', 0, sep), key: recordKey(key.subarray(sep + 1)), value }
}

export function keyedStoreKey(state: string, key: Buffer | null): Buffer {
  return Buffer.concat([Buffer.from(keyedPrefix(state), 'utf8'), key ?? NULL_KEY_BYTES])
}

/** keyedStoreKey with each state's prefix encoded once: a restore builds millions of keys. */
export function keyedKeys(): (state: string, key: Buffer | null) => Buffer {
  const prefixes = new Map<string, Buffer>()
  return (state, key) => {
    let prefix = prefixes.get(state)
    if (prefix === undefined) prefixes.set(state, (prefix = Buffer.from(keyedPrefix(state), 'utf8')))
    const k = key ?? NULL_KEY_BYTES
    const out = Buffer.allocUnsafe(prefix.length + k.length)
    prefix.copy(out, 0)
    k.copy(out, prefix.length)
    return out
  }
}

export function timerStoreKey(domain: TimerDomain, time: number, key: Buffer | null): Buffer {
  const prefix = domain === 'processing' ? TIMER_PREFIX : EVENT_TIMER_PREFIX
  return Buffer.concat([Buffer.from(prefix + time.toString(36).padStart(11, '0') + '\u0000', 'latin1'), key ?? NULL_KEY_BYTES])
}

export function actorStoreKey(name: string): Buffer {
  return Buffer.from(ACTOR_PREFIX + name, 'utf8')
}
