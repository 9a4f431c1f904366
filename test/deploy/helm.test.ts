/**
 * deploy/helm/weir: `helm lint` passes, and the objects `helm template` renders (no cluster
 * is needed for either) have the shape the chart promises: workers in a StatefulSet with a
 * volume per pod holding --state-dir and a stable --id, probes on the worker's health
 * paths, a grace period longer than the hand-off, PodDisruptionBudgets that select the
 * pods, two coordinators, a config file that is JSON with weir's shared keys, non-root
 * pods, a savepoint restored by a hook Job that runs before the workers (and mounts only
 * what exists by then), and credentials reaching the command lines as files. helm comes from scripts/helm.sh (WEIR_HELM); without it the chart tests skip,
 * unless WEIR_REQUIRE_SERVICES=1.
 */
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { DEFAULT_RELEASE_TIMEOUT_MS } from '../../coordinator/coordinator.ts'
import { parseHelmOutput, type YamlValue } from './rendered-yaml.ts'

const run = promisify(execFile)
const chart = fileURLToPath(new URL('../../deploy/helm/weir', import.meta.url))

function findHelm(): string | undefined {
  const cached = join(process.env.WEIR_CACHE_DIR ?? join(homedir(), '.cache/weir'), 'helm-v3.22.0/helm')
  const candidates = [process.env.WEIR_HELM, cached, '/usr/local/bin/helm', '/usr/bin/helm']
  const found = candidates.find((c) => c !== undefined && c !== '' && existsSync(c))
  if (found !== undefined) return found
  const message = `no helm (WEIR_HELM, ${cached}, /usr/local/bin/helm, /usr/bin/helm); build it with scripts/helm.sh`
  if (process.env.WEIR_REQUIRE_SERVICES === '1') throw new Error(`WEIR_REQUIRE_SERVICES=1: ${message}`)
  console.warn(`skipping the helm chart checks: ${message}`)
  return undefined
}
const helm = findHelm()

// Rendered objects are read through these loose views: the test checks fields by path.
type K8sObject = Record<string, any>

async function template(args: string[] = []): Promise<K8sObject[]> {
  const { stdout } = await run(helm!, ['template', 'rel', chart, '--namespace', 'streams', ...args], { timeout: 30_000, maxBuffer: 16 << 20 })
  return parseHelmOutput(stdout) as K8sObject[]
}

function find(objects: K8sObject[], kind: string, component: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && o.metadata?.labels?.['app.kubernetes.io/component'] === component)
  expect(found, `one ${kind} for ${component}`).toHaveLength(1)
  return found[0]!
}

function selects(selector: Record<string, string>, labels: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v)
}

/** The value of `--name=value` in a container's args. */
function flag(args: string[], name: string): string | undefined {
  const prefix = `--${name}=`
  return args.find((a) => a.startsWith(prefix))?.slice(prefix.length)
}

function podSpec(o: K8sObject): K8sObject {
  return o.spec.template.spec
}

/** The projected Secret files of a pod: path under /etc/weir/secrets → [Secret, key]. */
function secretFiles(pod: K8sObject): Map<string, [string, string]> {
  const files = new Map<string, [string, string]>()
  const volume = (pod.volumes as K8sObject[]).find((v) => v.name === 'secrets')
  for (const source of (volume?.projected?.sources ?? []) as K8sObject[]) {
    for (const item of source.secret.items as K8sObject[]) files.set(item.path, [source.secret.name, item.key])
  }
  return files
}

