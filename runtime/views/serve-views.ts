/**
 * Starts the views' HTTP server (view-server.ts) for a running worker or `weir run`, and
 * leaves its address in `<dir>/views.json`, where `weir peek` finds a local run without
 * being told a port. Loopback unless told otherwise; off loopback only with a token.
 *
 * @example
 * const server = await serveViews({ pipeline, bus, cluster: 'embedded', host: '127.0.0.1', port: 0, dir: dataDir, log })
 * console.log(server.url) // http://127.0.0.1:40123
 * await server.close()
 */
import { rmSync, writeFileSync } from 'node:fs'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import type { Logger } from 'pino'
import type { Pipeline } from '../api/pipeline.ts'
import type { ControlBus } from '../control/bus.ts'
import { checkPublicBinding } from '../http-token.ts'
import { ViewClient } from './view-client.ts'
import { createViewServer } from './view-server.ts'

export interface ViewsServerOptions {
  pipeline: Pipeline
  bus: ControlBus
  cluster: string
  host: string
  /** 0 picks a free port. */
  port: number
  token?: string
  /** Where to write views.json (the data or state dir). */
  dir?: string
  log: Logger
}

export interface ViewsServer {
  readonly url: string
  close(): Promise<void>
}

/** The file in a data dir that names the views server of the process running there. */
export const VIEWS_FILE = 'views.json'

export async function serveViews(options: ViewsServerOptions): Promise<ViewsServer> {
  const token = options.token === '' ? undefined : options.token
  checkPublicBinding(options.host, token, '--views-host', '--views-token-file FILE or WEIR_VIEWS_TOKEN')
  const app = createViewServer({ pipelines: [{ pipeline: options.pipeline, views: new ViewClient(options.bus, options.pipeline, { cluster: options.cluster }) }], token, log: options.log })
  await app.listen({ host: options.host, port: options.port })
  const address = app.server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `http://${host}:${address.port}`
  const file = options.dir === undefined ? undefined : join(options.dir, VIEWS_FILE)
  if (file !== undefined) writeFileSync(file, JSON.stringify({ url, pid: process.pid, pipeline: options.pipeline.name, cluster: options.cluster, token: token !== undefined }) + '\n')
  return {
    url,
    async close() {
      if (file !== undefined) rmSync(file, { force: true })
      await app.close()
    },
  }
}
