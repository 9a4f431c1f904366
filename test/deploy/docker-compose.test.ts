/**
 * deploy/docker-compose.yml is the Docker route to the services of scripts/services.sh: it
 * must be a file Compose accepts, and publish each service where test/support/services.ts
 * looks for it. No Docker engine is needed: `compose config` only reads the file.
 */
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { services, type ServiceName } from '../support/services.ts'

const run = promisify(execFile)
const composeFile = fileURLToPath(new URL('../../deploy/docker-compose.yml', import.meta.url))

/** The Compose client on this machine: the docker CLI plugin, else docker-compose 1.x. */
async function composeClient(): Promise<{ command: string; args: string[] } | { missing: string }> {
  const candidates = [
    { command: 'docker', args: ['compose'] },
    { command: 'docker-compose', args: [] },
  ]
  for (const candidate of candidates) {
    try {
      await run(candidate.command, [...candidate.args, 'version'], { timeout: 20_000 })
      return candidate
    } catch {
      // not installed, or this docker has no compose plugin: try the next
    }
  }
  return { missing: 'neither `docker compose` (the CLI plugin) nor `docker-compose` is installed' }
}

const client = await composeClient()
if ('missing' in client) console.warn(`skipping the compose validation of deploy/docker-compose.yml: ${client.missing}`)

describe('deploy/docker-compose.yml', () => {
  it.skipIf('missing' in client)('is a valid compose file (compose config --quiet)', async () => {
    if ('missing' in client) return
    const { stderr } = await run(client.command, [...client.args, '-f', composeFile, 'config', '--quiet'], { timeout: 30_000 })
    expect(stderr.trim()).toBe('')
  })

  it('publishes every service on 127.0.0.1 at the port the tests expect', () => {
    const text = readFileSync(composeFile, 'utf8')
    for (const name of Object.keys(services) as ServiceName[]) {
      const first = services[name].url.split(',')[0]!
      const port = new URL(first.includes('://') ? first : `tcp://${first}`).port
      expect(text, `${name} on port ${port}`).toContain(`"127.0.0.1:${port}:${port}"`)
    }
  })
})
