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
import { checkNatsUrl, NatsBus } from './control/nats/nats-bus.ts'

/** Checks a bus URL without connecting (for refusing bad input before anything starts). */
export function checkBusUrl(url: string, field = '--bus'): void {
  checkNatsUrl(url, field)
}

export async function openBus(url: string, options: { name?: string; log?: Logger } = {}): Promise<ControlBus> {
  checkBusUrl(url)
  return NatsBus.connect({ servers: [url], name: options.name, log: options.log })
}
