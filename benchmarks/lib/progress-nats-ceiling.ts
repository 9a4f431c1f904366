/**
 * The ceiling for the progress channel's view delay: raw NATS publish → subscribe latency
 * of the same traffic without weir or the monitor. `actors` virtual publishers spread over
 * `workers` connections (as actors share their worker's connection) each publish JSON
 * messages of `bytes` bytes at `perActorPerS`, phases spread at random; one subscriber on
 * its own connection parses each message and records now − the send time it carries.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { wallMs } from './stats.ts'

export interface CeilingOptions {
  servers: string
  subject: string
  actors: number
  workers: number
  /** Messages per second per virtual actor. */
  perActorPerS: number
  /** Size of each message's JSON, bytes. */
  bytes: number
  seconds: number
}

export interface CeilingResult {
  latenciesMs: number[]
  sent: number
  received: number
}

/** A JSON message of about `bytes` bytes carrying its send time. */
function message(actor: number, bytes: number): string {
  const head = JSON.stringify({ actor, t: wallMs(), pad: '' })
  return head.replace('"pad":""', `"pad":"${'x'.repeat(Math.max(0, bytes - head.length))}"`)
}

export async function natsCeiling(o: CeilingOptions): Promise<CeilingResult> {
  const sub = await connect({ servers: o.servers, name: 'weir-bench-ceiling-sub' })
  const pubs: NatsConnection[] = []
  const timers: NodeJS.Timeout[] = []
  const latenciesMs: number[] = []
  let sent = 0
  try {
    const encoder = new TextEncoder()
    const decoder = new TextDecoder()
    sub.subscribe(`${o.subject}.*`, {
      callback: (err, msg) => {
        if (err !== null) return
        const now = wallMs()
        const m = JSON.parse(decoder.decode(msg.data)) as { t: number }
        latenciesMs.push(now - m.t)
      },
    })
    await sub.flush()
    for (let w = 0; w < o.workers; w++) pubs.push(await connect({ servers: o.servers, name: `weir-bench-ceiling-pub-${w}` }))
    const periodMs = 1000 / o.perActorPerS
    for (let a = 0; a < o.actors; a++) {
      const nc = pubs[a % o.workers]!
      const subject = `${o.subject}.${a % o.workers}`
      const start = setTimeout(() => {
        const publish = (): void => {
          nc.publish(subject, encoder.encode(message(a, o.bytes)))
          sent++
        }
        publish()
        timers.push(setInterval(publish, periodMs))
      }, Math.random() * periodMs)
      timers.push(start)
    }
    await new Promise((r) => setTimeout(r, o.seconds * 1000))
    for (const t of timers) clearInterval(t)
    for (const nc of pubs) await nc.flush()
    await sub.flush()
    // What is still in flight arrives within a moment.
    await new Promise((r) => setTimeout(r, 200))
    return { latenciesMs, sent, received: latenciesMs.length }
  } finally {
    for (const t of timers) clearInterval(t)
    await Promise.all([...pubs, sub].map((nc) => nc.close().catch(() => undefined)))
  }
}
