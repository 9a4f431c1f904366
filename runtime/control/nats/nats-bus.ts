/**
 * The ControlBus port on NATS (@nats-io/transport-node v3). Messages are JSON (every weir
 * message carries a version field `v`), so `nats sub 'weir.>'` shows them as they are.
 * Publishing is fire-and-forget and never throws into the caller: while NATS is away the
 * client buffers and reconnects forever, and a message it cannot take (buffer full,
 * above the server's max_payload) is dropped and logged. Control messages coordinate; they
 * carry no data records, so a lost one slows things down but loses nothing.
 *
 * @example
 * const bus = await NatsBus.connect({ servers: ['nats://127.0.0.1:4222'], name: 'weir-worker-1' })
 * bus.subscribe('weir.prod.wordcount.>', (msg, subject) => console.log(subject, msg))
 */
import type { NatsConnection, Subscription as NatsSubscription } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { ConfigError } from '../../errors.ts'
import { createLogger } from '../../log.ts'
import { errors as natsErrors } from '@nats-io/transport-node'
import { Packr } from 'msgpackr'
import { BusNoResponderError, BusTimeoutError, type BusState, type ControlBus, type Handler, type Responder, type Subscription } from '../bus.ts'
import { checkNatsUrl, connectNats, describeCredentials, type NatsCredentials, type NatsTls } from './nats-connection.ts'

export { BusAuthError, BusUnavailableError, checkNatsUrl } from './nats-connection.ts'

export interface NatsBusOptions {
  /** `nats://host:port` URLs, without credentials (resolveNatsTarget takes them out of a URL). */
  servers: string[]
  /** Connection name shown by the server (`nats server report connections`). */
  name?: string
  /** What to authenticate with, when the server requires it (resolveNatsTarget). */
  credentials?: NatsCredentials
  /** TLS, required when set. */
  tls?: NatsTls
  /** Give up connecting at start after this long, ms (reconnects later are unlimited). */
  connectTimeoutMs?: number
  log?: Logger
}

/** Requests and replies carry state values (Buffers, BigInts, Dates): msgpack, not JSON. */
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })
/** The queue group of responders: one of them answers each request. */
const RESPONDERS = 'weir-responders'

export class NatsBus implements ControlBus {
  readonly kind = 'nats'
  private closed = false
  private readonly encoder = new TextEncoder()
  private readonly decoder = new TextDecoder()
  private readonly subs = new Set<NatsSubscription>()
  private dropped = 0
  /** Set from the connection's status events (watchStatus). */
  private connection: BusState = 'connected'
  reconnectedAt = 0

  private constructor(private readonly nc: NatsConnection, private readonly log: Logger) {}

  static async connect(options: NatsBusOptions): Promise<NatsBus> {
    if (!Array.isArray(options.servers) || options.servers.length === 0) throw new ConfigError('bus.servers', 'at least one nats://host:port is needed')
    options.servers.forEach((s, i) => {
      checkNatsUrl(s, `bus.servers.${i}`)
      // nats.js would drop them silently: credentials come resolved (resolveNatsTarget), never in a server URL.
      if (s.includes('@')) throw new ConfigError(`bus.servers.${i}`, 'give credentials in `credentials` (resolveNatsTarget takes them out of a URL), not in a server URL')
    })
    const log = (options.log ?? createLogger()).child({ component: 'nats-bus' })
    const credentials = options.credentials ?? { kind: 'none' }
    const tls = options.tls ?? (options.servers.some((s) => s.startsWith('tls://')) ? {} : undefined)
    const nc = await connectNats({ servers: options.servers, credentials, tls }, { name: options.name ?? 'weir', timeoutMs: options.connectTimeoutMs })
    const bus = new NatsBus(nc, log.child({ credentials: describeCredentials(credentials) }))
    void bus.watchStatus()
    return bus
  }

  publish(subject: string, message: unknown): void {
    if (this.closed) return
    try {
      this.nc.publish(subject, this.encoder.encode(JSON.stringify(message)))
    } catch (err) {
      // Never into the caller: processing must not stop because the control channel is away.
      this.dropped++
      this.log.warn({ subject, dropped: this.dropped, err: (err as Error).message }, 'control message dropped')
    }
  }

