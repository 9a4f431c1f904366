/**
 * `weir run --bus nats://…`: the run is coordinated over NATS and can be watched there;
 * bad bus input is refused before anything is touched, an unreachable server fails clearly.
 */
import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { requireService } from '../support/services.ts'
import { tempDirs, weir } from '../support/weir-cli.ts'

const nats = await requireService('nats')
const tempDir = tempDirs('weir-cli-bus-')

describe('weir run --bus', () => {
  it('refuses a bad bus URL, or --cluster without --bus, before touching the data dir', async () => {
    const dir = tempDir()
    const bad = await weir(['run', 'examples/wordcount.ts', '--bus', 'localhost:4222', '--data-dir', join(dir, 'data')])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--bus')
    const lonely = await weir(['run', 'examples/wordcount.ts', '--cluster', 'prod', '--data-dir', join(dir, 'data')])
    expect(lonely.code).toBe(2)
    expect(lonely.stderr).toContain('--cluster')
    expect(existsSync(join(dir, 'data'))).toBe(false)
  })

  it('fails with WEIR_BUS_UNAVAILABLE naming the server when NATS does not answer', async () => {
    const dir = tempDir()
    const r = await weir(['run', 'examples/wordcount.ts', '--bus', 'nats://127.0.0.1:1', '--data-dir', join(dir, 'data')])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/WEIR_BUS_UNAVAILABLE[\s\S]*nats:\/\/127\.0\.0\.1:1/)
  })

  it.skipIf(!nats.available)('runs coordinated over NATS, watched by an observer there', async () => {
    const dir = tempDir()
    const cluster = `c${randomUUID().slice(0, 8)}`
    const observer = await NatsBus.connect({ servers: [nats.url] })
    const kinds = new Set<string>()
    observer.subscribe(`weir.${cluster}.wordcount.>`, (_m, subject) => kinds.add(subject.split('.').pop()!))
    try {
      const r = await weir(['run', 'examples/wordcount.ts', '--bus', nats.url, '--cluster', cluster, '--data-dir', join(dir, 'data'), '--param', 'lines=300', '--param', `out=${dir}/out/c-{partition}.jsonl`, '-q'])
      expect(r.code, r.stderr).toBe(0)
      expect(r.stdout).toMatch(/outcome:\s+finished/)
    } finally {
      await observer.close()
    }
    expect([...kinds].sort()).toEqual(expect.arrayContaining(['actor-finished', 'assignment', 'epoch', 'epoch-ack', 'worker-hello']))
  }, 60_000)
})
