package weir.bench;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;

import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The word count of benchmarks/kafka-throughput.ts on Kafka Streams: lines → words → a running
 * count per word (RocksDB store "counts") → the output topic, exactly-once v2, one stream thread,
 * a commit every second. Runs until the count sub-topology has read every word of the known
 * input and a commit followed, then prints one JSON line on stdout (logs go to stderr).
 *
 * <p>Usage: {@code java -cp target/kafka-streams-wordcount.jar:target/lib/* weir.bench.WordCount
 * --bootstrap 127.0.0.1:9092 --input T --output T --application-id ID --state-dir DIR --lines N --words W}
 *
 * <p>Timing: from the first input record processed to the first commit after the last word was
 * counted, so JVM start, the rebalance and restoration (startup) are not in the rate; startup is
 * reported separately.
 */
public final class WordCount {
  private static final Pattern WHITESPACE = Pattern.compile("\\s+");

  private final AtomicLong firstRecordNanos = new AtomicLong(0);
  private final AtomicLong lines = new AtomicLong(0);
  private final AtomicLong words = new AtomicLong(0);
  /** The thread's commit-total when the last expected word was read; -1 until then. */
  private final AtomicLong commitsAtLastWord = new AtomicLong(-1);
  private final AtomicLong lastWordNanos = new AtomicLong(0);
  private volatile KafkaStreams streams;

  public static void main(String[] argv) throws Exception {
    System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", System.getProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn"));
    System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
    // Expected here: the state dir is a temp dir, and the repartition topic is unknown until created.
    System.setProperty("org.slf4j.simpleLogger.log.org.apache.kafka.streams.processor.internals.StateDirectory", "error");
    System.setProperty("org.slf4j.simpleLogger.log.org.apache.kafka.clients.NetworkClient", "error");
    Map<String, String> args = parseArgs(argv);
    System.exit(new WordCount().run(args));
  }

  private static Map<String, String> parseArgs(String[] argv) {
    Map<String, String> args = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      if (!argv[i].startsWith("--")) throw new IllegalArgumentException("unexpected argument " + argv[i]);
      args.put(argv[i].substring(2), argv[i + 1]);
    }
    for (String required : List.of("bootstrap", "input", "output", "application-id", "state-dir", "lines", "words")) {
      if (!args.containsKey(required)) throw new IllegalArgumentException("missing --" + required);
    }
    return args;
  }

  /**
   * stream(input) → flatMapValues(split, lowercase) → groupBy(word) → count("counts") → toStream → to(output).
   * groupBy is written out as what it does, selectKey + repartition, so that a peek between the
   * repartition topic and the count can see every word the count sub-topology reads.
   */
  Topology topology(String input, String output, long expectedWords) {
    StreamsBuilder builder = new StreamsBuilder();
    builder.stream(input, Consumed.with(Serdes.String(), Serdes.String()))
        .peek((k, line) -> {
          if (lines.getAndIncrement() == 0) firstRecordNanos.set(System.nanoTime());
        })
        .flatMapValues(line -> {
          List<String> out = new ArrayList<>(8);
          for (String w : WHITESPACE.split(line)) if (!w.isEmpty()) out.add(w.toLowerCase(Locale.ROOT));
          return out;
        })
        .selectKey((k, word) -> word)
        .repartition(Repartitioned.<String, String>as("words").withKeySerde(Serdes.String()).withValueSerde(Serdes.String()))
        .peek((word, v) -> {
          // Runs on the stream thread: the next commit of this thread covers this word.
          if (words.incrementAndGet() == expectedWords) {
            lastWordNanos.set(System.nanoTime());
            commitsAtLastWord.set(commitTotal());
          }
        })
        .groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
        .count(Materialized.<String, Long, KeyValueStore<Bytes, byte[]>>as("counts").withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
        .toStream()
        .mapValues(n -> Long.toString(n))
        .to(output, Produced.with(Serdes.String(), Serdes.String()));
    return builder.build();
  }

  /** The stream thread's commit-total metric (commits that committed at least one task). */
  private long commitTotal() {
    KafkaStreams s = streams;
    if (s == null) return 0;
    long total = 0;
    for (Map.Entry<MetricName, ? extends Metric> e : s.metrics().entrySet()) {
      MetricName n = e.getKey();
      if (n.name().equals("commit-total") && n.group().equals("stream-thread-metrics")) {
        total += ((Number) e.getValue().metricValue()).longValue();
      }
    }
    return total;
  }

  int run(Map<String, String> args) throws InterruptedException {
    long startNanos = System.nanoTime();
    long expectedLines = Long.parseLong(args.get("lines"));
    long expectedWords = Long.parseLong(args.get("words"));
    long timeoutMs = Long.parseLong(args.getOrDefault("timeout-s", "1800")) * 1000;

    Properties props = new Properties();
    props.put(StreamsConfig.APPLICATION_ID_CONFIG, args.get("application-id"));
    props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("bootstrap"));
    props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 1000);
    props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
    props.put(StreamsConfig.STATE_DIR_CONFIG, args.get("state-dir"));
    // 0: every count update reaches the output, as in weir and the raw loop; Kafka Streams' default is 10 MiB.
    props.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, Long.parseLong(args.getOrDefault("cache-bytes", "0")));
    props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
    // Kafka Streams' consumer does not leave its group on close (so a rolling restart does not
    // rebalance); here it should, so the benchmark can delete the group right away.
    props.put(StreamsConfig.consumerPrefix("internal.leave.group.on.close"), true);
    // One broker: internal topics can only have one replica.
    props.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 1);

    AtomicLong runningNanos = new AtomicLong(0);
    KafkaStreams s = new KafkaStreams(topology(args.get("input"), args.get("output"), expectedWords), props);
    streams = s;
    s.setStateListener((now, before) -> {
      if (now == KafkaStreams.State.RUNNING) runningNanos.compareAndSet(0, System.nanoTime());
    });
    s.setUncaughtExceptionHandler(e -> {
      System.err.println("kafka-streams-wordcount: stream thread failed: " + e);
      return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
    });
    s.start();

    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
    long endNanos = 0;
    while (System.nanoTime() < deadline) {
      KafkaStreams.State state = s.state();
      if (state == KafkaStreams.State.ERROR || state == KafkaStreams.State.NOT_RUNNING || state == KafkaStreams.State.PENDING_ERROR) break;
      long at = commitsAtLastWord.get();
      if (at >= 0 && commitTotal() > at) {
        endNanos = System.nanoTime();
        break;
      }
      Thread.sleep(5);
    }
    long commits = commitTotal();
    s.close(Duration.ofSeconds(60));
    s.cleanUp();
    if (endNanos == 0) {
      System.err.printf("kafka-streams-wordcount: did not finish: state %s, %d of %d lines, %d of %d words read%n", s.state(), lines.get(), expectedLines, words.get(), expectedWords);
      return 1;
    }
    double seconds = (endNanos - firstRecordNanos.get()) / 1e9;
    System.out.printf(Locale.ROOT,
        "{\"records\":%d,\"words\":%d,\"seconds\":%.3f,\"rate\":%.1f,\"commits\":%d,\"startup_s\":%.3f,\"first_record_after_start_s\":%.3f,\"last_word_to_commit_s\":%.3f}%n",
        lines.get(), words.get(), seconds, lines.get() / seconds, commits,
        runningNanos.get() == 0 ? -1.0 : (runningNanos.get() - startNanos) / 1e9,
        (firstRecordNanos.get() - startNanos) / 1e9,
        (endNanos - lastWordNanos.get()) / 1e9);
    return lines.get() == expectedLines ? 0 : 1;
  }
}
