/**
 * The stock-ticker platform from streaming-data-platform.txt: prices for many symbols flow
 * through five processors to a real-time buy/sell signal.
 *
 *   prices (source) → normalize → window-avg → ema → momentum → signal → signals.jsonl (sink)
 *
 * Prices carry event times; window-avg is a tumbling event-time window (it fires when the
 * watermark passes the window's end), so the signal's timeliness is measured end to end:
 * the run's summary and `--monitor` show how far the signals trail the ticks.
 *
 *   npx weir run examples/ticker.ts                                  # bounded, finishes by itself
 *   npx weir run examples/ticker.ts --param unbounded=true --param rate=2000 --epoch-ms 200 \
 *     --monitor --slo signals-file=2s                                # live, until Ctrl-C; dashboard on :9464
 *
 * With `--param pg=<url>` the signals also go into PostgreSQL (table `ticker_signals`, created
 * if missing; the password from PGPASSWORD), and with `--param redis=<url>` every window's
 * average price goes into the Redis hash `ticker:latest` (symbol → price): both exactly once.
 *
 *   PGPASSWORD=weir npx weir run examples/ticker.ts \
 *     --param pg=postgres://weir@127.0.0.1:5432/weir --param redis=redis://127.0.0.1:6379
 */
import { Pipeline, Processor, policy, type Context, type StreamRecord } from '../index.ts'
import { GeneratorSource, JsonlFileSink, PostgresSink, RedisSink, WindowAggregate, tumbling } from '../processors/index.ts'

/** A raw tick as an exchange feed sends it: price in cents, symbol in any case. */
export interface RawTick {
  sym: string
  cents: number
  qty: number
}

export interface Tick {
  symbol: string
  price: number
  qty: number
}

export interface WindowAverage {
  symbol: string
  windowStart: number
  avg: number
  volume: number
}

export interface Trend extends WindowAverage {
  ema: number
}

export interface Momentum {
  symbol: string
  windowStart: number
  score: number
  price: number
}

export interface Signal {
  symbol: string
  side: 'buy' | 'sell'
  price: number
  score: number
  windowStart: number
}

const SYMBOLS = ['AAPL', 'MSFT', 'GOOG', 'AMZN', 'NVDA', 'META', 'TSLA', 'AMD', 'INTC', 'ORCL', 'IBM', 'SAP', 'ASML', 'TSM', 'ADBE', 'CRM', 'NFLX', 'PYPL', 'UBER', 'SHOP']

/** A deterministic pseudo-random number in [0, 1) from integers (same inputs, same tick, on every run). */
function noise(a: number, b: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(b + 0x632be5ab, 0xc2b2ae35)
  h ^= h >>> 15
  h = Math.imul(h, 0x2c1b3c6d)
  h ^= h >>> 12
  return (h >>> 0) / 4294967296
}

/** Price of a symbol at tick i: a smooth deterministic walk, so signals come and go. */
function priceAt(symbolIndex: number, i: number): number {
  const base = 50 + symbolIndex * 17
  const wave = Math.sin(i / (40 + symbolIndex * 3)) * base * 0.05 + Math.sin(i / 7) * base * 0.004
  return Math.round((base + wave + (noise(symbolIndex, i) - 0.5) * base * 0.002) * 100)
}

/** Step 1: validate and convert a raw tick; a malformed one throws and is dead-lettered. */
export class Normalize extends Processor<RawTick, Tick> {
  onRecord(r: StreamRecord<RawTick>, ctx: Context<Tick>): void {
    const { sym, cents, qty } = r.value
    if (typeof sym !== 'string' || !Number.isFinite(cents) || cents <= 0) throw new Error(`malformed tick ${JSON.stringify(r.value)}`)
    const symbol = sym.toUpperCase()
    ctx.emit(symbol, { symbol, price: cents / 100, qty })
  }
}

/**
 * Step 2: volume-weighted average price per symbol over tumbling event-time windows of
 * `sizeMs`: a window fires once, when the watermark passes its end (processors/windows).
 */
export function windowAverager(sizeMs: number): WindowAggregate<Tick, { notional: number; volume: number }, WindowAverage> {
  return new WindowAggregate<Tick, { notional: number; volume: number }, WindowAverage>({
    window: tumbling(sizeMs),
    aggregate: {
      create: () => ({ notional: 0, volume: 0 }),
      add: (acc, t) => ({ notional: acc.notional + t.price * t.qty, volume: acc.volume + t.qty }),
      result: (acc, w, key) => ({ symbol: key!, windowStart: w.start, avg: acc.notional / acc.volume, volume: acc.volume }),
    },
  })
}

/** Step 3: exponential moving average of the window averages. */
export class Ema extends Processor<WindowAverage, Trend> {
  private readonly ema = this.state.value<number>('ema')
  onRecord(r: StreamRecord<WindowAverage>, ctx: Context<Trend>): void {
    const prev = this.ema.get() ?? r.value.avg
    const next = 0.2 * r.value.avg + 0.8 * prev
    this.ema.set(next)
    ctx.emit(r.key, { ...r.value, ema: next })
  }
}