describe.skipIf(helm === undefined)('deploy/helm/weir', () => {
  it('passes helm lint --strict', async () => {
    const { stdout } = await run(helm!, ['lint', '--strict', chart], { timeout: 30_000 })
    expect(stdout).toContain('0 chart(s) failed')
  })

  it('renders workers as a StatefulSet with a volume per pod holding --state-dir and a stable --id', async () => {
    const objects = await template()
    const sts = find(objects, 'StatefulSet', 'worker')
    const claims = sts.spec.volumeClaimTemplates as K8sObject[]
    expect(claims).toHaveLength(1)
    expect(claims[0]!.spec.accessModes).toEqual(['ReadWriteOnce'])
    expect(claims[0]!.spec.resources.requests.storage).toBe('10Gi')
    const pod = podSpec(sts)
    const container = pod.containers[0]
    const args = container.args as string[]
    expect(args.slice(0, 2)).toEqual(['worker', '/app/pipelines/pipeline.ts'])
    const mount = (container.volumeMounts as K8sObject[]).find((m) => m.name === claims[0]!.metadata.name)
    expect(mount, 'the claim is mounted').toBeDefined()
    expect(flag(args, 'state-dir')!.startsWith(`${mount!.mountPath}/`), 'the state dir is on the claim').toBe(true)
    // $(POD_NAME) is expanded by the kubelet: worker-0, worker-1, … keep their identity.
    expect(flag(args, 'id')).toBe('$(POD_NAME)')
    expect((container.env as K8sObject[]).find((e) => e.name === 'POD_NAME')?.valueFrom.fieldRef.fieldPath).toBe('metadata.name')
    expect(sts.spec.updateStrategy.type).toBe('RollingUpdate')
    expect(sts.spec.serviceName).toBe(find(objects, 'Service', 'worker').metadata.name)
    expect(find(objects, 'Service', 'worker').spec.clusterIP).toBe('None')
  })

  it('probes readiness and liveness on the worker\'s metrics port, which is served off loopback with a token', async () => {
    const pod = podSpec(find(await template(), 'StatefulSet', 'worker'))
    const container = pod.containers[0]
    const args = container.args as string[]
    const port = (container.ports as K8sObject[]).find((p) => p.name === 'metrics')
    expect(port?.containerPort).toBe(Number(flag(args, 'metrics-port')))
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' })
    expect(container.livenessProbe.httpGet).toEqual({ path: '/livez', port: 'metrics' })
    expect(flag(args, 'metrics-host')).toBe('0.0.0.0')
    const tokenFile = flag(args, 'metrics-token-file')!
    const files = secretFiles(pod)
    expect(tokenFile.startsWith('/etc/weir/secrets/')).toBe(true)
    expect(files.get(tokenFile.slice('/etc/weir/secrets/'.length))).toEqual(['rel-weir-tokens', 'metrics'])
  })

  it('gives a terminating worker longer than its hand-off', async () => {
    const pod = podSpec(find(await template(), 'StatefulSet', 'worker'))
    // The worker waits up to 10 s for its actors to be released (runner/cluster-worker.ts
    // stop()), the coordinator as long for each release; then the final checkpoint.
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThanOrEqual(2 * DEFAULT_RELEASE_TIMEOUT_MS + 10_000)
    expect(pod.containers[0].lifecycle?.preStop, 'SIGTERM hands off: no preStop').toBeUndefined()
  })

  it('has PodDisruptionBudgets that select the workers and the coordinators', async () => {
    const objects = await template()
    for (const [component, kind] of [['worker', 'StatefulSet'], ['coordinator', 'Deployment']] as const) {
      const pdb = find(objects, 'PodDisruptionBudget', component)
      const workload = find(objects, kind, component)
      const selector = pdb.spec.selector.matchLabels as Record<string, string>
      expect(selects(selector, workload.spec.template.metadata.labels), `${component} PDB selects its pods`).toBe(true)
      expect(selector).toEqual(workload.spec.selector.matchLabels)
      // Selecting no other component's pods.
      for (const other of objects.filter((o) => o.spec?.template !== undefined && o !== workload)) {
        expect(selects(selector, other.spec.template.metadata.labels), `${component} PDB vs ${other.metadata.name}`).toBe(false)
      }
    }
    expect(find(objects, 'PodDisruptionBudget', 'worker').spec.maxUnavailable).toBe(1)
    expect(find(objects, 'PodDisruptionBudget', 'coordinator').spec.minAvailable).toBe(1)
  })

  it('runs two coordinators with health probes, and the monitor behind a Service', async () => {
    const objects = await template()
    const coordinator = find(objects, 'Deployment', 'coordinator')
    expect(coordinator.spec.replicas).toBe(2)
    const c = podSpec(coordinator).containers[0]
    expect(c.args[0]).toBe('coordinator')
    expect(c.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'health' })
    expect(c.livenessProbe.httpGet).toEqual({ path: '/livez', port: 'health' })
    expect((c.ports as K8sObject[]).find((p) => p.name === 'health')?.containerPort).toBe(Number(flag(c.args, 'health-port')))

    const monitor = find(objects, 'Deployment', 'monitor')
    const m = podSpec(monitor).containers[0]
    expect(m.args[0]).toBe('monitor')
    expect(m.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'http' })
    expect(m.livenessProbe.httpGet).toEqual({ path: '/livez', port: 'http' })
    expect(flag(m.args, 'host')).toBe('0.0.0.0')
    expect(flag(m.args, 'token-file')).toBe('/etc/weir/secrets/tokens/monitor')
    const service = find(objects, 'Service', 'monitor')
    expect(selects(service.spec.selector, monitor.spec.template.metadata.labels)).toBe(true)
    expect(service.spec.ports[0].targetPort).toBe('http')
    expect((m.ports as K8sObject[]).find((p) => p.name === 'http')?.containerPort).toBe(Number(flag(m.args, 'port')))
  })

  it('mounts weir.config.json, valid JSON with the shared keys, into every command with --config', async () => {
    const objects = await template(['--set', 'cluster=prod', '--set-json', 'config={"worker":{"epochMs":500}}'])
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'rel-weir-config')!
    const config = JSON.parse(configMap.data['weir.config.json'] as string) as Record<string, YamlValue>
    expect(config).toEqual({ pipe: 'kafka://kafka:9092', bus: 'nats://nats:4222', cluster: 'prod', worker: { epochMs: 500 } })
    for (const o of objects.filter((x) => x.spec?.template !== undefined)) {
      const pod = podSpec(o)
      const container = pod.containers[0]
      expect(flag(container.args, 'config'), o.metadata.name).toBe('/etc/weir/weir.config.json')
      const mount = (container.volumeMounts as K8sObject[]).find((v) => v.mountPath === '/etc/weir/weir.config.json')
      expect(mount?.subPath).toBe('weir.config.json')
      expect((pod.volumes as K8sObject[]).find((v) => v.name === mount!.name)?.configMap.name).toBe('rel-weir-config')
      // A config change rolls the pods (a subPath mount is not updated in place).
      expect(o.spec.template.metadata.annotations['checksum/config']).toMatch(/^[0-9a-f]{64}$/)
    }
  })

  it('runs every pod as a non-root user without privilege escalation, on a read-only root filesystem', async () => {
    const workloads = (await template()).filter((o) => o.spec?.template !== undefined)
    expect(workloads.map((o) => o.kind).sort()).toEqual(['Deployment', 'Deployment', 'StatefulSet'])
    for (const o of workloads) {
      const pod = podSpec(o)
      expect(pod.securityContext.runAsNonRoot, o.metadata.name).toBe(true)
      expect(pod.securityContext.runAsUser).toBeGreaterThan(0)
      expect(pod.automountServiceAccountToken).toBe(false)
      for (const container of pod.containers as K8sObject[]) {
        expect(container.securityContext.allowPrivilegeEscalation).toBe(false)
        expect(container.securityContext.readOnlyRootFilesystem).toBe(true)
        expect(container.securityContext.capabilities.drop).toEqual(['ALL'])
        // The one writable place besides the state volume.
        expect((container.volumeMounts as K8sObject[]).some((v) => v.mountPath === '/tmp')).toBe(true)
      }
    }
  })

  it('restores a savepoint in a hook Job before the workers start, only when savepoint.restoreFrom is set; workers never get --from-savepoint', async () => {
    const plain = await template()
    expect(plain.some((o) => o.kind === 'Job'), 'no Job without a savepoint').toBe(false)
    expect(plain.some((o) => o.metadata.name === 'rel-weir-savepoint-restore')).toBe(false)

    const source = "import { Pipeline } from 'weir'\n\nexport default new Pipeline('orders')\n"
    const objects = await template([
      '--set', 'savepoint.restoreFrom=sp-42', '--set', 'savepoint.volume.persistentVolumeClaim.claimName=weir-savepoints',
      '--set', `pipeline.source=${source}`, '--set', 'pipeline.path=/app/pipelines/orders.ts', '--set', 'pipeline.params.region=eu',
      '--set', 'kafka.tlsSecret.name=kafka-ca', '--set', 'kafka.sasl.mechanism=plain', '--set', 'kafka.sasl.user=weir', '--set', 'kafka.sasl.passwordSecret.name=kafka-login',
      '--set', 'nats.tokenSecret.name=nats-token',
    ])
    for (const o of objects.filter((x) => x.spec?.template !== undefined)) {
      expect(podSpec(o).containers[0].args.join(' '), o.metadata.name).not.toContain('from-savepoint')
    }
    const job = find(objects, 'Job', 'savepoint-restore')
    const hook = (o: K8sObject): { events: string[]; weight: number; deletes: string[] } => ({
      events: String(o.metadata.annotations['helm.sh/hook']).split(','),
      weight: Number(o.metadata.annotations['helm.sh/hook-weight']),
      deletes: String(o.metadata.annotations['helm.sh/hook-delete-policy']).split(','),
    })
    expect(hook(job).events.sort()).toEqual(['pre-install', 'pre-upgrade'])
    expect(hook(job).deletes.sort()).toEqual(['before-hook-creation', 'hook-succeeded'])
    expect(job.spec.backoffLimit).toBeLessThanOrEqual(2)
    const pod = podSpec(job)
    expect(pod.restartPolicy).toBe('Never')
    const container = pod.containers[0]
    const args = container.args as string[]
    expect(args.slice(0, 4)).toEqual(['savepoint', 'restore', '/var/lib/weir/savepoints/sp-42', '/app/pipelines/orders.ts'])
    expect(flag(args, 'config')).toBe('/etc/weir/weir.config.json')
    expect(flag(args, 'pipe-config')).toBe('/etc/weir/kafka.json')
    expect(flag(args, 'param')).toBe('region=eu')
    expect(args).not.toContain('--allow-dropped-state')
    // The same image as the workers; the savepoint volume read-only.
    const worker = podSpec(find(objects, 'StatefulSet', 'worker')).containers[0]
    expect(container.image).toBe(worker.image)
    const mounts = container.volumeMounts as K8sObject[]
    const volumes = pod.volumes as K8sObject[]
    const spMount = mounts.find((m) => m.name === 'savepoints')
    expect(spMount).toEqual({ name: 'savepoints', mountPath: '/var/lib/weir/savepoints', readOnly: true })
    expect(volumes.find((v) => v.name === 'savepoints')?.persistentVolumeClaim).toEqual({ claimName: 'weir-savepoints' })
    expect(mounts.find((m) => m.name === 'pipeline')?.mountPath).toBe('/app/pipelines')
    // Kafka's credentials as the workers get them; nothing of NATS, no token.
    expect((container.env as K8sObject[]).find((e) => e.name === 'WEIR_KAFKA_PASSWORD')?.valueFrom.secretKeyRef).toEqual({ name: 'kafka-login', key: 'password' })
    expect([...secretFiles(pod).keys()]).toEqual(['kafka/ca.crt'])

    // Every ConfigMap it mounts exists before it on first install: a hook of lower weight
    // (pre-install hooks run before the release's own objects are created).
    const mounted = volumes.filter((v) => v.configMap !== undefined).map((v) => v.configMap.name as string)
    expect(mounted.length).toBeGreaterThan(0)
    for (const name of mounted) {
      const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === name)!
      expect(hook(configMap).events.sort(), name).toEqual(['pre-install', 'pre-upgrade'])
      expect(hook(configMap).weight, name).toBeLessThan(hook(job).weight)
      expect(hook(configMap).deletes.sort()).toEqual(['before-hook-creation', 'hook-succeeded'])
    }
    // The hook's copy holds what the workers' ConfigMaps do.
    const copy = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === mounted[0])!
    const release = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'rel-weir-config')!
    expect(copy.data['weir.config.json']).toBe(release.data['weir.config.json'])
    expect(copy.data['kafka.json']).toBe(release.data['kafka.json'])
    expect(copy.data['orders.ts']).toBe(source)
    expect(JSON.parse(copy.data['weir.config.json']).pipe).toBe('kafka://kafka:9092?sasl=plain&user=weir')

    expect(pod.securityContext.runAsNonRoot).toBe(true)
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0)
    expect(pod.automountServiceAccountToken).toBe(false)
    expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } })
    // The actors' scratch state (a temporary dir) needs a writable /tmp.
    expect(mounts.some((m) => m.mountPath === '/tmp')).toBe(true)
  })

  it('mounts a pipeline ConfigMap of yours in the restore Job, and refuses an old worker.fromSavepoint, an object-store prefix and a relative path without a volume', async () => {
    const objects = await template(['--set', 'savepoint.restoreFrom=/savepoints/sp-7', '--set', 'pipeline.existingConfigMap=my-pipeline', '--set', 'savepoint.allowDroppedState=true'])
    const pod = podSpec(find(objects, 'Job', 'savepoint-restore'))
    expect(pod.containers[0].args.slice(0, 3)).toEqual(['savepoint', 'restore', '/savepoints/sp-7'])
    expect(pod.containers[0].args).toContain('--allow-dropped-state')
    expect((pod.volumes as K8sObject[]).find((v) => v.name === 'pipeline')?.configMap).toEqual({ name: 'my-pipeline' })
    expect((pod.volumes as K8sObject[]).some((v) => v.name === 'savepoints')).toBe(false)

    await expect(template(['--set', 'worker.fromSavepoint=/sp'])).rejects.toThrow(/worker\.fromSavepoint is gone.*savepoint\.restoreFrom/)
    await expect(template(['--set', 'savepoint.restoreFrom=s3://weir-savepoints/prod/sp-42'])).rejects.toThrow(/object-store prefix/)
    await expect(template(['--set', 'savepoint.restoreFrom=sp-42'])).rejects.toThrow(/set savepoint\.volume/)
  })

  it('takes NATS and Kafka credentials from existing Secrets, as files (the Kafka SASL password as WEIR_KAFKA_PASSWORD)', async () => {
    const objects = await template([
      '--set', 'nats.user=weir', '--set', 'nats.passwordSecret.name=nats-login',
      '--set', 'nats.tlsSecret.name=nats-tls', '--set', 'nats.tlsSecret.cert=tls.crt', '--set', 'nats.tlsSecret.key=tls.key',
      '--set', 'kafka.brokers={k1:9093,k2:9093}', '--set', 'kafka.tlsSecret.name=kafka-ca',
      '--set', 'kafka.sasl.mechanism=scram-sha-512', '--set', 'kafka.sasl.user=weir', '--set', 'kafka.sasl.passwordSecret.name=kafka-login',
      '--set', 'tokens.existingSecret=weir-tokens',
    ])
    expect(objects.some((o) => o.kind === 'Secret'), 'no Secret made when tokens.existingSecret is given').toBe(false)
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'rel-weir-config')!
    expect(JSON.parse(configMap.data['weir.config.json']).pipe).toBe('kafka://k1:9093,k2:9093?sasl=scram-sha-512&user=weir')
    expect(JSON.parse(configMap.data['kafka.json'])).toEqual({ ssl: { caFile: '/etc/weir/secrets/kafka/ca.crt' } })

    const natsFiles = { 'nats/password': ['nats-login', 'password'], 'nats/ca.crt': ['nats-tls', 'ca.crt'], 'nats/tls.crt': ['nats-tls', 'tls.crt'], 'nats/tls.key': ['nats-tls', 'tls.key'] }
    for (const [kind, component] of [['StatefulSet', 'worker'], ['Deployment', 'coordinator'], ['Deployment', 'monitor']] as const) {
      const pod = podSpec(find(objects, kind, component))
      const args = pod.containers[0].args as string[]
      const files = secretFiles(pod)
      expect(flag(args, 'nats-user'), component).toBe('weir')
      for (const [option, path] of [['nats-password-file', 'nats/password'], ['nats-ca', 'nats/ca.crt'], ['nats-cert', 'nats/tls.crt'], ['nats-key', 'nats/tls.key']] as const) {
        expect(flag(args, option), `${component} ${option}`).toBe(`/etc/weir/secrets/${path}`)
        expect(files.get(path), `${component} ${path}`).toEqual(natsFiles[path])
      }
      const secretsMount = (pod.containers[0].volumeMounts as K8sObject[]).find((m) => m.name === 'secrets')
      expect(secretsMount).toMatchObject({ mountPath: '/etc/weir/secrets', readOnly: true })
      // No credential is ever in the command line or a literal env value.
      expect(args.join(' ')).not.toMatch(/password=|token=/i)
      for (const e of (pod.containers[0].env ?? []) as K8sObject[]) expect(e.value, e.name).toBeUndefined()
    }
    const worker = podSpec(find(objects, 'StatefulSet', 'worker'))
    expect(flag(worker.containers[0].args, 'pipe-config')).toBe('/etc/weir/kafka.json')
    expect(secretFiles(worker).get('kafka/ca.crt')).toEqual(['kafka-ca', 'ca.crt'])
    expect(secretFiles(worker).get('tokens/metrics')).toEqual(['weir-tokens', 'metrics'])
    expect((worker.containers[0].env as K8sObject[]).find((e) => e.name === 'WEIR_KAFKA_PASSWORD')?.valueFrom.secretKeyRef).toEqual({ name: 'kafka-login', key: 'password' })
    // The coordinators and the monitor never touch Kafka.
    expect(secretFiles(podSpec(find(objects, 'Deployment', 'coordinator'))).has('kafka/ca.crt')).toBe(false)
  })

  it('mounts a pipeline given as a value at pipeline.path, and refuses two sources', async () => {
    const source = "import { Pipeline } from 'weir'\n\nexport default new Pipeline('demo')\n"
    const objects = await template(['--set', `pipeline.source=${source}`, '--set', 'pipeline.path=/app/pipelines/demo.ts', '--set', 'pipeline.params.rate=5'])
    const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'rel-weir-pipeline')!
    expect(configMap.data).toEqual({ 'demo.ts': source })
    const pod = podSpec(find(objects, 'StatefulSet', 'worker'))
    const args = pod.containers[0].args as string[]
    expect(args[1]).toBe('/app/pipelines/demo.ts')
    expect(flag(args, 'param')).toBe('rate=5')
    const mount = (pod.containers[0].volumeMounts as K8sObject[]).find((m) => m.name === 'pipeline')
    expect(mount?.mountPath).toBe('/app/pipelines')
    expect((pod.volumes as K8sObject[]).find((v) => v.name === 'pipeline')?.configMap.name).toBe('rel-weir-pipeline')

    await expect(template(['--set', `pipeline.source=x`, '--set', 'pipeline.existingConfigMap=mine'])).rejects.toThrow(/give one/)
  })
})
