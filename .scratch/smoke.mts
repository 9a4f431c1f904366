import { startEmbedded } from '/work/main/index.ts'
import { readStageOutput, tempDataDir } from '/work/main/testing/index.ts'
import { ingestPipeline } from '/work/main/test/processors/sources/fixtures/http-ingest-pipeline.ts'
const dir = tempDataDir('smoke-')
const p = ingestPipeline({ name: 'smoke', port: 18555, partitions: 2 })
const run = await startEmbedded(p, { dataDir: dir, epochIntervalMs: 100 })
await new Promise((r) => setTimeout(r, 500))
const post = async (body: string, headers: Record<string, string> = {}) => {
  const t = Date.now()
  const r = await fetch('http://127.0.0.1:18555/ingest/events', { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } })
  console.log(r.status, Date.now() - t, 'ms', await r.text(), r.headers.get('retry-after'))
}
await post(JSON.stringify([{ user: 'a', n: 1 }, { user: 'b', n: 2 }]), { 'idempotency-key': 'k1' })
await post(JSON.stringify([{ user: 'a', n: 1 }, { user: 'b', n: 2 }]), { 'idempotency-key': 'k1' })
await post(JSON.stringify([{ user: 'a', n: 3 }]), { 'idempotency-key': 'k1' })
await post('{"user":"c"}\n{"user":"d"}\n', { 'content-type': 'application/x-ndjson' })
await post('nope')
await post('x', { 'content-type': 'text/plain' })
await post(JSON.stringify([{ n: 1 }]))
const r = await fetch('http://127.0.0.1:18555/ingest/events/_end', { method: 'POST' })
console.log('end', r.status, await r.text())
await run.done
console.log((await readStageOutput(p, dir, 'events')).map((x) => [x.key, x.value, x.partition]))
