#!/usr/bin/env node
// The weir command. An installed package runs the compiled CLI in dist/ and loads users'
// TypeScript pipeline files with Node's own type stripping (tsx only as a fallback: see
// runtime/module-import.ts). In weir's own repository, where the TypeScript sources sit
// beside bin/ (the package ships only dist/), it runs those sources through tsx instead:
// tests and examples then never run a stale or missing dist/, and an example importing
// ../index.ts shares the CLI's copy of the runtime (a second copy's Pipeline is not one).
import { existsSync } from 'node:fs'

// Commands that hold keyed state start with settings glibc and V8 read only as a process
// starts (docs/operations.md, "A worker's memory"), for the pipe they run on: glibc malloc
// arenas (MALLOC_ARENA_MAX: one on the embedded pipe, two on Kafka, instead of one per
// thread) and V8's semi-space size (16 MiB on the embedded pipe, 64 on Kafka). runtime/heap.ts
// holds the same figures (START_SETTINGS; the test of this file compares them). Such a
// command replaces itself once, in place (same pid, stdio and arguments), with them set;
// short commands skip the second start. What the user set is kept. Not under a debugger's
// flags: --inspect-brk would stop in both images.
const HOLDS_STATE = new Set(['run', 'worker', 'savepoint'])
const START_SETTINGS = { embedded: { semiSpaceMb: 16, mallocArenas: 1 }, kafka: { semiSpaceMb: 64, mallocArenas: 2 } }

/** The pipe `weir run` runs on, read as cli/run.ts reads it (`--pipe`, then WEIR_PIPE). */
function runPipe(args) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--pipe') return args[i + 1] ?? 'embedded'
    if (args[i].startsWith('--pipe=')) return args[i].slice('--pipe='.length)
  }
  return process.env.WEIR_PIPE ?? 'embedded'
}

const command = process.argv[2]
const given = [...process.execArgv, process.env.NODE_OPTIONS ?? '']
const inspecting = given.some((a) => a.includes('--inspect'))
// `weir savepoint` reads and writes stores on either pipe: arenas as on Kafka, V8's own semi-spaces.
const pipe = command === 'worker' ? 'kafka' : command === 'run' ? (runPipe(process.argv.slice(3)) === 'embedded' ? 'embedded' : 'kafka') : undefined
const settings = START_SETTINGS[pipe ?? 'kafka']
const nodeFlags = pipe !== undefined && !given.some((a) => a.replaceAll('_', '-').includes('--max-semi-space-size')) ? [`--max-semi-space-size=${settings.semiSpaceMb}`] : []
const env = process.platform === 'linux' && process.env.MALLOC_ARENA_MAX === undefined ? { MALLOC_ARENA_MAX: String(settings.mallocArenas) } : {}
if (HOLDS_STATE.has(command) && (nodeFlags.length > 0 || env.MALLOC_ARENA_MAX !== undefined) && typeof process.execve === 'function' && !inspecting) {
  try {
    process.execve(process.execPath, [process.execPath, ...process.execArgv, ...nodeFlags, ...process.argv.slice(1)], { ...process.env, ...env })
  } catch {
    // Not replaced (a sandbox refusing execve): run on with glibc's and V8's defaults.
  }
}

const fromSources = existsSync(new URL('../cli/main.ts', import.meta.url))
if (fromSources) {
  const { register } = await import('tsx/esm/api')
  register()
}
const entry = (path) => new URL(fromSources ? `../${path}.ts` : `../dist/${path}.js`, import.meta.url).href
const { main } = await import(entry('cli/main'))
const code = await main(process.argv.slice(2))
// Exit even if a pipeline module left a timer or socket open; stdout is flushed first.
process.stdout.write('', () => process.exit(code))
