/**
 * The in-process ControlBus for embedded mode. Delivery is asynchronous (a microtask
 * later), as over a network, so code that works here does not rely on synchronous replies.
 */
import { Packr } from 'msgpackr'
import type { Logger } from 'pino'
import { createLogger } from '../../log.ts'
import { BusNoResponderError, BusTimeoutError, subjectMatches, type BusState, type ControlBus, type Handler, type Responder, type Subscription } from '../bus.ts'

/**
 * Requests and replies are copied through msgpack, as they are on the wire of the NATS
 * adapter (same options): a responder's later changes to what it returned (a live state
 * object) never reach the requester, and a value NATS could not carry fails here too.
 */
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })
const copy = (value: unknown): unknown => packr.decode(packr.encode(value))

export class LocalBus implements ControlBus {
  readonly kind = 'local'
  private subs: Array<{ pattern: string; handler: Handler }> = []
  private responders = new Map<string, Responder[]>()
  /** Spreads requests over a subject's responders, as a NATS queue group does. */
  private turn = 0
  private closed = false
  /** In-process: it never loses its "server". */
  readonly reconnectedAt = 0

  constructor(private readonly log: Logger = createLogger()) {}

  get state(): BusState {
    return this.closed ? 'closed' : 'connected'
  }

  publish(subject: string, message: unknown): void {
    if (this.closed) return
    const targets = this.subs.filter((s) => subjectMatches(s.pattern, subject))
    if (targets.length === 0) return
    queueMicrotask(() => {
      for (const t of targets) {
        if (!this.subs.includes(t)) continue
        // One failing handler must not keep the message from the others (as on NATS).
        try {
          t.handler(message, subject)
        } catch (err) {
          this.log.error({ subject, err: (err as Error).message }, 'control message handler failed')
        }
      }
    })
  }

  subscribe(pattern: string, handler: Handler): Subscription {
    const sub = { pattern, handler }
    this.subs.push(sub)
    return { unsubscribe: () => { this.subs = this.subs.filter((s) => s !== sub) } }
  }

  async request(subject: string, message: unknown, options: { timeoutMs: number }): Promise<unknown> {
    // A macrotask later, as over a network: a caller must not rely on the answer being synchronous.
    await new Promise((r) => setImmediate(r))
    const request = copy(message)
    const list = this.closed ? undefined : this.responders.get(subject)
    if (list === undefined || list.length === 0) throw new BusNoResponderError(subject)
    const responder = list[this.turn++ % list.length]!
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new BusTimeoutError(subject, options.timeoutMs)), options.timeoutMs)
    })
    try {
      return copy(await Promise.race([Promise.resolve().then(() => responder(request, subject)), timeout]))
    } catch (err) {
      // A responder that throws answers nothing, as on NATS: the requester hears a timeout.
      if (err instanceof BusTimeoutError) throw err
      this.log.error({ subject, err: (err as Error).message }, 'request responder failed')
      await timeout
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  respond(subject: string, responder: Responder): Subscription {
    const list = this.responders.get(subject) ?? []
    list.push(responder)
    this.responders.set(subject, list)
    return {
      unsubscribe: () => {
        const now = (this.responders.get(subject) ?? []).filter((r) => r !== responder)
        if (now.length === 0) this.responders.delete(subject)
        else this.responders.set(subject, now)
      },
    }
  }

  async close(): Promise<void> {
    this.closed = true
    this.subs = []
    this.responders.clear()
  }
}
