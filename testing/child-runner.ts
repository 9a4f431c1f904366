/**
 * Runs one pipeline file in a child process for weir/testing: the pipeline's default
 * export (a Pipeline or a function of params), on the embedded pipe in a data dir or on
 * the pipe WEIR_PIPE names (kafka://…), with the crash plan from WEIR_CRASH_AT (and
 * WEIR_COMPACTION_MIN_DIRTY to compact changelogs often, WEIR_MAX_BATCH for small
 * micro-batches). It works in WEIR_TEST_WORK_DIR when set (relative paths of the pipeline,
 * such as a sink's `out/…`, resolve there, not in the test's project). Exits 0 when the
 * pipeline finished.
 *
 *   node [--import tsx] child-runner.ts <pipeline.ts> <dataDir> [paramsJson] [epochMs]   (weir's sources need tsx; dist/testing/child-runner.js does not)
 */
import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { startEmbedded } from '../runner/embedded-runner.ts'
import { Faults } from '../runtime/faults.ts'
import { openPipe } from '../runtime/open-pipe.ts'
import { loadPipeline } from '../runtime/pipeline-file.ts'

const [file, dataDirArg, paramsJson = '{}', epochMs = '1000'] = process.argv.slice(2)
if (file === undefined || dataDirArg === undefined) {
  process.stderr.write('usage: child-runner <pipeline.ts> <dataDir> [paramsJson] [epochMs]\n')
  process.exit(2)
}
// Resolved before the chdir below, against the directory the child was started in.
const dataDir = resolve(dataDirArg)
const pipelineFile = resolve(file)
const workDir = process.env.WEIR_TEST_WORK_DIR
if (workDir !== undefined && workDir !== '') {
  mkdirSync(workDir, { recursive: true })
  process.chdir(workDir)
}
let pipeline
try {
  pipeline = await loadPipeline(pipelineFile, JSON.parse(paramsJson) as Record<string, string>)
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`)
  process.exit(2)
}
const minDirty = process.env.WEIR_COMPACTION_MIN_DIRTY
const pipeOptions = minDirty === undefined ? undefined : { compactionMinDirtyRecords: Number(minDirty), compactionMinIntervalMs: 0 }
const maxBatch = process.env.WEIR_MAX_BATCH
const actorConfig = maxBatch === undefined ? undefined : { maxBatch: Number(maxBatch) }
const pipe = process.env.WEIR_PIPE === undefined || process.env.WEIR_PIPE === '' ? undefined : await openPipe(process.env.WEIR_PIPE, { dataDir })
const run = await startEmbedded(pipeline, { dataDir, epochIntervalMs: Number(epochMs), faults: Faults.fromEnv(), pipeOptions, actorConfig, pipe })
try {
  const result = await run.done
  await pipe?.close()
  process.stdout.write(JSON.stringify({ outcome: result.outcome }) + '\n')
  process.exit(0)
} catch (err) {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
}
