package weir.bench.nexmark;

import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.api.connector.sink2.WriterInitContext;

/**
 * The last operator of every query: counts the output lines and sums their FNV-1a (mod 2^32),
 * as weir's tally sink does. The job runs on a MiniCluster in this JVM with parallelism 1, so
 * one static tally is the job's whole output.
 */
public class TallySink implements Sink<String> {
  static long count;
  static int sum;

  @Override
  public SinkWriter<String> createWriter(WriterInitContext context) {
    return new SinkWriter<>() {
      @Override
      public void write(String line, Context ctx) {
        count++;
        sum += (int) Generator.fnv1a(line);
      }

      @Override
      public void flush(boolean endOfInput) {}

      @Override
      public void close() {}
    };
  }
}