/** Step 4: momentum: how far the latest average runs ahead of its trend, in basis points. */
export class MomentumScore extends Processor<Trend, Momentum> {
  onRecord(r: StreamRecord<Trend>, ctx: Context<Momentum>): void {
    const score = ((r.value.avg - r.value.ema) / r.value.ema) * 10_000
    ctx.emit(r.key, { symbol: r.value.symbol, windowStart: r.value.windowStart, score, price: r.value.avg })
  }
}

/** Step 5: a buy/sell signal with hysteresis: emitted only when a symbol's side changes. */
export class SignalDecider extends Processor<Momentum, Signal> {
  private readonly side = this.state.value<'buy' | 'sell'>('side')
  constructor(private readonly thresholdBps: number) {
    super()
  }
  onRecord(r: StreamRecord<Momentum>, ctx: Context<Signal>): void {
    const { score } = r.value
    const next = score > this.thresholdBps ? 'buy' : score < -this.thresholdBps ? 'sell' : undefined
    if (next === undefined || next === this.side.get()) return
    this.side.set(next)
    ctx.emit(r.key, { symbol: r.value.symbol, side: next, price: Number(r.value.price.toFixed(2)), score: Number(score.toFixed(1)), windowStart: r.value.windowStart })
  }
}

export default function ticker(params: Record<string, string> = {}): Pipeline {
  const unbounded = params.unbounded === 'true'
  const ticks = unbounded ? undefined : Number(params.ticks ?? 100_000)
  const rate = params.rate === undefined ? undefined : Number(params.rate)
  const out = params.out ?? 'out/ticker/signals.jsonl'
  const tickMs = 10
  // name: another pipeline name (topics are named after it); purge=false keeps the edge
  // topics; sink=false ends at the signal topic.
  const p = new Pipeline(params.name ?? 'ticker', { purgeConsumedRecords: params.purge !== 'false' })
  // Each source partition owns a disjoint set of symbols, so a symbol's ticks stay in order.
  const averages = p.source<RawTick>('prices', () => {
    let epochStart = 0
    return new GeneratorSource<RawTick>({
      count: ticks,
      ratePerSecond: rate,
      generate: (i, partition, partitions) => {
        const mine = SYMBOLS.filter((_, s) => s % partitions === partition)
        const s = SYMBOLS.indexOf(mine[i % mine.length]!)
        const step = Math.floor(i / mine.length)
        if (epochStart === 0) epochStart = Date.UTC(2026, 0, 5, 14, 30)
        const qty = 1 + Math.floor(noise(s + 100, step) * 100)
        // Live ticks happen now; the bounded run replays a trading session (same ticks every run).
        const timestamp = unbounded ? Date.now() : epochStart + step * tickMs
        return { key: SYMBOLS[s]!, value: { sym: SYMBOLS[s]!.toLowerCase(), cents: priceAt(s, step), qty }, timestamp }
      },
    })
  }, { partitions: 2 })
    .process<Tick>('normalize', Normalize, { onError: policy.deadLetter() })
    .keyBy(4)
    .process<WindowAverage>('window-avg', () => windowAverager(250))
  if (params.redis !== undefined) {
    // The newest average per symbol, for a dashboard or an API to read.
    averages.to('latest-prices', () => new RedisSink<WindowAverage>({ url: params.redis, commands: (r) => ({ op: 'hset', key: 'ticker:latest', fields: { [r.value.symbol]: r.value.avg.toFixed(2) } }) }))
  }
  const signals = averages
    .process<Trend>('ema', Ema)
    .process<Momentum>('momentum', MomentumScore)
    .keyBy(1)
    .process<Signal>('signal', () => new SignalDecider(15))
  if (params.pg !== undefined) {
    signals.to('signals-pg', () => new PostgresSink<Signal>({
      connection: { url: params.pg, passwordEnv: 'PGPASSWORD' },
      schema: ['CREATE TABLE IF NOT EXISTS ticker_signals (symbol text NOT NULL, side text NOT NULL, price numeric NOT NULL, score double precision NOT NULL, window_start timestamptz NOT NULL)'],
      table: 'ticker_signals',
      columns: (r) => ({ symbol: r.value.symbol, side: r.value.side, price: r.value.price, score: r.value.score, window_start: new Date(r.value.windowStart).toISOString() }),
    }))
  }
  if (params.sink === 'false') return p
  signals.to('signals-file', () => new JsonlFileSink<Signal>({ path: out, format: (r) => ({ ...r.value, at: new Date(r.timestamp).toISOString() }) }))
  p.describeOutput(`buy/sell signals: ${out} (how timely they are: the summary's timeliness, or --monitor)`)
  return p
}
