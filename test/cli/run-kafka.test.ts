/**
 * `weir run --pipe kafka://…` end to end: the examples run unchanged on a real broker and
 * give the same results as on the embedded pipe; bad Kafka input is refused before
 * anything is touched. The examples have fixed pipeline names, so their topics and groups
 * are deleted first (as a fresh deployment would have none).
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Kafka, logLevel } from 'kafkajs'
import { beforeAll, describe, expect, it } from 'vitest'
import { requireService } from '../support/services.ts'
import { ROOT, finalCounts, tempDirs, weir } from '../support/weir-cli.ts'

const kafka = await requireService('kafka')
const tempDir = tempDirs('weir-cli-kafka-')

/** Deletes a pipeline's topics and consumer groups, so a fixed-name example starts from nothing. */
async function forget(pipeline: string): Promise<void> {
  const admin = new Kafka({ brokers: kafka.url.split(','), logLevel: logLevel.NOTHING }).admin()
  await admin.connect()
  try {
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(`weir.${pipeline}.`))
    if (topics.length > 0) await admin.deleteTopics({ topics })
    for (let attempt = 0; ; attempt++) {
      const groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.startsWith(`weir.${pipeline}.`))
      if (groups.length === 0) break
      try {
        await admin.deleteGroups(groups)
        break
      } catch (err) {
        // A group just left by its last member, or a coordinator still loading, refuses for a moment.
        const left = ((err as { groups?: Array<{ groupId: string; error?: { type?: string } }> }).groups ?? []).filter((g) => g.error !== undefined && g.error.type !== 'GROUP_ID_NOT_FOUND')
        if (left.length === 0) break
        if (attempt >= 20) throw err
        await new Promise((r) => setTimeout(r, 500))
      }
    }
    for (let i = 0; i < 100 && (await admin.listTopics()).some((t) => t.startsWith(`weir.${pipeline}.`)); i++) await new Promise((r) => setTimeout(r, 100))
  } finally {
    await admin.disconnect()
  }
}

describe.skipIf(!kafka.available)('weir run on Kafka', () => {
  beforeAll(async () => {
    await forget('wordcount')
    await forget('ticker')
    await forget('pipe-guard')
  }, 60_000)

  it('runs the word count on Kafka with the same totals as on the embedded pipe', async () => {
    const onKafka = tempDir()
    const embedded = tempDir()
    const k = await weir(['run', 'examples/wordcount.ts', '--pipe', `kafka://${kafka.url}`, '--data-dir', join(onKafka, 'data'), '--param', 'lines=1500', '--param', `out=${onKafka}/out/counts-{partition}.jsonl`, '-q'])
    expect(k.code, k.stderr).toBe(0)
    expect(k.stdout).toMatch(/outcome:\s+finished/)
    const e = await weir(['run', 'examples/wordcount.ts', '--data-dir', join(embedded, 'data'), '--param', 'lines=1500', '--param', `out=${embedded}/out/counts-{partition}.jsonl`, '-q'])
    expect(e.code, e.stderr).toBe(0)
    expect(finalCounts(join(onKafka, 'out'))).toEqual(finalCounts(join(embedded, 'out')))
    // Run again: the source finished, its offsets and state are in Kafka and the data dir; nothing is redone.
    const again = await weir(['run', 'examples/wordcount.ts', '--pipe', `kafka://${kafka.url}`, '--data-dir', join(onKafka, 'data'), '--param', 'lines=1500', '--param', `out=${onKafka}/out/counts-{partition}.jsonl`, '-q'])
    expect(again.code, again.stderr).toBe(0)
    expect(finalCounts(join(onKafka, 'out'))).toEqual(finalCounts(join(embedded, 'out')))
  }, 180_000)

  it('runs the ticker on Kafka', async () => {
    const dir = tempDir()
    const r = await weir(['run', 'examples/ticker.ts', '--pipe', `kafka://${kafka.url}`, '--data-dir', join(dir, 'data'), '--param', 'ticks=2000', '--param', `out=${dir}/signals.jsonl`, '-q'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/outcome:\s+finished/)
    expect(readFileSync(join(dir, 'signals.jsonl'), 'utf8').split('\n').filter((l) => l !== '').length).toBeGreaterThan(0)
  }, 180_000)

  it('refuses a data dir made with another pipe, naming both, and touches nothing', async () => {
    const dir = tempDir()
    const data = join(dir, 'data')
    const embedded = await weir(['run', 'examples/wordcount.ts', '--data-dir', data, '--param', 'lines=50', '--param', `out=${dir}/out/counts-{partition}.jsonl`, '-q'])
    expect(embedded.code, embedded.stderr).toBe(0)
    const before = readFileSync(join(data, 'pipe.json'), 'utf8')
    const onKafka = await weir(['run', 'examples/wordcount.ts', '--pipe', `kafka://${kafka.url}`, '--data-dir', data, '--param', 'lines=50', '--param', `out=${dir}/out/counts-{partition}.jsonl`, '-q'])
    expect(onKafka.code).toBe(2)
    expect(onKafka.stderr).toMatch(/made with the embedded pipe \(embedded:[0-9a-f-]+\)[\s\S]*this kafka pipe \(kafka:[\s\S]*WEIR_DATA_DIR_PIPE/)
    expect(readFileSync(join(data, 'pipe.json'), 'utf8')).toBe(before)
    // And the other way round: a data dir of a Kafka run is refused by an embedded run.
    const kafkaData = join(dir, 'kafka-data')
    const k = await weir(['run', 'examples/wordcount.ts', '--pipe', `kafka://${kafka.url}`, '--data-dir', kafkaData, '--param', 'lines=50', '--param', 'name=pipe-guard', '--param', `out=${dir}/out2/counts-{partition}.jsonl`, '-q'])
    expect(k.code, k.stderr).toBe(0)
    const e = await weir(['run', 'examples/wordcount.ts', '--data-dir', kafkaData, '--param', 'lines=50', '--param', 'name=pipe-guard', '--param', `out=${dir}/out2/counts-{partition}.jsonl`, '-q'])
    expect(e.code).toBe(2)
    expect(e.stderr).toMatch(/made with the kafka pipe \(kafka:[\s\S]*WEIR_DATA_DIR_PIPE/)
  }, 180_000)

  it('refuses a malformed pipe URL or an unreachable broker with a clear error', async () => {
    const dir = tempDir()
    const bad = await weir(['run', 'examples/wordcount.ts', '--pipe', 'kafka://no-port', '--data-dir', join(dir, 'data')])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('pipe.kafka.brokers.0')
    const secret = await weir(['run', 'examples/wordcount.ts', '--pipe', 'kafka://127.0.0.1:9092?password=x', '--data-dir', join(dir, 'data')])
    expect(secret.code).toBe(2)
    expect(secret.stderr).toContain('WEIR_KAFKA_PASSWORD')
    const unreachable = await weir(['run', 'examples/wordcount.ts', '--pipe', 'kafka://127.0.0.1:1', '--data-dir', join(dir, 'data2'), '--pipe-config', join(ROOT, 'test/cli/fixtures/kafka-fast-fail.json')])
    expect(unreachable.code).toBe(1)
    expect(unreachable.stderr).toMatch(/WEIR_PIPE_UNAVAILABLE[\s\S]*127\.0\.0\.1:1/)
  }, 60_000)
})
