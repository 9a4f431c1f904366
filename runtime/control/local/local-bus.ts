/**
 * The in-process ControlBus for embedded mode. Delivery is asynchronous (a microtask
 * later), as over a network, so code that works here does not rely on synchronous replies.
 */
import type { Logger } from 'pino'
import { createLogger } from '../../log.ts'
import { subjectMatches, type ControlBus, type Handler, type Subscription } from '../bus.ts'

export class LocalBus implements ControlBus {
  readonly kind = 'local'
  private subs: Array<{ pattern: string; handler: Handler }> = []
  private closed = false

  constructor(private readonly log: Logger = createLogger()) {}

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

  async close(): Promise<void> {
    this.closed = true
    this.subs = []
  }
}
