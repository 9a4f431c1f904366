/**
 * The Dockerfile at the repository root, read as text (no Docker engine here): a
 * multi-stage build whose last stage runs the compiled CLI as a non-root user with
 * production dependencies only, and whose build stage copies every source directory the
 * compiler needs (tsconfig.build.json's include), none of which .dockerignore leaves out.
 */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))

interface Instruction {
  op: string
  args: string
}

interface Stage {
  base: string
  name: string | undefined
  instructions: Instruction[]
}

/** The Dockerfile's stages: instructions with continuation lines joined and comments dropped. */
function parseDockerfile(text: string): { args: Instruction[]; stages: Stage[] } {
  const logical: string[] = []
  let current = ''
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line)) continue
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `
      continue
    }
    current += line
    if (current.trim() !== '') logical.push(current.trim())
    current = ''
  }
  const preamble: Instruction[] = []
  const stages: Stage[] = []
  for (const l of logical) {
    const m = /^(\S+)\s+(.*)$/.exec(l)
    if (m === null) throw new Error(`cannot read Dockerfile line: ${l}`)
    const instruction = { op: m[1]!.toUpperCase(), args: m[2]!.trim() }
    if (instruction.op === 'FROM') {
      const from = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args)
      if (from === null) throw new Error(`cannot read FROM ${instruction.args}`)
      stages.push({ base: from[1]!, name: from[2], instructions: [] })
    } else if (stages.length === 0) {
      preamble.push(instruction)
    } else {
      stages[stages.length - 1]!.instructions.push(instruction)
    }
  }
  return { args: preamble, stages }
}

function ops(stage: Stage, op: string): string[] {
  return stage.instructions.filter((i) => i.op === op).map((i) => i.args)
}

/** COPY's sources and destination (`--from`/`--chown` flags apart). */
function copyParts(args: string): { from: string | undefined; sources: string[]; dest: string } {
  const words = args.split(/\s+/)
  const flags = words.filter((w) => w.startsWith('--'))
  const paths = words.filter((w) => !w.startsWith('--'))
  const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length)
  return { from, sources: paths.slice(0, -1), dest: paths[paths.length - 1]! }
}

/** The `include` of tsconfig.build.json (JSON with // comments). */
function buildIncludes(): string[] {
  const text = readFileSync(join(root, 'tsconfig.build.json'), 'utf8').replace(/^\s*\/\/.*$/gm, '')
  return (JSON.parse(text) as { include: string[] }).include
}

const dockerfile = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'))
const final = dockerfile.stages[dockerfile.stages.length - 1]!
const stageNamed = (name: string): Stage => {
  const stage = dockerfile.stages.find((s) => s.name === name)
  if (stage === undefined) throw new Error(`no stage ${name}`)
  return stage
}

describe('Dockerfile', () => {
  it('is multi-stage, the last stage on Node 24', () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2)
    const nodeImage = dockerfile.args.find((a) => a.op === 'ARG' && a.args.startsWith('NODE_IMAGE='))?.args.slice('NODE_IMAGE='.length)
    const base = final.base === '${NODE_IMAGE}' ? nodeImage : final.base
    expect(base).toMatch(/^node:24(-|$)/)
    // The final stage takes what it runs from the other stages, never the whole context.
    for (const copy of ops(final, 'COPY').map(copyParts)) expect(copy.sources, `COPY ${copy.sources.join(' ')}`).not.toContain('.')
  })

  it('runs as a non-root user, by number (Kubernetes runAsNonRoot checks a uid)', () => {
    const users = ops(final, 'USER')
    expect(users.length).toBeGreaterThan(0)
    const user = users[users.length - 1]!
    expect(user).toMatch(/^\d+(:\d+)?$/)
    expect(Number(user.split(':')[0])).toBeGreaterThan(0)
    // The RUNs of the final stage (making its directories) come before it: what the image
    // starts is never root.
    const lastUser = final.instructions.map((i) => i.op).lastIndexOf('USER')
    expect(final.instructions.slice(lastUser).map((i) => i.op)).not.toContain('RUN')
  })

  it('has no devDependencies in the final stage', () => {
    // No install in the final stage itself…
    for (const run of ops(final, 'RUN')) expect(run).not.toMatch(/\bnpm\s+(ci|install|i)\b/)
    // …its node_modules come from a stage that installed with --omit=dev.
    const modules = ops(final, 'COPY').map(copyParts).filter((c) => c.sources.some((s) => s.endsWith('node_modules')))
    expect(modules).toHaveLength(1)
    const depsStage = stageNamed(modules[0]!.from!)
    const installs = ops(depsStage, 'RUN').filter((r) => /\bnpm\s+ci\b/.test(r))
    expect(installs).toHaveLength(1)
    expect(installs[0]).toMatch(/--omit=dev/)
    // And the package manifest it copies is the one whose devDependencies were left out.
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }
    expect(Object.keys(pkg.devDependencies)).toContain('typescript')
  })

  it('runs the compiled JavaScript: dist/ from the build stage and bin/weir.js, no TypeScript sources', () => {
    expect(ops(final, 'ENTRYPOINT')).toEqual(['["node", "bin/weir.js"]'])
    const copies = ops(final, 'COPY').map(copyParts)
    const dist = copies.find((c) => c.sources.includes('/app/dist'))
    expect(dist?.from).toBeDefined()
    expect(ops(stageNamed(dist!.from!), 'RUN')).toContain('npm run build')
    const fromContext = copies.filter((c) => c.from === undefined).flatMap((c) => c.sources)
    expect(fromContext).toContain('bin/weir.js')
    for (const source of fromContext) expect(source, 'no sources in the runtime image').not.toMatch(/\.ts$|^(cli|runtime|runner|coordinator|monitor|processors|testing|types)\b/)
    // bin/weir.js runs dist/ exactly when cli/main.ts is absent, as in this image.
    const launcher = readFileSync(join(root, 'bin/weir.js'), 'utf8')
    expect(launcher).toContain("existsSync(new URL('../cli/main.ts', import.meta.url))")
    expect(launcher).toContain('`../dist/${path}.js`')
  })

  it('copies every directory the build compiles into the build stage, none of them dockerignored', () => {
    const build = stageNamed(copyParts(ops(final, 'COPY').find((c) => c.includes('/app/dist'))!).from!)
    const copied = ops(build, 'COPY').map(copyParts).filter((c) => c.from === undefined).flatMap((c) => c.sources)
    for (const include of [...buildIncludes(), 'tsconfig.json', 'tsconfig.build.json', 'scripts/build.mjs', 'package.json', 'package-lock.json']) {
      expect(copied, include).toContain(include)
    }
    const ignored = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'))
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', '.git']))
    const allCopied = dockerfile.stages.flatMap((s) => ops(s, 'COPY').map(copyParts).filter((c) => c.from === undefined).flatMap((c) => c.sources))
    for (const source of allCopied) {
      expect(existsSync(join(root, source)), `${source} exists`).toBe(true)
      for (const pattern of ignored) expect(source === pattern || source.startsWith(`${pattern}/`), `${source} is dockerignored by ${pattern}`).toBe(false)
    }
  })
})
