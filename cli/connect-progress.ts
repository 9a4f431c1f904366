/**
 * What `weir run` shows while it retries reaching Kafka at start: on a terminal, one line
 * rewritten every second (`connecting to Kafka at 127.0.0.1:9999: connection refused,
 * retrying (attempt 3, 2 s; gives up after about 41 s)`), cleared once connected or failed;
 * elsewhere, a pino warning per attempt with the same fields, for log collectors.
 */
import type { Logger } from 'pino'
import { describeConnectRetry } from '../runtime/pipe/kafka/kafka-pipe.ts'
import type { ConnectRetry } from '../runtime/pipe/pipe.ts'

export interface ConnectProgress {
  onRetry(retry: ConnectRetry): void
  /** Clears the terminal line; call once opening succeeded or failed. */
  done(): void
}

export function connectProgress(stream: NodeJS.WritableStream & { isTTY?: boolean }, log: Logger, tickMs = 1000): ConnectProgress {
  if (stream.isTTY !== true) {
    return {
      onRetry: (r) => log.warn({ ...r }, describeConnectRetry(r)),
      done: () => undefined,
    }
  }
  let latest: ConnectRetry | undefined
  let startedAt = 0
  let timer: NodeJS.Timeout | undefined
  const draw = (): void => {
    if (latest === undefined) return
    stream.write(`\r\x1b[2K${describeConnectRetry({ ...latest, elapsedMs: performance.now() - startedAt })}`)
  }
  return {
    onRetry(r) {
      if (latest === undefined) startedAt = performance.now() - r.elapsedMs
      latest = r
      draw()
      timer ??= setInterval(draw, tickMs)
    },
    done() {
      if (timer !== undefined) clearInterval(timer)
      if (latest !== undefined) stream.write('\r\x1b[2K')
      latest = undefined
    },
  }
}
