/**
 * Checkpoint epochs: the coordinator starts epoch N on an interval; each actor takes
 * barrier N at its next record boundary and acknowledges it. Epoch N is complete when
 * every live actor has committed it.
 */

/**
 * The checkpoint interval when none is configured, ms: what `weir run`, `weir worker` and
 * `weir coordinator` use. A record becomes visible downstream when its writer's checkpoint
 * commits, so every source's output waits up to one interval; 500 ms halved the ticker's
 * end-to-end latency on the embedded pipe against 1 s (benchmarks/README.md, `bench:latency`)
 * at no throughput cost `bench:kafka` could tell apart (its backlog commits every 20,000
 * records anyway). Kafka Streams commits every 100 ms under exactly-once.
 */
export const DEFAULT_EPOCH_INTERVAL_MS = 500

export class EpochClock {
  private epoch = 0
  private timer: NodeJS.Timeout | undefined
  private readonly acked = new Map<string, number>()

  constructor(actors: readonly string[], private readonly intervalMs: number, private readonly onEpoch: (epoch: number) => void) {
    for (const a of actors) this.acked.set(a, 0)
  }

  get current(): number {
    return Math.max(1, this.epoch)
  }

  start(): void {
    this.timer = setInterval(() => this.onEpoch(++this.epoch), this.intervalMs)
    this.timer.unref()
  }

  /** The last epoch started (0 before the first). */
  get latest(): number {
    return this.epoch
  }

  /**
   * Continues from a predecessor's clock: epochs go on after `latest`, and every actor
   * counts as having committed `completed`.
   */
  restore(latest: number, completed: number): void {
    this.advanceTo(latest)
    for (const [a, e] of this.acked) if (completed > e) this.acked.set(a, completed)
  }

  /** Continues from epoch `n` (the epochs running workers already committed, after a coordinator restart). */
  advanceTo(n: number): void {
    if (n > this.epoch) this.epoch = n
  }

  ack(actor: string, epoch: number): void {
    const prev = this.acked.get(actor)
    if (prev !== undefined && epoch > prev) this.acked.set(actor, epoch)
  }

  /** A finished (or quarantined) actor no longer holds completion back. */
  retire(actor: string): void {
    this.acked.delete(actor)
  }

  /** A retired actor runs again (its quarantine was cleared): it holds completion back from where it stands now. */
  track(actor: string): void {
    if (!this.acked.has(actor)) this.acked.set(actor, this.completed)
  }

  get completed(): number {
    let min = this.epoch
    for (const e of this.acked.values()) min = Math.min(min, e)
    return min
  }

  stop(): void {
    clearInterval(this.timer)
  }
}
