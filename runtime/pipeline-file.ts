/**
 * Loads a pipeline file, for `weir run` and weir/testing's child runner: a dynamic import
 * of its file URL (runtime/module-import.ts: Node's type stripping, tsx as the fallback, so
 * TypeScript loads without a build step). The default export, or an export named
 * `pipeline`, is a Pipeline or a function `(params) => Pipeline | Promise<Pipeline>`.
 */
import { statSync } from 'node:fs'
import { ConfigError, WeirError } from './errors.ts'
import { Pipeline } from './api/pipeline.ts'
import { importUserModule } from './module-import.ts'
import { refuseUnreadParams, trackParams } from './pipeline-params.ts'

/** A pipeline function; a given param it never reads while building is refused (runtime/pipeline-params.ts). */
export type PipelineFactory = (params: Record<string, string>) => Pipeline | Promise<Pipeline>

function describeValue(v: unknown): string {
  if (v === null) return 'null'
  if (typeof v === 'object') {
    const name = (v as { constructor?: { name?: string } }).constructor?.name
    return name && name !== 'Object' ? `an instance of ${name}` : 'an object'
  }
  if (typeof v === 'function') return 'a function'
  return `a ${typeof v}`
}

function notAPipeline(file: string, what: string, v: unknown): ConfigError {
  const looksLike = typeof v === 'object' && v !== null && (v as { constructor?: { name?: string } }).constructor?.name === 'Pipeline'
  const hint = looksLike ? ' (a Pipeline from another copy of weir? import Pipeline from the same weir that runs it)' : ''
  return new ConfigError('pipeline', `${what} of ${file} is ${describeValue(v)}, not a Pipeline${hint}`, { file })
}

/** Throws ConfigError or WeirError (code WEIR_PIPELINE_LOAD_FAILED) naming what is wrong. */
export async function loadPipeline(file: string, params: Record<string, string>): Promise<Pipeline> {
  let isFile: boolean
  try {
    isFile = statSync(file).isFile()
  } catch {
    throw new ConfigError('pipeline', `file not found: ${file}`, { file })
  }
  if (!isFile) throw new ConfigError('pipeline', `${file} is not a file`, { file })

  const mod = await importUserModule(file)

  const candidates = (['default', 'pipeline'] as const).filter((name) => mod[name] !== undefined)
  const usable = candidates.find((name) => mod[name] instanceof Pipeline || typeof mod[name] === 'function')
  if (usable === undefined) {
    if (candidates.length > 0) {
      const name = candidates[0]!
      throw notAPipeline(file, name === 'default' ? 'the default export' : "the export 'pipeline'", mod[name])
    }
    const names = Object.keys(mod)
    throw new ConfigError(
      'pipeline',
      `${file} exports no pipeline: expected a default export (or an export named 'pipeline') that is a Pipeline or a function (params) => Pipeline; ` +
        (names.length === 0 ? 'it exports nothing' : `it exports only ${names.map((n) => `'${n}'`).join(', ')}`),
      { file },
    )
  }

  const exported = mod[usable]
  const what = usable === 'default' ? 'the default export' : "the export 'pipeline'"
  if (exported instanceof Pipeline) {
    const keys = Object.keys(params)
    if (keys.length > 0) {
      throw new ConfigError('--param', `${what} of ${file} is a Pipeline, not a function taking params, so --param ${keys.join(', ')} would be ignored; export a function (params) => Pipeline to use parameters`, { file })
    }
    return exported
  }

  const tracked = trackParams(params)
  let built: unknown
  try {
    built = await (exported as PipelineFactory)(tracked.params)
  } catch (cause) {
    const message = cause instanceof Error ? cause.message : String(cause)
    throw new WeirError('WEIR_PIPELINE_LOAD_FAILED', `the pipeline function (${what}) of ${file} threw: ${message}`, { field: 'pipeline', file }, { cause })
  }
  if (!(built instanceof Pipeline)) throw notAPipeline(file, `the value returned by the pipeline function (${what})`, built)
  refuseUnreadParams(file, tracked, built)
  return built
}
