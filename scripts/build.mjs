// npm run build (and prepare): compiles the library into dist/ (.js, .d.ts, maps) with
// tsconfig.build.json, then copies the files the compiled code reads at run time (the
// monitor's dashboard). dist/ is made afresh so that no output of a deleted source stays.
import { execFileSync } from 'node:child_process'
import { cpSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const dist = join(root, 'dist')
rmSync(dist, { recursive: true, force: true })
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root })
cpSync(join(root, 'monitor/dashboard'), join(dist, 'monitor/dashboard'), { recursive: true })
