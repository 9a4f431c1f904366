package weir.bench.nexmark;

import java.lang.management.ManagementFactory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ListState;
import org.apache.flink.api.common.state.ListStateDescriptor;
import org.apache.flink.api.common.state.MapState;
import org.apache.flink.api.common.state.MapStateDescriptor;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.configuration.TaskManagerOptions;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.core.execution.CheckpointingMode;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.KeyedStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.co.KeyedCoProcessFunction;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

/**
 * The Flink peer of benchmarks/nexmark: one query as a DataStream job on a local MiniCluster
 * with one slot (parallelism 1), RocksDB state, exactly-once checkpoints every --checkpoint-ms,
 * fed by Generator (the same rules and seed as weir's generator). Prints one JSON line: the
 * output count and checksum, wall seconds and the JVM's CPU seconds of env.execute().
 *
 * <pre>
 * java -cp target/flink-nexmark.jar:target/lib/* weir.bench.nexmark.NexmarkJob --query q5 --events 1000000 --seed 42 --dir /tmp/x
 * java -cp ... weir.bench.nexmark.NexmarkJob --checksum 100000 --seed 42
 * </pre>
 */
public final class NexmarkJob {
  static final long Q5_SIZE_MS = 10_000, Q5_SLIDE_MS = 2_000, Q7_SIZE_MS = 10_000, Q8_SIZE_MS = 10_000;
  static final long Q2_AUCTION_MODULUS = 123;
  static final long Q3_CATEGORY = 10;
  static final int Q6_LAST = 10;

  private NexmarkJob() {}

  public static void main(String[] args) throws Exception {
    String query = null, dir = null;
    long events = 0, checksumCount = -1, checkpointMs = 1000;
    int seed = 42;
    for (int i = 0; i < args.length; i += 2) {
      switch (args[i]) {
        case "--query" -> query = args[i + 1];
        case "--events" -> events = Long.parseLong(args[i + 1]);
        case "--seed" -> seed = Integer.parseInt(args[i + 1]);
        case "--dir" -> dir = args[i + 1];
        case "--checkpoint-ms" -> checkpointMs = Long.parseLong(args[i + 1]);
        case "--checksum" -> checksumCount = Long.parseLong(args[i + 1]);
        default -> throw new IllegalArgumentException("unknown option " + args[i]);
      }
    }
    if (checksumCount >= 0) {
      System.out.println("{\"events\":" + checksumCount + ",\"seed\":" + seed + ",\"checksum\":" + Generator.checksumOfEvents(seed, checksumCount) + "}");
      return;
    }
    if (query == null || dir == null) throw new IllegalArgumentException("--query and --dir are required");

    Configuration conf = new Configuration();
    conf.set(TaskManagerOptions.NUM_TASK_SLOTS, 1);
    conf.set(StateBackendOptions.STATE_BACKEND, "rocksdb");
    conf.set(CheckpointingOptions.CHECKPOINT_STORAGE, "filesystem");
    conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, Path.of(dir, "checkpoints").toUri().toString());
    StreamExecutionEnvironment env = StreamExecutionEnvironment.createLocalEnvironment(1, conf);
    env.enableCheckpointing(checkpointMs, CheckpointingMode.EXACTLY_ONCE);

    final int s = seed;
    DataGeneratorSource<Event> generator = new DataGeneratorSource<>(n -> Generator.eventAt(s, n), events, TypeInformation.of(Event.class));
    DataStream<Event> source = env.fromSource(generator,
        WatermarkStrategy.<Event>forBoundedOutOfOrderness(Duration.ZERO).withTimestampAssigner((e, t) -> dateTimeOf(e)), "events");
    build(query, source).sinkTo(new TallySink()).name("tally");

    com.sun.management.OperatingSystemMXBean os = (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
    long cpu0 = os.getProcessCpuTime();
    long t0 = System.nanoTime();
    var result = env.execute("nexmark-" + query);
    double seconds = (System.nanoTime() - t0) / 1e9;
    double cpu = (os.getProcessCpuTime() - cpu0) / 1e9;
    System.out.println("{\"query\":\"" + query + "\",\"events\":" + events + ",\"outputs\":" + TallySink.count
        + ",\"checksum\":" + Integer.toUnsignedLong(TallySink.sum) + ",\"seconds\":" + seconds + ",\"cpu_s\":" + cpu
        + ",\"net_runtime_ms\":" + result.getNetRuntime() + "}");
  }

  static long dateTimeOf(Event e) {
    if (e.person != null) return e.person.dateTime;
    if (e.auction != null) return e.auction.dateTime;
    return e.bid.dateTime;
  }

