/**
 * The monitor's Prometheus metrics: per output and per stage gauges set from each
 * evaluation (so `/metrics` and `/api/status` agree), the monitor's own counters, and
 * the process' default metrics. A figure the monitor does not know (no watermark yet) is
 * absent rather than 0, so an alert rule on it cannot fire on ignorance.
 *
 * @example
 * const metrics = new MonitorMetrics([workerRegistry])
 * metrics.update(status)
 * reply.type(metrics.contentType).send(await metrics.text())
 */
import { Counter, Gauge, Histogram, Registry, type Metric } from 'prom-client'
import { collectProcessMetrics } from '../runtime/metrics.ts'
import type { MonitorStatus } from './status.ts'

const OUTPUT_LABELS = ['cluster', 'pipeline', 'output'] as const
const STAGE_LABELS = ['cluster', 'pipeline', 'stage'] as const

export class MonitorMetrics {
  readonly registry = new Registry()
  readonly received: Counter
  readonly malformed: Counter
  readonly viewDelay: Histogram
  /** Questions the API asked workers (a stage's records, a view lookup), by kind and the HTTP status answered. */
  readonly inspected: Counter<'kind' | 'status'>
  private readonly outputGauges: Record<'timeliness' | 'endToEnd' | 'sloBroken', Gauge<(typeof OUTPUT_LABELS)[number]>>
  private readonly stageGauges: Record<'lag' | 'unprocessed' | 'failures' | 'late' | 'checkpointAge' | 'missing' | 'failed', Gauge<(typeof STAGE_LABELS)[number]>>
  private readonly stalled: Gauge<'cluster' | 'pipeline'>

  /** `extra`: registries served on the same /metrics (an embedded run's worker metrics). */
  constructor(private readonly extra: readonly Registry[] = []) {
    const registers = [this.registry]
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> => new Gauge({ name, help, labelNames, registers })
    this.outputGauges = {
      timeliness: gauge('weir_output_timeliness_seconds', 'Now minus the output watermark (0 once ended)', OUTPUT_LABELS),
      endToEnd: gauge('weir_output_end_to_end_seconds', 'Max over the output actors of commit time minus the ingest horizon', OUTPUT_LABELS),
      sloBroken: gauge('weir_output_slo_broken', '1 while the output timeliness SLO is broken, 0 while ok (absent: no SLO or unknown)', OUTPUT_LABELS),
    }
    this.stageGauges = {
      lag: gauge('weir_stage_watermark_lag_seconds', 'Now minus the stage watermark', STAGE_LABELS),
      unprocessed: gauge('weir_stage_unprocessed_records', 'Unprocessed input records of the stage', STAGE_LABELS),
      failures: gauge('weir_stage_failures_per_second', 'Errors plus dead letters per second over the last minute', STAGE_LABELS),
      late: gauge('weir_stage_late_records_per_second', 'Late records per second over the last minute', STAGE_LABELS),
      checkpointAge: gauge('weir_stage_checkpoint_age_seconds', 'Now minus the oldest last commit of the stage actors', STAGE_LABELS),
      missing: gauge('weir_stage_actors_missing', 'Actors of the stage that send no progress', STAGE_LABELS),
      failed: gauge('weir_stage_actors_failed', 'Actors of the stage that failed for good (stopped, moved or quarantined)', STAGE_LABELS),
    }
    this.stalled = gauge('weir_pipeline_stalled', '1 while no actor committed a checkpoint for too long', ['cluster', 'pipeline'])
    this.received = new Counter({ name: 'weir_monitor_events_received_total', help: 'Progress and health messages received', registers })
    this.malformed = new Counter({ name: 'weir_monitor_events_malformed_total', help: 'Messages dropped because they did not parse', registers })
    this.viewDelay = new Histogram({
      name: 'weir_monitor_view_delay_seconds',
      help: 'When the monitor saw a watermark change minus when the actor made it (clocks of two machines)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    })
    this.inspected = new Counter({ name: 'weir_monitor_inspect_requests_total', help: 'Questions the dashboard API asked a pipeline\'s workers, by kind (views, lookup, sample) and the HTTP status answered', labelNames: ['kind', 'status'], registers })
    collectProcessMetrics(this.registry)
  }

  get contentType(): string {
    return this.registry.contentType
  }

  /** Sets every gauge from one evaluation; series of forgotten pipelines disappear. */
  update(status: MonitorStatus): void {
    for (const g of [...Object.values(this.outputGauges), ...Object.values(this.stageGauges), this.stalled]) g.reset()
    for (const p of status.pipelines) {
      this.stalled.set({ cluster: p.cluster, pipeline: p.pipeline }, p.stalled ? 1 : 0)
      for (const o of p.outputs) {
        const labels = { cluster: p.cluster, pipeline: p.pipeline, output: o.output }
        setIf(this.outputGauges.timeliness, labels, o.timelinessMs, 1000)
        setIf(this.outputGauges.endToEnd, labels, o.endToEndMs, 1000)
        if (o.slo !== null && o.slo.state !== 'unknown') this.outputGauges.sloBroken.set(labels, o.slo.state === 'broken' ? 1 : 0)
      }
      for (const s of p.stages) {
        const labels = { cluster: p.cluster, pipeline: p.pipeline, stage: s.name }
        setIf(this.stageGauges.lag, labels, s.watermarkLagMs, 1000)
        this.stageGauges.unprocessed.set(labels, s.unprocessed)
        setIf(this.stageGauges.failures, labels, s.failureRate, 1)
        setIf(this.stageGauges.late, labels, s.lateRate, 1)
        setIf(this.stageGauges.checkpointAge, labels, s.checkpointAgeMs, 1000)
        this.stageGauges.missing.set(labels, s.actors.missing)
        this.stageGauges.failed.set(labels, s.actors.failed)
      }
    }
  }

  /**
   * The exposition text of this registry and the extra ones. Not `Registry.merge`: it
   * throws when two registries hold the same metric (both collecting the default process
   * metrics, say); here the first registry holding a name serves it.
   */
  async text(): Promise<string> {
    const merged = new Registry()
    for (const r of [this.registry, ...this.extra]) {
      // The typings say MetricObject; at runtime these are the metric instances (Registry.merge registers them the same way).
      for (const m of r.getMetricsAsArray()) if (merged.getSingleMetric(m.name) === undefined) merged.registerMetric(m as unknown as Metric)
    }
    return merged.metrics()
  }
}

function setIf<L extends string>(g: Gauge<L>, labels: Partial<Record<L, string>>, value: number | null, divisor: number): void {
  if (value !== null && Number.isFinite(value)) g.set(labels, value / divisor)
}
