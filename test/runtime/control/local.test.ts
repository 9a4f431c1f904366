import type { ControlBus, Handler, Responder, Subscription } from '../../../runtime/control/bus.ts'
import { LocalBus } from '../../../runtime/control/local/local-bus.ts'
import { busContract } from './bus-contract.ts'

/** A second "connection" to an in-process bus: its own subscriptions, dropped when it closes. */
function peerOf(bus: ControlBus): ControlBus {
  const mine = new Set<Subscription>()
  let closed = false
  const track = (s: Subscription): Subscription => {
    mine.add(s)
    return { unsubscribe: () => { mine.delete(s); s.unsubscribe() } }
  }
  return {
    kind: bus.kind,
    get state() {
      return closed ? 'closed' as const : bus.state
    },
    get reconnectedAt() {
      return bus.reconnectedAt
    },
    publish: (subject, message) => { if (!closed) bus.publish(subject, message) },
    subscribe: (subject: string, handler: Handler) => track(bus.subscribe(subject, handler)),
    respond: (subject: string, responder: Responder) => track(bus.respond(subject, responder)),
    request: async (subject, message, options) => {
      if (closed) throw new Error('closed')
      return bus.request(subject, message, options)
    },
    close: async () => {
      closed = true
      for (const s of mine) s.unsubscribe()
      mine.clear()
    },
  }
}

let n = 0
busContract('local', { open: async () => new LocalBus(), peer: async (bus) => peerOf(bus), prefix: () => `t${n++}` })