  static DataStream<String> build(String query, DataStream<Event> events) {
    return switch (query) {
      case "q0" -> events.map(e -> e).returns(Event.class).map(Event::line);
      case "q1" -> events.filter(e -> e.bid != null).map(e -> {
        Event.Bid b = e.bid;
        Event.Bid euro = new Event.Bid();
        euro.auction = b.auction;
        euro.bidder = b.bidder;
        euro.price = (b.price * 89) / 100;
        euro.channel = b.channel;
        euro.url = b.url;
        euro.dateTime = b.dateTime;
        return euro;
      }).returns(Event.Bid.class).map(b -> b.auction + "|" + b.bidder + "|" + b.price + "|" + b.dateTime);
      case "q2" -> events.filter(e -> e.bid != null && e.bid.auction % Q2_AUCTION_MODULUS == 0)
          .map(e -> Tuple2.of(e.bid.auction, e.bid.price)).returns(Types.TUPLE(Types.LONG, Types.LONG))
          .map(t -> t.f0 + "|" + t.f1);
      case "q3" -> events.filter(e -> e.person != null && isQ3State(e.person.state)).map(e -> e.person).returns(Event.Person.class)
          .connect(events.filter(e -> e.auction != null && e.auction.category == Q3_CATEGORY).map(e -> e.auction).returns(Event.Auction.class))
          .keyBy(p -> p.id, a -> a.seller, Types.LONG)
          .process(new Q3Join());
      case "q4" -> auctionsAndBids(events)
          .process(new Q4Close())
          .keyBy(t -> t.f0, Types.LONG)
          .process(new Q4Average());
      case "q6" -> auctionsAndBids(events)
          .process(new Q6Close())
          .keyBy(t -> t.f0, Types.LONG)
          .process(new Q6Average());
      case "q5" -> events.filter(e -> e.bid != null).map(e -> e.bid).returns(Event.Bid.class)
          .keyBy(b -> b.auction, Types.LONG)
          .window(SlidingEventTimeWindows.of(Duration.ofMillis(Q5_SIZE_MS), Duration.ofMillis(Q5_SLIDE_MS)))
          .aggregate(new CountBids(), new WithWindowEnd())
          .keyBy(t -> 0L, Types.LONG)
          .window(TumblingEventTimeWindows.of(Duration.ofMillis(Q5_SLIDE_MS)))
          .aggregate(new HotAuctions())
          .flatMap((HotAcc acc, Collector<String> out) -> {
            for (long a : acc.auctions) out.collect(a + "|" + acc.count + "|" + acc.end);
          }).returns(String.class);
      case "q7" -> events.filter(e -> e.bid != null).map(e -> e.bid).returns(Event.Bid.class)
          .keyBy(b -> 0L, Types.LONG)
          .window(TumblingEventTimeWindows.of(Duration.ofMillis(Q7_SIZE_MS)))
          .aggregate(new HighestBids())
          .flatMap((MaxBidsAcc acc, Collector<String> out) -> {
            for (Event.Bid b : acc.bids) out.collect(b.auction + "|" + b.bidder + "|" + b.price + "|" + b.dateTime);
          }).returns(String.class);
      case "q8" -> events.filter(e -> e.person != null).map(e -> e.person).returns(Event.Person.class)
          .join(events.filter(e -> e.auction != null).map(e -> e.auction).returns(Event.Auction.class))
          .where(p -> p.id, Types.LONG).equalTo(a -> a.seller)
          .window(TumblingEventTimeWindows.of(Duration.ofMillis(Q8_SIZE_MS)))
          .apply((Event.Person p, Event.Auction a) -> p.id + "|" + p.name + "|" + a.reserve + "|" + (p.dateTime - p.dateTime % Q8_SIZE_MS), Types.STRING);
      default -> throw new IllegalArgumentException("unknown query " + query);
    };
  }

  /** q4, q6: auctions and bids keyed by auction id. */
  static KeyedStream<Event, Long> auctionsAndBids(DataStream<Event> events) {
    return events.filter(e -> e.auction != null || e.bid != null)
        .keyBy(e -> e.auction != null ? e.auction.id : e.bid.auction, Types.LONG);
  }

  static boolean isQ3State(String state) {
    return state.equals("OR") || state.equals("ID") || state.equals("CA");
  }

  /** q3: persons connected with auctions by seller: the person once seen, and the auctions that came before them (an unbounded join). */
  static class Q3Join extends KeyedCoProcessFunction<Long, Event.Person, Event.Auction, String> {
    transient ValueState<Event.Person> person;
    transient ListState<Event.Auction> pending;

    @Override
    public void open(OpenContext ctx) {
      person = getRuntimeContext().getState(new ValueStateDescriptor<>("person", Event.Person.class));
      pending = getRuntimeContext().getListState(new ListStateDescriptor<>("pending", Event.Auction.class));
    }

