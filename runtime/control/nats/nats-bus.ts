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
import { connect, type NatsConnection, type Subscription as NatsSubscription } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { ConfigError, WeirError } from '../../errors.ts'
import { createLogger } from '../../log.ts'
import type { ControlBus, Handler, Subscription } from '../bus.ts'

export interface NatsBusOptions {
  /** `nats://host:port` URLs. */
  servers: string[]
  /** Connection name shown by the server (`nats server report connections`). */
  name?: string
  /** Credentials, when the server requires them. */
  token?: string
  user?: string
  pass?: string
  /** Give up connecting at start after this long, ms (reconnects later are unlimited). */
  connectTimeoutMs?: number
  log?: Logger
}

/** The bus could not be reached or refused us; `servers` names where we tried. */
export class BusUnavailableError extends WeirError {
  constructor(message: string, context: Record<string, unknown>, cause?: unknown) {
    super('WEIR_BUS_UNAVAILABLE', message, context, { retriable: true, cause })
  }
}

/** Throws a ConfigError naming `field` unless `url` is nats://host:port. */
export function checkNatsUrl(url: string, field: string): void {
  if (!/^nats:\/\/[^\s/:]+:\d{1,5}$/.test(url)) throw new ConfigError(field, `'${url}' is not a nats://host:port URL`)
}

export class NatsBus implements ControlBus {
  readonly kind = 'nats'
  private closed = false
  private readonly encoder = new TextEncoder()
  private readonly decoder = new TextDecoder()
  private readonly subs = new Set<NatsSubscription>()
  private dropped = 0

  private constructor(private readonly nc: NatsConnection, private readonly log: Logger) {}

  static async connect(options: NatsBusOptions): Promise<NatsBus> {
    if (!Array.isArray(options.servers) || options.servers.length === 0) throw new ConfigError('bus.servers', 'at least one nats://host:port is needed')
    options.servers.forEach((s, i) => checkNatsUrl(s, `bus.servers.${i}`))
    const log = (options.log ?? createLogger()).child({ component: 'nats-bus' })
    let nc: NatsConnection
    try {
      nc = await connect({
        servers: options.servers,
        name: options.name ?? 'weir',
        token: options.token,
        user: options.user,
        pass: options.pass,
        timeout: options.connectTimeoutMs ?? 5000,
        reconnect: true,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 500,
        waitOnFirstConnect: false,
      })
    } catch (err) {
      throw new BusUnavailableError(`cannot connect to NATS at ${options.servers.join(', ')}: ${(err as Error).message}`, { servers: options.servers }, err)
    }
    const bus = new NatsBus(nc, log)
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
        if (err !== null) return void this.log.warn({ subject, err: err.message }, 'subscription error')
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

  private async watchStatus(): Promise<void> {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect') this.log.warn({ status: s.type, server: (s as { server?: string }).server }, `nats ${s.type}`)
    }
  }
}
