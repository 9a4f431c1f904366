/**
 * The coordinator: membership, placement of actors on workers, checkpoint epochs, and
 * end-of-input tracking for bounded pipelines. Processing never waits on it: it starts
 * epochs and moves actors; actors commit on their own.
 */
import type { Logger } from 'pino'
import { subjects, type ControlBus, type Subscription } from '../runtime/control/bus.ts'
import { naming, type Pipeline } from '../runtime/pipeline.ts'
import { actorFinished, epochAck, workerHello, type AssignmentMessage, type EpochMessage } from './messages.ts'
import { place, type Assignment } from './placement.ts'
import { EpochClock } from './epochs.ts'

export interface CoordinatorOptions {
  cluster: string
  /** Interval between checkpoint epochs, ms. */
  epochIntervalMs: number
  log: Logger
  /** Called once when every actor of a bounded pipeline has finished. */
  onAllFinished?: () => void
}

export class Coordinator {
  private readonly workers = new Set<string>()
  private assignment: Assignment = new Map()
  private generation = 0
  private readonly finishedActors = new Set<string>()
  private readonly finishedStages = new Set<string>()
  private readonly subs: Subscription[] = []
  private readonly clock: EpochClock
  private readonly actors: string[]

  constructor(private readonly bus: ControlBus, private readonly pipeline: Pipeline, private readonly options: CoordinatorOptions) {
    this.actors = pipeline.actorStages.flatMap((s) => Array.from({ length: s.parallelism }, (_, p) => naming.actor(s.name, p)))
    this.clock = new EpochClock(this.actors, options.epochIntervalMs, (epoch) => this.publishEpoch(epoch))
  }

  private subject(kind: keyof typeof subjects): string {
    return subjects[kind](this.options.cluster, this.pipeline.name)
  }

  start(): void {
    const log = this.options.log
    this.subs.push(
      this.bus.subscribe(this.subject('workerHello'), (raw, subject) => {
        const msg = workerHello.safeParse(raw)
        if (!msg.success) return void log.warn({ subject, issue: msg.error.issues[0] }, 'malformed worker hello dropped')
        if (msg.data.fingerprint !== this.pipeline.fingerprint()) {
          return void log.error({ worker: msg.data.worker, fingerprint: msg.data.fingerprint, expected: this.pipeline.fingerprint() }, 'worker runs a different pipeline topology; refused')
        }
        if (this.workers.has(msg.data.worker)) return void this.publishAssignment()
        this.workers.add(msg.data.worker)
        this.rebalance()
      }),
      this.bus.subscribe(this.subject('epochAck'), (raw) => {
        const msg = epochAck.safeParse(raw)
        if (msg.success) this.clock.ack(msg.data.actor, msg.data.epoch)
      }),
      this.bus.subscribe(this.subject('actorFinished'), (raw) => {
        const msg = actorFinished.safeParse(raw)
        if (!msg.success) return
        if (this.finishedActors.has(msg.data.actor)) return
        this.finishedActors.add(msg.data.actor)
        this.clock.retire(msg.data.actor)
        this.updateFinishedStages()
        if (this.allFinished) this.options.onAllFinished?.()
      }),
    )
    this.clock.start()
  }

  /** The newest epoch every live actor has committed. */
  get completedEpoch(): number {
    return this.clock.completed
  }

  private rebalance(): void {
    this.assignment = place(this.actors, [...this.workers], this.assignment)
    this.generation++
    this.publishAssignment()
  }

  private publishAssignment(): void {
    const msg: AssignmentMessage = { v: 1, generation: this.generation, actors: Object.fromEntries(this.assignment) }
    this.bus.publish(this.subject('assignment'), msg)
  }

  private publishEpoch(epoch: number): void {
    const msg: EpochMessage = { v: 1, epoch, generation: this.generation, finishedStages: [...this.finishedStages] }
    this.bus.publish(this.subject('epoch'), msg)
  }

  private updateFinishedStages(): void {
    for (const s of this.pipeline.actorStages) {
      if (this.finishedStages.has(s.name)) continue
      const all = Array.from({ length: s.parallelism }, (_, p) => naming.actor(s.name, p)).every((a) => this.finishedActors.has(a))
      if (all) this.finishedStages.add(s.name)
    }
    // Tell workers now rather than at the next epoch, so bounded runs end promptly.
    this.publishEpoch(this.clock.current)
  }

  get allFinished(): boolean {
    return this.finishedActors.size === this.actors.length
  }

  stop(): void {
    this.clock.stop()
    for (const s of this.subs) s.unsubscribe()
  }
}
