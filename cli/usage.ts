/** Usage texts of the `weir` command and the `help` subcommand. */

export const MAIN_USAGE = `Usage: weir <command> [options]

Commands:
  run <pipeline.ts>   Run a pipeline in this process (embedded pipe or --pipe kafka://…)
  monitor             Watch pipeline timeliness on the control bus (dashboard, API, metrics)
  help [command]      Show this help, or the help of one command

Options:
  -h, --help          Show this help

Run 'weir help run' or 'weir help monitor' for the options of a command.
`

export const RUN_USAGE = `Usage: weir run <pipeline.ts> [options]

Runs the pipeline exported by <pipeline.ts> in this process. The file's default export
(or an export named 'pipeline') is a Pipeline, or a function (params) => Pipeline that
receives the --param values. A bounded pipeline runs until every stage finished; an
unbounded one until Ctrl-C or SIGTERM, which takes a final checkpoint (press Ctrl-C
again to exit at once). Running again on the same data dir resumes where it stopped.

Options:
  --data-dir DIR       Where the pipe and the state live (default ./.weir/<pipeline>)
  --epoch-ms N         Checkpoint interval in milliseconds (default 1000)
  --param key=value    A parameter for a pipeline function (repeatable)
  --pipe URL           embedded (default) or kafka://host:port[,host:port][?tls=true
                       &sasl=plain|scram-sha-256|scram-sha-512&user=NAME]; state stays
                       in --data-dir, topics and offsets live in Kafka
  --bus URL            nats://host:port: coordinate over NATS (observable there with
                       'nats sub "weir.<cluster>.<pipeline>.>"') instead of in-process
  --cluster NAME       Subject namespace on the bus (default embedded)
  --pipe-config FILE   JSON with Kafka client options (ssl: {caFile, certFile, keyFile},
                       sasl, timeouts, retries; see docs/kafka.md)
  --monitor            Serve the monitor's dashboard, API and /metrics from this process
                       (docs/monitoring.md), watching this run's bus
  --monitor-port N     Its port (default 9464; 0 = any free port)
  --monitor-host H     Its address (default 127.0.0.1; another needs WEIR_MONITOR_TOKEN)
  --slo OUTPUT=DUR     A timeliness SLO for an output stage, e.g. count=2s (repeatable)
  --metrics-port N     Serve the worker's Prometheus metrics on GET /metrics (0 = any port)
  --metrics-host H     Their address (default 127.0.0.1)
  -q, --quiet          No progress display on a terminal
  -h, --help           Show this help

Environment:
  WEIR_LOG_LEVEL       Runtime log level on stderr (default error)
  WEIR_PIPE            Default for --pipe
  WEIR_BUS             Default for --bus
  WEIR_KAFKA_PASSWORD  The SASL password for a kafka:// pipe with sasl=…
  WEIR_MONITOR_TOKEN   Bearer token the --monitor endpoints require
  WEIR_CRASH_AT        Crash injection for recovery tests, <point>:<hit>

Exit codes: 0 finished or stopped, 1 the run failed, 2 refused (bad input, nothing touched),
130 interrupted twice.
`

export const MONITOR_USAGE = `Usage: weir monitor --bus nats://host:port [options]

The independent timeliness monitor. It reads only the control bus (the progress and
health events workers publish) and shows, per pipeline output, how far behind real time
it is and which stage holds it back; it keeps working when Kafka, the coordinator or
workers fail. It has no store: restarted, it shows the full picture again within a few
progress intervals. See docs/monitoring.md.

Options:
  --bus URL            nats://host:port of the control bus (or WEIR_BUS)
  --cluster NAME       Watch one cluster (default *: every cluster)
  --port N             HTTP port (default 9464; 0 = any free port)
  --host H             Address to bind (default 127.0.0.1; any other needs a token)
  --config FILE        JSON: { "slos": [{ "pipeline", "output", "timelinessMs",
                       "cluster"? }], "port"?, "host"?, "cluster"? }
  --slo [CLUSTER/]PIPELINE/OUTPUT=DURATION
                       A timeliness SLO, e.g. wordcount/count=2s (250ms, 2s, 1m;
                       repeatable, added to the config file's)
  --token-file FILE    Require 'Authorization: Bearer <token>' on every endpoint
  -h, --help           Show this help

Endpoints: / (dashboard), /api/status, /api/actors, /api/history?pipeline=&output=,
/metrics (Prometheus). SLO alerts go to weir.<cluster>.<pipeline>.alerts.

Environment:
  WEIR_MONITOR_TOKEN   The token, when no --token-file is given
  WEIR_LOG_LEVEL       Log level on stderr (default info)

Exit codes: 0 stopped by a signal, 1 failed (bus unreachable at start, port taken),
2 refused (bad input, nothing started).
`

const COMMANDS: Record<string, string> = { run: RUN_USAGE, monitor: MONITOR_USAGE, help: MAIN_USAGE }

/** `weir help [command]`. */
export function helpCommand(argv: string[]): number {
  const topic = argv[0]
  if (topic === undefined) {
    process.stdout.write(MAIN_USAGE)
    return 0
  }
  const text = COMMANDS[topic]
  if (text === undefined) {
    process.stderr.write(`weir: error: no help for unknown command '${topic}'\n\n${MAIN_USAGE}`)
    return 2
  }
  process.stdout.write(text)
  return 0
}
