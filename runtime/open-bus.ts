/**
 * Opens the control bus a run asks for: in-process when none is given (the runner's
 * default), or NATS for `nats://host:port`. The one place, with open-pipe.ts, that knows
 * the adapters.
 *
 * @example
 * const bus = await openBus('nats://127.0.0.1:4222', { name: 'weir-run-wordcount' })
 */
import type { Logger } from 'pino'
import type { ControlBus } from './control/bus.ts'
import { LocalBus } from './control/local/local-bus.ts'
import { checkNatsUrl, NatsBus } from './control/nats/nats-bus.ts'
import { createLogger } from './log.ts'

/** Checks a bus URL without connecting (for refusing bad input before anything starts). */
export function checkBusUrl(url: string, field = '--bus'): void {
  checkNatsUrl(url, field)
}

export async function openBus(url: string, options: { name?: string; log?: Logger } = {}): Promise<ControlBus> {
  checkBusUrl(url)
  return NatsBus.connect({ servers: [url], name: options.name, log: options.log })
}

/** The in-process bus (what a run uses without --bus), for a caller that also listens on it, like `weir run --monitor`. */
export function localBus(log?: Logger): ControlBus {
  return new LocalBus(log ?? createLogger())
}
