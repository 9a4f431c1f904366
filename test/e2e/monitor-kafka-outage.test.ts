/**
 * With Kafka stopped under a running pipeline, the monitor (which reads only NATS) still
 * answers, shows the pipeline stalled, the output's SLO broken and the stage holding it
 * back, and publishes a 'broken' alert; when Kafka is back, processing resumes and a
 * 'recovered' alert follows. Real processes; the broker is the test's own (services.sh
 * on other ports), so stopping it disturbs no other test.
 */
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NatsBus } from '../../runtime/control/nats/nats-bus.ts'
import { progressSubjects, sloAlert, type SloAlert } from '../../runtime/control/progress.ts'
import { removeDir, tempDataDir } from '../../testing/index.ts'
import { requireService } from '../support/services.ts'
import { startWeir, tempDirs, until } from '../support/weir-cli.ts'

const exec = promisify(execFile)
const kafka = await requireService('kafka')
const nats = await requireService('nats')
const SCRIPT = join(import.meta.dirname, '..', '..', 'scripts', 'services.sh')
const servicesDir = tempDataDir('weir-kafka-outage-services-')
const BROKER = '127.0.0.1:19392'
const env = { ...process.env, WEIR_SERVICES_DIR: servicesDir, WEIR_KAFKA_BROKERS: BROKER, WEIR_KAFKA_CONTROLLER_PORT: '19393' }
const services = (cmd: string): Promise<unknown> => exec('bash', [SCRIPT, cmd, ...(cmd === 'up' || cmd === 'down' ? ['kafka'] : [])], { env, timeout: 180_000 })
const tempDir = tempDirs('weir-kafka-outage-')

interface Output { output: string; timelinessMs: number | null; slo: { state: string } | null; holdingBack: { stage: string; reason: string } | null }
interface PipelineStatus { pipeline: string; stalled: boolean; outputs: Output[] }


describe.skipIf(!kafka.available || !nats.available)('the monitor while Kafka is down', () => {
  beforeAll(() => services('up'), 200_000)
  afterAll(async () => {
    await services('down').catch(() => undefined)
    removeDir(servicesDir)
  }, 60_000)

  it('still answers, shows the pipeline stalled and its SLO broken with an alert, and alerts again when it recovers', async () => {
    const dir = tempDir()
    const cluster = `o${randomUUID().slice(0, 8)}`
    const alerts: SloAlert[] = []
    const observer = await NatsBus.connect({ servers: [nats.url], name: 'outage-test' })
    observer.subscribe(progressSubjects.alerts(cluster, 'wordcount'), (m) => {
      const a = sloAlert.safeParse(m)
      if (a.success) alerts.push(a.data)
    })
    const monitor = startWeir(['monitor', '--bus', nats.url, '--cluster', cluster, '--port', '0', '--slo', 'wordcount/sink=3s'])
    const run = startWeir(['run', 'examples/wordcount.ts', '--pipe', `kafka://${BROKER}`, '--bus', nats.url, '--cluster', cluster, '--epoch-ms', '250', '--data-dir', join(dir, 'data'), '--param', 'lines=1000000', '--param', 'rate=40', '--param', `out=${dir}/out/c-{partition}.jsonl`, '-q'])
    try {
      let stdout = ''
      monitor.child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()))
      const url = await until(async () => /dashboard (http:\/\/\S+?)\/? /.exec(stdout)?.[1]?.replace(/\/$/, ''), 20_000, 'monitor URL')
      const pipeline = async (): Promise<PipelineStatus | undefined> => {
        const res = await fetch(`${url}/api/status`, { signal: AbortSignal.timeout(5000) })
        expect(res.status).toBe(200)
        return ((await res.json()) as { pipelines: PipelineStatus[] }).pipelines.find((p) => p.pipeline === 'wordcount')
      }
      // Healthy first: the sink's timeliness within the SLO.
      await until(async () => ((await pipeline())?.outputs.find((o) => o.output === 'sink')?.slo?.state === 'ok' ? true : undefined), 60_000, 'SLO ok')

      const stopAt = Date.now()
      await services('stop-kafka')
      const stoppedAt = Date.now()
      let seen: PipelineStatus | undefined
      const broken = await until(async () => {
        const p = (seen = await pipeline())
        const sink = p?.outputs.find((o) => o.output === 'sink')
        return p?.stalled === true && sink?.slo?.state === 'broken' ? sink : undefined
      }, 45_000, 'pipeline stalled and SLO broken').catch((err: Error) => {
        throw new Error(`${err.message}; Kafka stopped in ${stoppedAt - stopAt} ms; the monitor's last answer: ${JSON.stringify(seen)}; the run (exit ${String(run.child.exitCode)}) wrote: ${run.stderr().slice(-3000)}`)
      })
      console.log(`kafka outage: stopped in ${stoppedAt - stopAt} ms, stalled and broken ${Date.now() - stoppedAt} ms after`)
      expect(broken.timelinessMs).toBeGreaterThan(3000)
      expect(broken.holdingBack?.stage).toBeTruthy()
      await until(async () => (alerts.some((a) => a.state === 'broken' && a.output === 'sink') ? true : undefined), 10_000, 'broken alert')

      await services('start-kafka')
      await until(async () => ((await pipeline())?.outputs.find((o) => o.output === 'sink')?.slo?.state === 'ok' ? true : undefined), 120_000, 'SLO recovered')
      await until(async () => (alerts.some((a) => a.state === 'recovered' && a.output === 'sink') ? true : undefined), 10_000, 'recovered alert')
      const brokenAlert = alerts.find((a) => a.state === 'broken')!
      expect(brokenAlert).toMatchObject({ cluster, pipeline: 'wordcount', timelinessSloMs: 3000 })
    } finally {
      run.child.kill('SIGKILL')
      monitor.child.kill('SIGKILL')
      await Promise.all([run.done, monitor.done])
      await observer.close()
    }
  }, 300_000)
})