    @Override
    public void processElement1(Event.Person p, Context ctx, Collector<String> out) throws Exception {
      person.update(p);
      Iterable<Event.Auction> waiting = pending.get();
      boolean any = false;
      if (waiting != null) {
        for (Event.Auction a : waiting) {
          out.collect(q3Line(p, a));
          any = true;
        }
      }
      if (any) pending.clear();
    }

    @Override
    public void processElement2(Event.Auction a, Context ctx, Collector<String> out) throws Exception {
      Event.Person seller = person.value();
      if (seller != null) out.collect(q3Line(seller, a));
      else pending.add(a);
    }

    static String q3Line(Event.Person p, Event.Auction a) {
      return p.name + "|" + p.city + "|" + p.state + "|" + a.id;
    }
  }

  /** q4, q6 stage 1: an auction and its best valid bid; at expires, its winning price, as closing() makes it. */
  public static class OpenAuction {
    public long category, seller, reserve, dateTime, expires, best;

    public OpenAuction() {}
  }

  abstract static class CloseAuction<T> extends KeyedProcessFunction<Long, Event, T> {
    transient ValueState<OpenAuction> open;

    abstract T closing(long auction, OpenAuction o);

    @Override
    public void open(OpenContext ctx) {
      open = getRuntimeContext().getState(new ValueStateDescriptor<>("auction", OpenAuction.class));
    }

    @Override
    public void processElement(Event e, Context ctx, Collector<T> out) throws Exception {
      if (e.auction != null) {
        OpenAuction o = new OpenAuction();
        o.category = e.auction.category;
        o.seller = e.auction.seller;
        o.reserve = e.auction.reserve;
        o.dateTime = e.auction.dateTime;
        o.expires = e.auction.expires;
        o.best = -1;
        open.update(o);
        ctx.timerService().registerEventTimeTimer(e.auction.expires);
        return;
      }
      Event.Bid b = e.bid;
      OpenAuction o = open.value();
      if (o == null || b.price < o.reserve || b.price <= o.best || b.dateTime < o.dateTime || b.dateTime > o.expires) return;
      o.best = b.price;
      open.update(o);
    }

    @Override
    public void onTimer(long time, OnTimerContext ctx, Collector<T> out) throws Exception {
      OpenAuction o = open.value();
      if (o == null) return;
      if (o.best >= 0) out.collect(closing(ctx.getCurrentKey(), o));
      open.clear();
    }
  }

  /** q4 stage 1: (category, winning price). */
  static class Q4Close extends CloseAuction<Tuple2<Long, Long>> {
    Q4Close() {
      super();
    }

    @Override
    Tuple2<Long, Long> closing(long auction, OpenAuction o) {
      return Tuple2.of(o.category, o.best);
    }
  }

  /** q6 stage 1: (seller, auction, winning price). */
  static class Q6Close extends CloseAuction<Tuple3<Long, Long, Long>> {
    Q6Close() {
      super();
    }

    @Override
    Tuple3<Long, Long, Long> closing(long auction, OpenAuction o) {
      return Tuple3.of(o.seller, auction, o.best);
    }
  }

  /** q4 stage 2: the running average per category, one output per closing instant. */
  static class Q4Average extends KeyedProcessFunction<Long, Tuple2<Long, Long>, String> {
    transient ValueState<Tuple2<Long, Long>> total;
    transient MapState<Long, Tuple2<Long, Long>> closing;

    @Override
    public void open(OpenContext ctx) {
      total = getRuntimeContext().getState(new ValueStateDescriptor<>("total", Types.TUPLE(Types.LONG, Types.LONG)));
      closing = getRuntimeContext().getMapState(new MapStateDescriptor<>("closing", Types.LONG, Types.TUPLE(Types.LONG, Types.LONG)));
    }

    @Override
    public void processElement(Tuple2<Long, Long> c, Context ctx, Collector<String> out) throws Exception {
      long at = ctx.timestamp();
      Tuple2<Long, Long> prev = closing.get(at);
      closing.put(at, prev == null ? Tuple2.of(c.f1, 1L) : Tuple2.of(prev.f0 + c.f1, prev.f1 + 1));
      ctx.timerService().registerEventTimeTimer(at);
    }

    @Override
    public void onTimer(long time, OnTimerContext ctx, Collector<String> out) throws Exception {
      Tuple2<Long, Long> c = closing.get(time);
      if (c == null) return;
      closing.remove(time);
      Tuple2<Long, Long> prev = total.value();
      Tuple2<Long, Long> next = prev == null ? c : Tuple2.of(prev.f0 + c.f0, prev.f1 + c.f1);
      total.update(next);
      out.collect(ctx.getCurrentKey() + "|" + time + "|" + (next.f0 / next.f1));
    }
  }

