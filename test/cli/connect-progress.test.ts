/**
 * `weir run --pipe kafka://…` with nothing listening says so while it retries: on a
 * terminal a line redrawn every second, otherwise a pino warning per attempt; then the
 * error naming the brokers and what to check. Real kafkajs against a closed loopback port,
 * with a short retry budget from --pipe-config.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { expect, it } from 'vitest'
import { connectProgress } from '../../cli/connect-progress.ts'
import { openPipe } from '../../runtime/open-pipe.ts'
import { freePort, tempDirs, weir } from '../support/weir-cli.ts'

const tempDir = tempDirs('weir-connect-')

function budgetFile(dir: string, budget: object): string {
  const file = join(dir, 'kafka.json')
  writeFileSync(file, JSON.stringify(budget))
  return file
}

it('on a terminal, redraws one line at least once a second while retrying, and clears it at the end', async () => {
  const port = await freePort()
  const dir = tempDir()
  const draws: Array<{ at: number; text: string }> = []
  const terminal = Object.assign(new Writable({ write(chunk: Buffer, _enc, done) { draws.push({ at: performance.now(), text: chunk.toString() }); done() } }), { isTTY: true })
  const progress = connectProgress(terminal, pino({ level: 'silent' }))
  const started = performance.now()
  // 1.5 + 1.5 s of backoff: long enough for the once-a-second redraw to show between attempts.
  const err = await openPipe(`kafka://127.0.0.1:${port}`, { dataDir: dir, configFile: budgetFile(dir, { retries: 2, initialRetryTimeMs: 1500, maxRetryTimeMs: 1500 }), log: pino({ level: 'silent' }), onConnectRetry: (r) => progress.onRetry(r) })
    .then(() => undefined, (e: unknown) => e)
  progress.done()
  expect(String(err)).toContain(`cannot connect to Kafka at 127.0.0.1:${port}: connection refused (3 attempts`)
  const lines = draws.slice(0, -1)
  expect(lines.length).toBeGreaterThanOrEqual(4)
  for (const d of lines) expect(d.text).toMatch(new RegExp(`^\\r\\x1b\\[2Kconnecting to Kafka at 127\\.0\\.0\\.1:${port}: connection refused, (retrying \\(attempt [1-3], \\d\\.\\d s; gives up after about 3\\.0 s\\)|giving up \\(attempt 3, \\d\\.\\d s\\))$`))
  // Redrawn while waiting between attempts, not only when one fails.
  const gaps = [started, ...lines.map((d) => d.at)].slice(1).map((at, i, all) => (i === 0 ? 0 : at - all[i - 1]!))
  expect(Math.max(...gaps), `gaps between redraws: ${gaps.map((g) => g.toFixed(0)).join(', ')} ms`).toBeLessThan(1400)
  expect(lines.some((d) => /retrying \(attempt 1, 1\.\d s/.test(d.text))).toBe(true)
  expect(draws.at(-1)!.text).toBe('\r\x1b[2K')
}, 30_000)

it('not on a terminal, weir run logs a warning per attempt and fails naming the brokers and what to check', async () => {
  const port = await freePort()
  const dir = tempDir()
  const r = await weir(['run', 'examples/ticker.ts', '--pipe', `kafka://127.0.0.1:${port}`, '--data-dir', join(dir, 'data'), '--pipe-config', budgetFile(dir, { retries: 3, initialRetryTimeMs: 100, maxRetryTimeMs: 200 })])
  expect(r.code, r.stderr).toBe(1)
  const warnings = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>)
  expect(warnings.map((w) => w.attempt)).toEqual([1, 2, 3, 4])
  expect(warnings[0]).toMatchObject({ level: 40, target: `Kafka at 127.0.0.1:${port}`, reason: 'connection refused', givesUpAfterMs: 500 })
  expect(warnings[0]!.msg).toMatch(new RegExp(`^connecting to Kafka at 127\\.0\\.0\\.1:${port}: connection refused, retrying \\(attempt 1, `))
  expect(r.stderr).toContain(`weir: error: cannot connect to Kafka at 127.0.0.1:${port}: connection refused (4 attempts in `)
  expect(r.stderr).toContain('is a Kafka broker running there, and reachable from this host? Check the host and port in --pipe (or WEIR_PIPE); for a local broker, scripts/services.sh up')
  expect(r.stderr).toContain('[WEIR_PIPE_UNAVAILABLE]')
}, 60_000)
