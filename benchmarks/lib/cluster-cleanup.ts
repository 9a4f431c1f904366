/**
 * Removes what a cluster benchmark run left on the shared services: its Kafka topics and
 * consumer groups (every name holding the run id) and its cluster's NATS KV bucket (the
 * coordinators' leader lease, `weir-<cluster>`).
 *
 * @example
 * await deleteRunArtifacts(admin, runId)
 * await deleteLeaseBucket('nats://127.0.0.1:4222', cluster)
 */
import { connect } from '@nats-io/transport-node'
import { Kvm } from '@nats-io/kv'
import type { Admin } from 'kafkajs'
import { progress } from './stats.ts'

/**
 * Deletes every topic and consumer group whose name has the run id in it. A group that
 * still has a member (a killed process's, until its session times out) is retried once a
 * second, `attempts` times in all.
 */
export async function deleteRunArtifacts(admin: Admin, runId: string, attempts = 10): Promise<void> {
  const topics = (await admin.listTopics()).filter((t) => t.includes(runId))
  if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 30_000 })
  let groups = (await admin.listGroups()).groups.map((g) => g.groupId).filter((g) => g.includes(runId))
  const found = groups.length
  for (let attempt = 0; groups.length > 0 && attempt < attempts; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 1000))
    groups = await admin.deleteGroups(groups).then(
      () => [],
      // A group the broker removed meanwhile (it drops an empty group once its topics' offsets are gone) is deleted too.
      (err: unknown) => ((err as { groups?: Array<{ groupId: string; error?: { type?: string } | null }> }).groups ?? []).filter((g) => g.error !== undefined && g.error !== null && g.error.type !== 'GROUP_ID_NOT_FOUND').map((g) => g.groupId),
    )
  }
  progress(`deleted ${topics.length} topics and ${found - groups.length} consumer groups of run ${runId}${groups.length > 0 ? `; not deleted: ${groups.join(', ')}` : ''}`)
}

/** The cluster's NATS KV bucket (the coordinators' leader lease). */
export async function deleteLeaseBucket(servers: string, cluster: string): Promise<void> {
  const nc = await connect({ servers, timeout: 3000 })
  try {
    const kv = await new Kvm(nc).open(`weir-${cluster}`)
    await kv.destroy()
  } finally {
    await nc.close()
  }
}
