#!/usr/bin/env node
// The weir command. An installed package runs the compiled CLI in dist/ and loads users'
// TypeScript pipeline files with Node's own type stripping (tsx only as a fallback: see
// runtime/module-import.ts). In weir's own repository, where the TypeScript sources sit
// beside bin/ (the package ships only dist/), it runs those sources through tsx instead:
// tests and examples then never run a stale or missing dist/, and an example importing
// ../index.ts shares the CLI's copy of the runtime (a second copy's Pipeline is not one).
import { existsSync } from 'node:fs'

// Commands that hold keyed state run with two glibc malloc arenas instead of one per thread
// (docs/operations.md, "A worker's memory"). glibc reads MALLOC_ARENA_MAX only as a process
// starts, so such a command replaces itself once, in place (same pid, stdio and arguments),
// with it set; short commands skip the second start. A value the user set is kept. Not under
// a debugger's flags: --inspect-brk would stop in both images.
const HOLDS_STATE = new Set(['run', 'worker', 'savepoint'])
const inspecting = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((a) => a.includes('--inspect'))
if (HOLDS_STATE.has(process.argv[2]) && process.platform === 'linux' && process.env.MALLOC_ARENA_MAX === undefined && typeof process.execve === 'function' && !inspecting) {
  try {
    process.execve(process.execPath, [process.execPath, ...process.execArgv, ...process.argv.slice(1)], { ...process.env, MALLOC_ARENA_MAX: '2' })
  } catch {
    // Not replaced (a sandbox refusing execve): run on with glibc's default arenas.
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
