/** Usage texts of the `weir` command and the `help` subcommand. */

export const MAIN_USAGE = `Usage: weir <command> [options]

Commands:
  run <pipeline.ts>   Run a pipeline in this process (embedded pipe or --pipe kafka://…)
  help [command]      Show this help, or the help of one command

Options:
  -h, --help          Show this help

Run 'weir help run' for the options of 'run'.
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
  -q, --quiet          No progress display on a terminal
  -h, --help           Show this help

Environment:
  WEIR_LOG_LEVEL       Runtime log level on stderr (default error)
  WEIR_PIPE            Default for --pipe
  WEIR_BUS             Default for --bus
  WEIR_KAFKA_PASSWORD  The SASL password for a kafka:// pipe with sasl=…
  WEIR_CRASH_AT        Crash injection for recovery tests, <point>:<hit>

Exit codes: 0 finished or stopped, 1 the run failed, 2 refused (bad input, nothing touched),
130 interrupted twice.
`

const COMMANDS: Record<string, string> = { run: RUN_USAGE, help: MAIN_USAGE }

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
