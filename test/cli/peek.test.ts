/**
 * `weir peek` against a real `weir run` process: it finds the run's views server in the
 * data dir, prints a key's committed value with the checkpoint it reflects, pages keys, and
 * refuses what it cannot do, naming the option.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { randomUUID } from 'node:crypto'
import { requireService } from '../support/services.ts'
import { sleep, startWeir, tempDirs, until, weir } from '../support/weir-cli.ts'

const nats = await requireService('nats')

const tempDir = tempDirs('weir-peek-')
let dataDir: string
let run: ReturnType<typeof startWeir>


beforeAll(async () => {
  dataDir = tempDir()
  // Paced so it runs while the test peeks: 2 partitions × 300 lines/s.
  run = startWeir(['run', 'examples/wordcount.ts', '--data-dir', dataDir, '--param', 'rate=300', '--param', 'lines=1000000', '--param', 'sink=false', '--epoch-ms', '200', '-q'])
  await until(() => existsSync(join(dataDir, 'views.json')), 30_000, 'views.json')
})

afterAll(async () => {
  run.child.kill('SIGTERM')
  await run.done
})

describe('weir peek', () => {
  it('prints a key with the epoch and positions it reflects, and the JSON answer with --json', async () => {
    let out = await weir(['peek', 'wordcount', 'counts', 'the', '--data-dir', dataDir])
    // The first checkpoint may not have committed 'the' yet.
    for (let i = 0; i < 50 && out.code === 1; i++) {
      await sleep(200)
      out = await weir(['peek', 'wordcount', 'counts', 'the', '--data-dir', dataDir])
    }
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toMatch(/^the = \d+ {2}\(partition [0-3], epoch \d+, weir\.wordcount\.split@\d+, committed \d+\.\d s ago\)\n$/)
    const json = await weir(['peek', 'wordcount', 'counts', 'the', '--data-dir', dataDir, '--json'])
    const answer = JSON.parse(json.stdout) as { found: boolean; value: number; epoch: number; view: string }
    expect(answer).toMatchObject({ view: 'counts', key: 'the', found: true })
    expect(answer.value).toBeGreaterThanOrEqual(Number(/= (\d+)/.exec(out.stdout)![1]))
  })

  it('pages keys with --prefix and --limit, and says where the next page starts', async () => {
    const out = await weir(['peek', 'wordcount', 'counts', '--prefix', 's', '--limit', '2', '--data-dir', dataDir])
    expect(out.code, out.stderr).toBe(0)
    const lines = out.stdout.trim().split('\n')
    expect(lines.slice(0, 2).map((l) => l.split(' = ')[0])).toEqual(['so', 'state'])
    expect(lines[2]).toMatch(/^\(2 entries from 4 partitions at epochs \d+\.\.\d+; more: --after "state"\)$/)
    const next = await weir(['peek', 'wordcount', 'counts', '--prefix', 's', '--after', 'state', '--data-dir', dataDir])
    expect(next.stdout.trim().split('\n').slice(0, -1).map((l) => l.split(' = ')[0])).toEqual(['streams'])
  })

  it('exits 1 for an absent key, naming the checkpoint that does not hold it', async () => {
    const out = await weir(['peek', 'wordcount', 'counts', 'zebra', '--data-dir', dataDir])
    expect(out.code).toBe(1)
    expect(out.stdout).toMatch(/^zebra: not found \(partition \d, epoch \d+/)
  })

  it('refuses bad options naming them, and an unknown view naming the views', async () => {
    const both = await weir(['peek', 'wordcount', 'counts', 'the', '--prefix', 't', '--data-dir', dataDir])
    expect(both.code).toBe(2)
    expect(both.stderr).toContain('--prefix')
    const limit = await weir(['peek', 'wordcount', 'counts', '--limit', '0', '--data-dir', dataDir])
    expect(limit.code).toBe(2)
    expect(limit.stderr).toContain('--limit')
    const view = await weir(['peek', 'wordcount', 'tallies', 'the', '--data-dir', dataDir])
    expect(view.code).toBe(2)
    expect(view.stderr).toContain("no view 'tallies' (views: counts)")
    const none = await weir(['peek', 'wordcount', 'counts', 'the', '--data-dir', tempDir()])
    expect(none.code).toBe(2)
    expect(none.stderr).toContain('no running weir serves views')
  })

  it('sends the token from --token-file, and a server that requires one refuses without it', async () => {
    const dir = tempDir()
    const tokenFile = join(dir, 'token')
    writeFileSync(tokenFile, 'peek-secret\n')
    const guarded = startWeir(['run', 'examples/wordcount.ts', '--data-dir', dir, '--param', 'rate=50', '--param', 'lines=100000', '--param', 'sink=false', '--param', 'name=wordcount2', '--views-token-file', tokenFile, '-q'])
    try {
      await until(() => existsSync(join(dir, 'views.json')), 30_000, 'views.json')
      expect(JSON.parse(readFileSync(join(dir, 'views.json'), 'utf8')).token).toBe(true)
      const refused = await weir(['peek', 'wordcount2', 'counts', 'the', '--data-dir', dir, '--timeout-ms', '2000'])
      expect(refused.code).toBe(1)
      expect(refused.stderr).toContain('WEIR_VIEW_UNAUTHORIZED')
      let ok = await weir(['peek', 'wordcount2', 'counts', 'the', '--data-dir', dir, '--token-file', tokenFile, '--timeout-ms', '5000'])
      for (let i = 0; i < 30 && ok.code === 1 && ok.stdout.includes('not found'); i++) ok = await weir(['peek', 'wordcount2', 'counts', 'the', '--data-dir', dir, '--token-file', tokenFile])
      expect(ok.code, ok.stderr).toBe(0)
    } finally {
      guarded.child.kill('SIGTERM')
      await guarded.done
    }
    expect(existsSync(join(dir, 'views.json'))).toBe(false)
  })

  it.runIf(nats.available)('asks any worker over NATS with --bus, which routes the key to its holder', async () => {
    const dir = tempDir()
    const cluster = `peek${randomUUID().slice(0, 6)}`
    const onBus = startWeir(['run', 'examples/wordcount.ts', '--data-dir', dir, '--bus', nats.url, '--cluster', cluster, '--param', 'rate=100', '--param', 'lines=100000', '--param', 'sink=false', '-q'])
    try {
      await until(() => existsSync(join(dir, 'views.json')), 30_000, 'views.json')
      let out = await weir(['peek', 'wordcount', 'counts', 'fox', '--bus', nats.url, '--cluster', cluster])
      for (let i = 0; i < 30 && out.code === 1 && out.stdout.includes('not found'); i++) {
        await sleep(200)
        out = await weir(['peek', 'wordcount', 'counts', 'fox', '--bus', nats.url, '--cluster', cluster])
      }
      expect(out.code, out.stderr).toBe(0)
      expect(out.stdout).toMatch(/^fox = \d+ {2}\(partition [0-3], epoch \d+, weir\.wordcount\.split@\d+/)
      // Paced at 100 lines/s, the words starting with s come in over the first checkpoints.
      let page: { kind: string; entries: Array<{ key: string }>; next?: string } = { kind: '', entries: [] }
      for (let i = 0; i < 30 && page.entries.length < 2; i++) {
        if (i > 0) await sleep(200)
        page = JSON.parse((await weir(['peek', 'wordcount', 'counts', '--prefix', 's', '--limit', '2', '--bus', nats.url, '--cluster', cluster, '--json'])).stdout)
      }
      expect(page.kind).toBe('scan')
      expect(page.entries.map((e) => e.key)).toEqual([...page.entries.map((e) => e.key)].sort())
      expect(page.entries.every((e) => e.key.startsWith('s'))).toBe(true)
      // More s-words may not have come in yet; when they have, the page says where the next starts.
      if (page.next !== undefined) expect(page.next).toBe(page.entries[1]!.key)
      const range = await weir(['peek', 'wordcount', 'counts', '--gte', 'a', '--bus', nats.url, '--cluster', cluster])
      expect(range.code).toBe(2)
      expect(range.stderr).toContain('--gte')
      const nobody = await weir(['peek', 'wordcount', 'counts', 'fox', '--bus', nats.url, '--cluster', 'nobody-here'])
      expect(nobody.code).toBe(1)
      expect(nobody.stderr).toContain('WEIR_PEEK_NO_WORKER')
    } finally {
      onBus.child.kill('SIGTERM')
      await onBus.done
    }
  })
})
