/** How the CLI prints an error: the `at:` line points at user code, never into Node or an installed package. */
import { describe, expect, it } from 'vitest'
import { formatError } from '../../cli/report.ts'
import { PipeError } from '../../runtime/errors.ts'

function errorWithStack(message: string, frames: string[]): Error {
  const e = new Error(message)
  e.stack = [`Error: ${message}`, ...frames.map((f) => `    at ${f}`)].join('\n')
  return e
}

describe('formatError', () => {
  it('skips frames inside node_modules and Node itself', () => {
    const cause = errorWithStack('connect ECONNREFUSED 127.0.0.1:1', ['Socket.onError (/app/node_modules/kafkajs/src/network/connection.js:210:23)', 'TCPConnectWrap.afterConnect [as oncomplete] (node:net:1611:16)'])
    const out = formatError(new PipeError('cannot connect to Kafka at 127.0.0.1:1: connection refused', {}, { retriable: true, cause }))
    expect(out).not.toContain('  at: ')
    expect(out).not.toContain('node_modules')
  })

  it('names the first frame in user code', () => {
    const cause = errorWithStack('boom', ['node:internal/util/parse_args/parse_args:387:15', 'Count.onRecord (/app/pipelines/count.ts:12:11)'])
    expect(formatError(new Error('wrapped', { cause }))).toContain('  at: Count.onRecord (/app/pipelines/count.ts:12:11)')
  })
})
