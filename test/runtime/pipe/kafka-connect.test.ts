/**
 * Opening the Kafka pipe when nothing listens (a closed loopback port, real kafkajs):
 * every failed attempt is reported as it happens, to a hook or as a pino warning with the
 * same fields, and the final error names the brokers and what to check. A short retry
 * budget keeps it fast; the production default (12 retries, about 41 s) is unchanged.
 */
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { PipeError } from '../../../runtime/errors.ts'
import { KafkaPipe } from '../../../runtime/pipe/kafka/kafka-pipe.ts'
import type { ConnectRetry } from '../../../runtime/pipe/pipe.ts'
import { freePort } from '../../support/weir-cli.ts'

const FAST = { retries: 3, initialRetryTimeMs: 100, maxRetryTimeMs: 200 }

async function failure(p: Promise<unknown>): Promise<PipeError> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(PipeError)
  return err as PipeError
}

describe('KafkaPipe.connect to a closed port', () => {
  it('reports each failed attempt to the hook, then fails naming the brokers and what to check', async () => {
    const port = await freePort()
    const retries: ConnectRetry[] = []
    const err = await failure(KafkaPipe.connect({ brokers: [`127.0.0.1:${port}`], ...FAST }, pino({ level: 'silent' }), { onRetry: (r) => retries.push(r) }))
    expect(retries.map((r) => r.attempt)).toEqual([1, 2, 3, 4])
    for (const r of retries) {
      expect(r).toMatchObject({ target: `Kafka at 127.0.0.1:${port}`, reason: 'connection refused', givesUpAfterMs: 100 + 200 + 200 })
    }
    expect(retries.slice(0, 3).every((r) => typeof r.retryInMs === 'number' && r.retryInMs > 0)).toBe(true)
    expect(retries[3]!.retryInMs).toBeUndefined()
    expect(retries.map((r) => r.elapsedMs)).toEqual([...retries.map((r) => r.elapsedMs)].sort((a, b) => a - b))
    expect(err.code).toBe('WEIR_PIPE_UNAVAILABLE')
    expect(err.retriable).toBe(true)
    expect(err.context).toMatchObject({ brokers: [`127.0.0.1:${port}`], attempts: 4 })
    expect(err.message).toMatch(new RegExp(`^cannot connect to Kafka at 127\\.0\\.0\\.1:${port}: connection refused \\(4 attempts in \\d+ s\\): is a Kafka broker running there, and reachable from this host\\? `))
    expect(err.message).toContain('Check the host and port in --pipe (or WEIR_PIPE); for a local broker, scripts/services.sh up')
  }, 30_000)

  it('without a hook, logs a warning per attempt with the same fields', async () => {
    const port = await freePort()
    const lines: Array<Record<string, unknown>> = []
    const sink = new Writable({ write(chunk: Buffer, _enc, done) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); done() } })
    await failure(KafkaPipe.connect({ brokers: [`127.0.0.1:${port}`], ...FAST }, pino({ level: 'warn' }, sink)))
    const attempts = lines.filter((l) => typeof l.attempt === 'number')
    expect(attempts.map((l) => l.attempt)).toEqual([1, 2, 3, 4])
    expect(attempts[0]).toMatchObject({ level: 40, target: `Kafka at 127.0.0.1:${port}`, reason: 'connection refused', brokers: [`127.0.0.1:${port}`] })
    expect(attempts[0]!.msg).toMatch(new RegExp(`^connecting to Kafka at 127\\.0\\.0\\.1:${port}: connection refused, retrying \\(attempt 1, \\d+\\.\\d s; gives up after about 0\\.5 s\\)$`))
    expect(attempts[3]!.msg).toMatch(/connection refused, giving up \(attempt 4, /)
    // kafkajs's own lines for the same failures are not repeated.
    expect(lines.filter((l) => l.component === 'kafkajs')).toEqual([])
  }, 30_000)
})
