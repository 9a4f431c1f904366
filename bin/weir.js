#!/usr/bin/env node
// The weir command. Pipelines are TypeScript files loaded without a build step, so the CLI
// registers tsx's loader before importing anything written in TypeScript.
import { register } from 'tsx/esm/api'

register()
// Before the heap grows: larger young-generation semi-spaces for per-record allocation.
const { tuneHeap } = await import('../runtime/heap.ts')
tuneHeap()
const { main } = await import('../cli/main.ts')
const code = await main(process.argv.slice(2))
// Exit even if a pipeline module left a timer or socket open; stdout is flushed first.
process.stdout.write('', () => process.exit(code))
