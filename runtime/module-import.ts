/**
 * Imports a user's module (a pipeline file) whatever its language and package type: Node's
 * own type stripping loads TypeScript where it suffices (Node ≥ 22.18, 24), and tsx's loader
 * is the fallback for what stripping cannot do (enums, parameter properties, namespaces) or
 * a Node without it. In weir's repository tsx is registered before anything loads
 * (bin/weir.js), so the first import already succeeds there.
 *
 * @example
 * const mod = await importUserModule('/home/me/pipelines/page-views.ts')
 */
import { existsSync, readFileSync } from 'node:fs'
import { dirname, extname, join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { WeirError } from './errors.ts'

/** Errors of Node's own loading that tsx's loader does not have. */
const NEEDS_TSX = new Set([
  'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX', // enum, parameter property, namespace: strip-only mode cannot
  'ERR_UNKNOWN_FILE_EXTENSION', // a Node without type stripping
  'ERR_UNSUPPORTED_NODE_MODULES_TYPE_STRIPPING', // Node does not strip types under node_modules/
])

/**
 * A CommonJS file's require() of an ES module that is loading it failing, as Node reports it:
 * a cycle (Node 20), a module not linked (Node 22), not yet fully loaded (an internal assertion).
 */
const REQUIRE_OF_ESM = new Set(['ERR_REQUIRE_CYCLE_MODULE', 'ERR_REQUIRE_ESM', 'ERR_REQUIRE_ASYNC_MODULE', 'ERR_VM_MODULE_LINK_FAILURE', 'ERR_INTERNAL_ASSERTION'])

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

/**
 * Imports `file` (an absolute or relative path), trying Node's own loader first and tsx's
 * second. Throws WeirError WEIR_PIPELINE_LOAD_FAILED naming the file and, where the cause is
 * the file's module type, what to change.
 */
export async function importUserModule(file: string): Promise<Record<string, unknown>> {
  const url = pathToFileURL(file).href
  let first: unknown
  try {
    return (await import(url)) as Record<string, unknown>
  } catch (err) {
    const code = codeOf(err) ?? ''
    // tsx already registered (weir's repository) loaded the file as CommonJS and failed.
    if (REQUIRE_OF_ESM.has(code)) throw commonjsTrap(file, 'tsx loaded it as CommonJS') ?? loadFailed(file, err)
    if (!NEEDS_TSX.has(code)) throw loadFailed(file, err)
    first = err
  }
  const why = first instanceof Error ? first.message.split('\n')[0] : String(first)
  const trap = commonjsTrap(file, `Node's type stripping cannot load it (${why}), and tsx, which can, would load it as CommonJS`)
  if (trap !== undefined) throw trap
  let register: () => unknown
  try {
    ;({ register } = await import('tsx/esm/api'))
  } catch {
    throw loadFailed(file, first)
  }
  // Registered for the whole process (not tsx's scoped tsImport): a scoped import would load
  // its own copy of weir too, whose Pipeline is not the runner's. The query makes the file a
  // new module rather than the one whose load failed.
  register()
  try {
    return (await import(`${url}?weir-tsx`)) as Record<string, unknown>
  } catch (err) {
    throw loadFailed(file, err)
  }
}

/**
 * The error for a `.ts` file that tsx loads as CommonJS (its package has no "type": "module"):
 * a CommonJS file cannot import weir, an ES module that is loading it (Node reports a
 * require() cycle or a half-loaded module, which does not say what to change).
 */
function commonjsTrap(file: string, how: string): WeirError | undefined {
  if (extname(file) !== '.ts') return undefined
  const pkg = nearestPackageJson(dirname(file))
  if (pkg?.type === 'module') return undefined
  const fix = pkg === undefined ? `add a package.json with "type": "module" beside it` : `add "type": "module" to ${pkg.path}`
  return new WeirError(
    'WEIR_PIPELINE_LOAD_FAILED',
    `cannot load pipeline file ${file}: ${how} (no "type": "module" in its package), and a CommonJS file cannot import weir (an ES module); rename it to .mts, or ${fix}`,
    { field: 'pipeline', file },
    // No cause: Node's text ("Try making at least part of the dependency in the graph lazily
    // loaded") would be printed under the advice and point the other way.
  )
}

function loadFailed(file: string, cause: unknown): WeirError {
  const message = cause instanceof Error ? cause.message : String(cause)
  return new WeirError('WEIR_PIPELINE_LOAD_FAILED', `cannot load pipeline file ${file}: ${message}`, { field: 'pipeline', file }, { cause })
}

/** The package.json that decides `dir`'s module type (the nearest one above it), if any. */
function nearestPackageJson(dir: string): { path: string; type?: unknown } | undefined {
  for (let d = resolve(dir); ; d = dirname(d)) {
    const path = join(d, 'package.json')
    if (existsSync(path)) {
      try {
        return { path, type: (JSON.parse(readFileSync(path, 'utf8')) as { type?: unknown }).type }
      } catch {
        return { path }
      }
    }
    if (dirname(d) === d) return undefined
  }
}