  subscribe(subject: string, handler: Handler): Subscription {
    const sub = this.nc.subscribe(subject, {
      callback: (err, msg) => {
        // A refused subscription (permissions) ends it: say so once, loudly, naming the subject.
        if (err !== null) return void this.log.error({ subject, err: err.message }, err.name === 'PermissionViolationError' ? 'NATS refused this subscription: the credentials lack permission to subscribe to it' : 'subscription error')
        let decoded: unknown
        try {
          decoded = JSON.parse(this.decoder.decode(msg.data))
        } catch {
          return void this.log.warn({ subject: msg.subject, bytes: msg.data.length }, 'malformed control message (not JSON) dropped')
        }
        try {
          handler(decoded, msg.subject)
        } catch (e) {
          this.log.error({ subject: msg.subject, err: (e as Error).message }, 'control message handler failed')
        }
      },
    })
    this.subs.add(sub)
    return {
      unsubscribe: () => {
        this.subs.delete(sub)
        sub.unsubscribe()
      },
    }
  }

  async request(subject: string, message: unknown, options: { timeoutMs: number }): Promise<unknown> {
    try {
      const reply = await this.nc.request(subject, packr.encode(message), { timeout: options.timeoutMs })
      return packr.decode(reply.data)
    } catch (err) {
      if (err instanceof natsErrors.NoRespondersError || (err instanceof natsErrors.RequestError && err.isNoResponders())) throw new BusNoResponderError(subject)
      if (err instanceof natsErrors.TimeoutError) throw new BusTimeoutError(subject, options.timeoutMs)
      throw err
    }
  }

  respond(subject: string, responder: Responder): Subscription {
    const sub = this.nc.subscribe(subject, {
      queue: RESPONDERS,
      callback: (err, msg) => {
        if (err !== null) return void this.log.error({ subject, err: err.message }, 'responder subscription error')
        void (async () => {
          let reply: unknown
          try {
            reply = await responder(packr.decode(msg.data), msg.subject)
          } catch (e) {
            // Nothing is sent: the requester times out, as with a responder that died.
            return void this.log.error({ subject: msg.subject, err: (e as Error).message }, 'request responder failed')
          }
          try {
            msg.respond(packr.encode(reply))
          } catch (e) {
            this.log.warn({ subject: msg.subject, err: (e as Error).message }, 'reply dropped (larger than the server max_payload?)')
          }
        })()
      },
    })
    this.subs.add(sub)
    return {
      unsubscribe: () => {
        this.subs.delete(sub)
        // Drain, not unsubscribe: requests the server routed here before it heard of the
        // unsubscribe are still answered, where an unsubscribe would drop them and leave each
        // requester waiting out its whole timeout (a view request, while its actor moves).
        if (!sub.isClosed() && !this.nc.isClosed()) sub.drain().catch(() => sub.unsubscribe())
      },
    }
  }

  get state(): BusState {
    return this.closed || this.nc.isClosed() ? 'closed' : this.connection
  }

  /** Messages published since connecting that NATS could not take. */
  get droppedMessages(): number {
    return this.dropped
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    // Drain delivers what is in flight, then closes; a server that is away cannot drain.
    await Promise.race([this.nc.drain().catch(() => undefined), new Promise((r) => setTimeout(r, 2000))])
    await this.nc.close().catch(() => undefined)
  }

  /** Publishes the server refused, by subject: the first is logged as an error, then every 100th. */
  private readonly refusedPublishes = new Map<string, number>()

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect') this.connection = 'reconnecting'
      else if (s.type === 'reconnect') {
        this.connection = 'connected'
        this.reconnectedAt = Date.now()
      }
      else if (s.type === 'close') this.connection = 'closed'
      if (s.type === 'disconnect' || s.type === 'reconnect') this.log.warn({ status: s.type, server: s.server }, `nats ${s.type}`)
      else if (s.type === 'error') this.serverError(s.error)
      else if (s.type === 'close' && !this.closed) this.log.error({ err: (await this.nc.closed())?.message }, 'NATS connection closed for good (credentials refused on reconnect?): control messages are dropped from now on')
    }
  }

  private serverError(err: Error): void {
    const violation = err as Error & { operation?: string; subject?: string }
    if (err.name !== 'PermissionViolationError') return void this.log.error({ err: err.message }, 'NATS server error')
    // Subscriptions report their own refusal (above); a refused publish is dropped by the server.
    if (violation.operation !== 'publish') return
    const subject = violation.subject ?? '?'
    const count = (this.refusedPublishes.get(subject) ?? 0) + 1
    this.refusedPublishes.set(subject, count)
    this.dropped++
    if (count === 1 || count % 100 === 0) this.log.error({ subject, refused: count }, 'NATS refused a publish: the credentials lack permission to publish on this subject')
  }
}