  /**
   * q6 stage 2: per seller, the prices of their last Q6_LAST sold auctions in closing order
   * (time, then auction id); one output per closing instant.
   */
  static class Q6Average extends KeyedProcessFunction<Long, Tuple3<Long, Long, Long>, String> {
    transient ValueState<List<Long>> recent;
    transient MapState<Long, List<Tuple2<Long, Long>>> closing;

    @Override
    public void open(OpenContext ctx) {
      recent = getRuntimeContext().getState(new ValueStateDescriptor<>("recent", Types.LIST(Types.LONG)));
      closing = getRuntimeContext().getMapState(new MapStateDescriptor<>("closing", Types.LONG, Types.LIST(Types.TUPLE(Types.LONG, Types.LONG))));
    }

    @Override
    public void processElement(Tuple3<Long, Long, Long> c, Context ctx, Collector<String> out) throws Exception {
      long at = ctx.timestamp();
      List<Tuple2<Long, Long>> closed = closing.get(at);
      List<Tuple2<Long, Long>> next = closed == null ? new ArrayList<>() : new ArrayList<>(closed);
      next.add(Tuple2.of(c.f1, c.f2));
      closing.put(at, next);
      ctx.timerService().registerEventTimeTimer(at);
    }

    @Override
    public void onTimer(long time, OnTimerContext ctx, Collector<String> out) throws Exception {
      List<Tuple2<Long, Long>> closed = closing.get(time);
      if (closed == null) return;
      closing.remove(time);
      List<Tuple2<Long, Long>> sorted = new ArrayList<>(closed);
      sorted.sort((x, y) -> Long.compare(x.f0, y.f0));
      List<Long> prev = recent.value();
      List<Long> prices = prev == null ? new ArrayList<>() : new ArrayList<>(prev);
      for (Tuple2<Long, Long> t : sorted) prices.add(t.f1);
      if (prices.size() > Q6_LAST) prices = new ArrayList<>(prices.subList(prices.size() - Q6_LAST, prices.size()));
      recent.update(prices);
      long sum = 0;
      for (long p : prices) sum += p;
      out.collect(ctx.getCurrentKey() + "|" + time + "|" + (sum / prices.size()));
    }
  }

  /** q5 stage 1: bids per auction per sliding window. */
  static class CountBids implements AggregateFunction<Event.Bid, Long, Long> {
    public Long createAccumulator() { return 0L; }
    public Long add(Event.Bid b, Long n) { return n + 1; }
    public Long getResult(Long n) { return n; }
    public Long merge(Long a, Long b) { return a + b; }
  }

  static class WithWindowEnd extends ProcessWindowFunction<Long, Tuple3<Long, Long, Long>, Long, TimeWindow> {
    @Override
    public void process(Long auction, Context ctx, Iterable<Long> counts, Collector<Tuple3<Long, Long, Long>> out) {
      out.collect(Tuple3.of(auction, counts.iterator().next(), ctx.window().getEnd()));
    }
  }

  /** q5 stage 2: the auctions with the most bids of each sliding window (whose end falls in this slide). */
  public static class HotAcc {
    public long end, count;
    public List<Long> auctions = new ArrayList<>();

    public HotAcc() {}
  }

  static class HotAuctions implements AggregateFunction<Tuple3<Long, Long, Long>, HotAcc, HotAcc> {
    public HotAcc createAccumulator() { return new HotAcc(); }

    public HotAcc add(Tuple3<Long, Long, Long> c, HotAcc acc) {
      if (c.f1 > acc.count) {
        acc.count = c.f1;
        acc.end = c.f2;
        acc.auctions = new ArrayList<>();
        acc.auctions.add(c.f0);
      } else if (c.f1 == acc.count) {
        acc.auctions.add(c.f0);
      }
      return acc;
    }

    public HotAcc getResult(HotAcc acc) { return acc; }
    public HotAcc merge(HotAcc a, HotAcc b) { throw new UnsupportedOperationException("tumbling windows do not merge"); }
  }

  /** q7: the highest bids of each tumbling window. */
  public static class MaxBidsAcc {
    public long price = -1;
    public List<Event.Bid> bids = new ArrayList<>();

    public MaxBidsAcc() {}
  }

  static class HighestBids implements AggregateFunction<Event.Bid, MaxBidsAcc, MaxBidsAcc> {
    public MaxBidsAcc createAccumulator() { return new MaxBidsAcc(); }

    public MaxBidsAcc add(Event.Bid b, MaxBidsAcc acc) {
      if (b.price > acc.price) {
        acc.price = b.price;
        acc.bids = new ArrayList<>();
        acc.bids.add(b);
      } else if (b.price == acc.price) {
        acc.bids.add(b);
      }
      return acc;
    }

    public MaxBidsAcc getResult(MaxBidsAcc acc) { return acc; }
    public MaxBidsAcc merge(MaxBidsAcc a, MaxBidsAcc b) { throw new UnsupportedOperationException("tumbling windows do not merge"); }
  }
}
