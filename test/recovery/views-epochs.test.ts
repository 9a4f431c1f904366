/**
 * A view's epoch after a restart: `atLeast=epoch:N` asks for a checkpoint at least as new as
 * epoch N, so a client that saw epoch E and asks for E + 1 must get an answer as soon as the
 * next checkpoint commits, restart or not. A `weir run` is SIGKILLed after many epochs and
 * started again on its data dir; checkpoints then commit every 20 ms, so epoch:E+1 must be
 * answered well within a second.
 *
 * Failed before the fix: the embedded coordinator's epochs start again from 1 after a restart and a
 * view keeps reporting the highest epoch it had reached (never going backwards) until the
 * new epochs pass it, so epoch:E+1 waits about E × the epoch interval (runtime/actor/actor.ts
 * viewEpoch; coordinator/epochs.ts restarts at 0 without stored metadata).
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { removeDir, tempDataDir } from '../../testing/index.ts'
import { startWeir, sleep, until } from '../support/weir-cli.ts'
import { PIPELINE, VIEW } from './fixtures/views-pipeline.ts'

const FIXTURE = join(import.meta.dirname, 'fixtures', 'views-pipeline.ts')
const EPOCH_MS = 20
const dirs: string[] = []
afterAll(() => dirs.forEach(removeDir))

interface Answer {
  status: number
  body: { epoch?: number; error?: { code: string; message: string } }
}

async function get(url: string): Promise<Answer> {
  const r = await fetch(url)
  return { status: r.status, body: (await r.json()) as Answer['body'] }
}

describe('view epochs across a restart', () => {
  it('after a restart, atLeast=epoch:E+1 (E the epoch a view answers with) is answered by the next checkpoint', async () => {
    const dir = tempDataDir('weir-views-epochs-')
    dirs.push(dir)
    const dataDir = join(dir, 'data')
    const inputFile = join(dir, 'input.json')
    // 6,000 lines at 500 lines/s: the source runs 12 s, longer than both processes below.
    writeFileSync(inputFile, JSON.stringify({ partitions: [Array.from({ length: 6000 }, (_, i) => ['ant', 'bee', 'cat'][i % 3]!)] }))
    const args = ['run', FIXTURE, '--data-dir', dataDir, '--epoch-ms', String(EPOCH_MS), '--param', `input=${inputFile}`, '--param', 'rate=500', '-q']
    // Only the running process's views.json counts (a killed one leaves its file).
    const serverOf = (pid: number): Promise<string> => until(() => {
      const file = join(dataDir, 'views.json')
      const named = existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { url: string; pid: number }) : undefined
      return named?.pid === pid ? named.url : undefined
    }, 30_000, `views.json of process ${pid}`)

    const first = startWeir(args)
    const firstUrl = await serverOf(first.child.pid!)
    await sleep(2500)
    const before = await get(`${firstUrl}/views/${PIPELINE}/${VIEW}/ant`)
    first.child.kill('SIGKILL')
    await first.done
    expect(before.body.epoch, 'the first process committed many epochs').toBeGreaterThan(30)

    rmSync(join(dataDir, 'views.json'), { force: true })
    const second = startWeir(args)
    try {
      const url = await serverOf(second.child.pid!)
      const now = await until(async () => {
        const a = await get(`${url}/views/${PIPELINE}/${VIEW}/ant`)
        return a.status === 200 ? a : undefined
      }, 10_000, 'the restarted process answers')
      const epoch = now.body.epoch!
      expect(epoch).toBeGreaterThanOrEqual(before.body.epoch!)
      const started = Date.now()
      const next = await get(`${url}/views/${PIPELINE}/${VIEW}/ant?atLeast=epoch:${epoch + 1}&timeoutMs=1500`)
      expect({ status: next.status, error: next.body.error?.message }, `epoch:${epoch + 1} after ${Date.now() - started} ms, checkpoints every ${EPOCH_MS} ms`).toEqual({ status: 200, error: undefined })
      expect(next.body.epoch).toBeGreaterThan(epoch)
    } finally {
      second.child.kill('SIGKILL')
      await second.done
    }
  }, 60_000)
})
