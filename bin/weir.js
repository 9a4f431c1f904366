#!/usr/bin/env node
// The weir command. Pipelines are TypeScript files loaded without a build step, so the CLI
// registers tsx's loader before importing anything written in TypeScript.
import { register } from 'tsx/esm/api'

register()
const { main } = await import('../cli/main.ts')
process.exitCode = await main(process.argv.slice(2))
