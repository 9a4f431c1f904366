/**
 * The ingest benchmark's pipeline: one `HttpIngestSource` stage, `events`, whose output is
 * the stream read back at the end. It takes `POST /ingest/events/_end`, after which it
 * finishes once what it took is committed. Params: name, port, partitions (default 2),
 * ack (default committed).
 *
 *   node --import tsx testing/child-runner.ts benchmarks/lib/ingest-pipeline.ts <dataDir> '{"port":"8080"}' 1000
 */
import { Pipeline } from '../../index.ts'
import { HttpIngestSource } from '../../processors/index.ts'

export const INGEST_STAGE = 'events'

export function ingestBenchPipeline(params: Record<string, string>): Pipeline {
  const pipeline = new Pipeline(params.name ?? 'bench-ingest')
  pipeline.source(INGEST_STAGE, () => new HttpIngestSource({
    port: Number(params.port),
    key: { field: 'user' },
    ack: (params.ack ?? 'committed') as 'committed' | 'received',
    acceptEnd: true,
  }), { partitions: Number(params.partitions ?? 2) })
  return pipeline
}

export default ingestBenchPipeline
