/** Usage texts of the `weir` command and the `help` subcommand. */

/** The NATS credential and TLS options of every command that talks to the bus (cli/nats-options.ts). */
const NATS_SECURITY = `NATS credentials and TLS (docs/operations.md, "Security"; one kind of credentials):
  in the URL           nats://user:password@host:port or nats://token@host:port
                       (tls://host:port requires TLS)
  --nats-token-file F  A token, read from F          (or WEIR_NATS_TOKEN=<token>)
  --nats-user NAME     A user, with ...              (or WEIR_NATS_USER=<name>)
  --nats-password-file F  its password, read from F  (or WEIR_NATS_PASSWORD=<password>)
  --nats-creds F       A credentials file (user JWT and seed) (or WEIR_NATS_CREDS=<file>)
  --nats-nkey F        A file holding an nkey user seed (SU…) (or WEIR_NATS_NKEY=<file>)
  --nats-ca F          CA certificates to trust; implies TLS  (or WEIR_NATS_CA=<file>)
  --nats-cert F        Client certificate, mutual TLS; needs --nats-key (or WEIR_NATS_CERT)
  --nats-key F         Its private key               (or WEIR_NATS_KEY=<file>)
  An option wins over its variable. Credentials the server refuses exit 1 with
  WEIR_BUS_UNAUTHORIZED naming the server; secrets never appear in output or logs.
`

export const MAIN_USAGE = `Usage: weir <command> [options]

Commands:
  run <pipeline.ts>   Run a pipeline in this process (embedded pipe or --pipe kafka://…)
  coordinator         Coordinate a cluster's workers over NATS (membership, placement, epochs)
  worker <pipeline.ts>  Run the actors a coordinator assigns, on Kafka and NATS
  monitor             Watch pipeline timeliness on the control bus (dashboard, API, metrics)
  status              List the workers and actors heard on the control bus, then exit
  actor clear <pipeline> <actor>
                      Lift an actor's quarantine (it failed for good on two workers)
  jobs <pipeline.ts>  List the runs of the pipeline's FileSetSource stages and their state
  peek <pipeline> <view> [key]
                      Print a view's committed value for a key (or a page of keys)
  tail <pipeline.ts> <stage>
                      Show the committed records flowing on an edge, decoded (--follow for new ones)
  savepoint create|inspect|diff|restore
                      Take a portable savepoint of a stopped pipeline, read one, compare
                      one with a pipeline, or restore one onto a pipe (docs/savepoints.md)
  config check|print  Check the configuration file, or print what each command would use
  help [command]      Show this help, or the help of one command

Options:
  -h, --help          Show this help
  --config FILE       (every command) The configuration file (or WEIR_CONFIG; default
                      ./weir.config.json, .yaml or .yml when present; docs/configuration.md)

Every option also comes from WEIR_<OPTION> (--metrics-port: WEIR_METRICS_PORT) or the
config file's section for the command; the command line wins, then the environment.

Run 'weir help <command>' (run, coordinator, worker, monitor, status, actor, jobs, peek, tail, savepoint, config) for the options of a command.
`

export const CONFIG_USAGE = `Usage: weir config check|print [--config FILE] [--command NAME]

The configuration file every command reads (docs/configuration.md): shared keys (pipe,
pipeConfig, bus, cluster, param, nats: {…}) and a section per command whose keys are its
long options in camelCase (worker: { metricsPort: 9464 }). The file is --config FILE, else
WEIR_CONFIG, else ./weir.config.json (.yaml, .yml) when present. For every option the
command line wins, then WEIR_<OPTION>, then the file, then the command's default. Secrets
(tokens, passwords) are never read from the file: use the …File options or the variables.

Subcommands:
  check                Check the file against every command's options; every error
                       names its field (exit 2), or print that it is valid (exit 0)
  print                Print the configuration each command would use, as JSON: the
                       file, WEIR_* variables and defaults; secrets shown as "***"
                       (a …File option shows its path only)

Options:
  --config FILE        The file (else WEIR_CONFIG, else ./weir.config.{json,yaml,yml})
  --command NAME       print: only this command (run, worker, coordinator, monitor, …)
  -h, --help           Show this help

Exit codes: 0 valid, 2 refused (every problem printed).
`

export const RUN_USAGE = `Usage: weir run <pipeline.ts> [options]

Runs the pipeline exported by <pipeline.ts> in this process. The file's default export
(or an export named 'pipeline') is a Pipeline, or a function (params) => Pipeline that
receives the --param values (a param it does not read while building the pipeline is
refused, naming the ones it reads). A bounded pipeline runs until every stage finished; an
unbounded one until Ctrl-C or SIGTERM, which takes a final checkpoint (press Ctrl-C
again to exit at once). Running again on the same data dir resumes where it stopped.

Options:
  --data-dir DIR       Where the pipe and the state live (default ./.weir/<pipeline>)
  --epoch-ms N         Checkpoint interval in milliseconds (default 500)
  --param key=value    A parameter for a pipeline function (repeatable)
  --from-savepoint DIR Start from a savepoint (weir savepoint create) on a data dir and pipe
                       without this pipeline's state; a rerun on the same data dir resumes
  --allow-dropped-state
                       With --from-savepoint: restore although the pipeline no longer
                       declares some of its state, which is dropped (weir savepoint diff)
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
  --metrics-port N     Serve the worker's Prometheus metrics on GET /metrics, and its
                       GET /livez and /readyz probes (0 = any port)
  --metrics-host H     Their address (default 127.0.0.1; another needs a token)
  --metrics-token-file FILE
                       Require 'Authorization: Bearer <token>' on /metrics (never on
                       the probes)
  --ready-max-lag N    /readyz is 503 while an actor is more than N records behind its
                       input's end (default 1000)
  --views-port N       Serve the pipeline's views on GET /views/<pipeline>/… (docs/views.md;
                       default: a free port, named in <data-dir>/views.json for weir peek)
  --views-host H       Their address (default 127.0.0.1; another needs a token)
  --views-token-file FILE
                       Require 'Authorization: Bearer <token>' on /views (or WEIR_VIEWS_TOKEN)
  --savepoint-dir DIR  Where a savepoint of the running pipeline (weir savepoint create
                       --bus, with --bus here) writes its state (default <data-dir>/savepoints)
  -q, --quiet          No progress display on a terminal
  -h, --help           Show this help

${NATS_SECURITY.replace('NATS credentials and TLS', 'NATS credentials and TLS, with --bus')}
Environment:
  WEIR_LOG_LEVEL       Runtime log level on stderr (default error)
  WEIR_PIPE            Default for --pipe
  WEIR_BUS             Default for --bus
  WEIR_KAFKA_PASSWORD  The SASL password for a kafka:// pipe with sasl=…
  WEIR_MONITOR_TOKEN   Bearer token the --monitor endpoints require
  WEIR_METRICS_TOKEN   The --metrics-port token, when no --metrics-token-file is given
  WEIR_VIEWS_TOKEN     The views' token, when no --views-token-file is given
  WEIR_CRASH_AT        Crash injection for recovery tests, <point>:<hit>[@<polls>|@<stage>:<records>]

An actor that fails for good (its stage's onError policy says fail-stop, or open or
onCheckpoint throws) ends the run after the other actors took a final checkpoint: exit 1
with the error naming the actor; running again resumes every actor from its checkpoint.

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
  --config FILE        The configuration file (docs/configuration.md; SLOs under
                       monitor.slo), or the monitor's older JSON: { "slos": [{ "pipeline",
                       "output", "timelinessMs", "cluster"? }], "port"?, "host"?, "cluster"? }
  --slo [CLUSTER/]PIPELINE/OUTPUT=DURATION
                       A timeliness SLO, e.g. wordcount/count=2s (250ms, 2s, 1m;
                       repeatable; added to an older file's, replaces monitor.slo)
  --token-file FILE    Require 'Authorization: Bearer <token>' on every endpoint but
                       the /livez and /readyz probes
  -h, --help           Show this help

${NATS_SECURITY}
Endpoints: / (dashboard), /api/status, /api/actors, /api/history?pipeline=&output=,
/metrics (Prometheus), /livez and /readyz (probes: ready while the bus is connected). SLO alerts, and an alert when an actor fails for good or runs
again, go to weir.<cluster>.<pipeline>.alerts.

Environment:
  WEIR_MONITOR_TOKEN   The token, when no --token-file is given
  WEIR_LOG_LEVEL       Log level on stderr (default info)

Exit codes: 0 stopped by a signal, 1 failed (bus unreachable at start, port taken),
2 refused (bad input, nothing started).
`

export const STATUS_USAGE = `Usage: weir status --bus nats://host:port [options]

Listens to the progress channel for --wait-ms (the health and progress messages every
worker publishes about once a second, as 'weir monitor' reads them), then prints per
pipeline its workers (id, host, pid, ok/missing, RSS, event-loop delay p99, actors) and
each worker's actors: stage, partition, lifecycle, lag (unprocessed input records), last
committed epoch, watermark lag (now - watermark), records in/out, age of the last
commit. Actors whose worker sent no health message are listed under '(no worker heard)'.
Reads only the bus: it works while the pipe or the coordinator are down.

Options:
  --bus URL            nats://host:port of the control bus (or WEIR_BUS)
  --cluster NAME       One cluster (default *: every cluster)
  --wait-ms N          How long to listen, ms (default 2500: a bit more than two
                       progress intervals; 1 to 600000)
  --json               Print one JSON document instead of tables (below)
  -h, --help           Show this help

${NATS_SECURITY}
JSON (version 1; fields are only added within a version; ages are ms before "at"):
  { "v": 1, "bus", "cluster", "waitMs", "at": ms since the epoch,
    "messages": { "received", "malformed", "stale" },
    "pipelines": [{ "cluster", "pipeline", "fingerprint": string|null,
      "workers": [{ "worker", "hostname", "pid", "state": "ok"|"missing", "rssBytes",
        "heapUsedBytes", "eventLoopP99Ms", "intervalMs", "lastHeardAgoMs",
        "actors": [actor ids the worker runs] }],
      "actors": [{ "actor", "stage", "partition", "worker", "workerHeard": bool,
        "state": "ok"|"missing", "lifecycle", "lag", "lastEpoch", "watermark": ms|null,
        "watermarkLagMs": ms|null, "idle", "ended", "recordsIn", "recordsOut", "errors",
        "deadLettered", "lastCommitAt": ms|null, "lastCommitAgoMs": ms|null,
        "lastHeardAgoMs", "failure": null | { "code", "message", "quarantined": bool,
        "failedOn": [workers] } }] }] }
  Actors are ordered by stage (sources first), then partition. docs/monitoring.md
  describes the messages the figures come from.

Environment:
  WEIR_BUS             Default for --bus
  WEIR_LOG_LEVEL       Log level on stderr (default warn)

Exit codes: 0 printed, 1 failed (bus unreachable), 2 refused (bad option, nothing
connected), 3 no weir worker heard within --wait-ms (nothing printed on stdout).
`

export const ACTOR_USAGE = `Usage: weir actor clear <pipeline> <actor> --bus nats://host:port [options]

An actor that fails for good (its processor throws past its stage's onError policy, or in
open or onCheckpoint) stops alone; the coordinator moves it to another worker, and after
it failed on two workers (or on every worker there is) quarantines it: it runs nowhere,
and 'weir status' and the monitor show it failed. Once the cause is fixed (new code, a
bad input skipped), 'weir actor clear' asks the leading coordinator to forget its failures
and place it again; it resumes from its last checkpoint. See docs/operations.md.

Options:
  --bus URL            nats://host:port of the control bus (or WEIR_BUS)
  --cluster NAME       The cluster (default 'default')
  --wait-ms N          How long to wait for the coordinator's answer (default 10000)
  -h, --help           Show this help

${NATS_SECURITY}
Exit codes: 0 cleared (or it had no failure to clear), 1 no coordinator answered (or the
bus failed), 2 refused (bad option, no such actor).
`

export const SAVEPOINT_USAGE = `Usage: weir savepoint <subcommand> [options]

Savepoints are portable snapshots of a pipeline's state (docs/savepoints.md): every
stage's keyed state, actor state and timers, and its positions in topics from outside the
pipeline, in a neutral format any pipe restores from. Use one to change a stage's
parallelism, to change the topology, to move a pipeline to another pipe or cluster, or to
keep a copy at another site.

Subcommands:
  create <pipeline.ts> --target DIR
                       Of a stopped pipeline (Ctrl-C a weir run; stop a cluster's workers):
                       runs it once more with its sources held until nothing is in flight
                       between stages, then writes the savepoint to DIR
  create <pipeline.ts> --bus nats://… [--cluster NAME] --target DIR
                       Of a running one: its inputs are held until nothing is in flight,
                       the state is pinned, processing resumes, and every worker writes its
                       actors' state under its --savepoint-dir (DIR is that directory, as
                       this command sees it, plus the savepoint's name)
  inspect <savepoint> [--json] [--verify]
                       Print the manifest; --verify reads every file and checks its size,
                       entry count and SHA-256 against it
  diff <savepoint> <pipeline.ts>
                       What a restore into the pipeline would map (re-keyed, migrated), drop,
                       start empty and refuse. Exit 0 restorable, 1 only with
                       --allow-dropped-state, 2 refused
  restore <savepoint> <pipeline.ts> [--allow-dropped-state]
                       Write the savepoint into the pipe before the pipeline first starts
                       (for a cluster, before its workers start; weir run --from-savepoint
                       does this itself)

Options of create --bus:
  --bus URL            The pipeline's NATS control bus (with the --nats-* options)
  --cluster NAME       Its cluster (default default)
  --timeout-ms N       Give up after this long (default 300000)

Options of create and restore:
  --data-dir DIR       The embedded run's data dir (default ./.weir/<pipeline>); with
                       --pipe kafka://…, where actors' local state goes (default a temp dir)
  --pipe URL           embedded (default) or kafka://host:port[,…]
  --pipe-config FILE   JSON with Kafka client options (as weir run takes it)
  --param key=value    A parameter for a pipeline function (repeatable)
  -h, --help           Show this help

Configuration: --pipe, --pipe-config, --data-dir and --param of create, restore and diff
(--param only) also come from WEIR_<OPTION> or the config file's savepoint section
(docs/configuration.md); --target and --allow-dropped-state only from the command line.

Environment:
  WEIR_PIPE            Default for --pipe

Exit codes: 0 done, 1 failed (or diff: restorable only with --allow-dropped-state), 2 refused.
`

export const JOBS_USAGE = `Usage: weir jobs <pipeline.ts> [options]

Lists the runs of every FileSetSource stage of the pipeline (docs/sources/file-set.md)
with their state, objects read of those pinned, records emitted and lines dead-lettered,
read from the committed state (what a restart would recover): it works while the
pipeline runs, after it finished, and after it was killed. Nothing is written.

States: listed (objects pinned, nothing read yet), running (reading; also a job whose
process was killed: 'weir status' tells whether one runs), finished (a rerun of its run id
emits nothing), failed (it refused an object that changed or vanished under its run id:
the error is printed under it), abandoned (a newer run id took over, onUnfinished: 'abandon').

Options:
  --data-dir DIR       The run's data dir (default ./.weir/<pipeline>)
  --pipe URL           embedded (default) or kafka://host:port[,…]: read the committed
                       state from Kafka (read_committed) instead of the data dir
  --pipe-config FILE   JSON with Kafka client options (as weir run takes it)
  --param key=value    A parameter for a pipeline function (repeatable), as given to weir run
  --json               One JSON document (v, pipeline, source, stages[].runs[])
  -h, --help           Show this help

Environment:
  WEIR_PIPE            Default for --pipe

Exit codes: 0 printed, 1 the pipe could not be read, 2 refused (bad option, no data dir,
no FileSetSource stage).
`

export const TAIL_USAGE = `Usage: weir tail <pipeline.ts> <stage> [options]

Shows the committed records flowing on an edge of the pipeline: <stage>'s output topic, a
side output (<stage>.<side>), or with --dead-letter the stage's dead-letter topic (each
record with its error, where it was read, and the original record). Values are decoded
with the codec of the stage that wrote them; watermark marks are left out. Reads only what
the pipe committed (Kafka: read_committed), and writes nothing: the embedded pipe is
opened read-only, so it works while a 'weir run' holds the data dir. See docs/tail.md.

Options:
  --from WHERE         earliest (default), now (only records committed from now on; the
                       default with --follow), ms since the epoch, or an ISO 8601 time
                       (2025-01-31T12:00:00Z): each partition from its first record at or
                       after that time
  --key K              Only records with key K
  --limit N            Stop after N records (default 100 without --follow; none with it)
  -f, --follow         Keep showing records as they are committed, until Ctrl-C
  --dead-letter        The stage's dead-letter topic instead of its output
  --partition N        Only partition N (repeatable)
  --json               One JSON object per line: stage, topic, partition, offset, key,
                       timestamp (ms), time (ISO), headers, value (or decodeError and raw,
                       the bytes in base64, when the codec cannot decode it)
  --data-dir DIR       The run's data dir (default ./.weir/<pipeline>)
  --pipe URL           embedded (default) or kafka://host:port[,…]: read the topics in Kafka
  --pipe-config FILE   JSON with Kafka client options (as weir run takes it)
  --param key=value    A parameter for a pipeline function (repeatable), as given to weir run
  -h, --help           Show this help

Lines: <partition>@<offset>  <time>  key=<key>  <value as JSON>  <header>=<value>…
Header values that are not UTF-8 show as base64:<bytes>. Up to the end of the topic as it
was at the start, the partitions are merged by timestamp; with --follow, newer records
come as they are committed.

Environment:
  WEIR_PIPE            Default for --pipe

Exit codes: 0 printed (also when Ctrl-C ends --follow), 1 the pipe could not be read,
2 refused (bad option, unknown stage, no data dir, no such topic), 130 interrupted.
`

export const COORDINATOR_USAGE = `Usage: weir coordinator --bus nats://host:port [options]

Coordinates the pipelines of a cluster: membership (worker heartbeats), placement of
actors on workers (balanced, sticky), assignment generations and checkpoint epochs. It
never loads a pipeline file: workers send their pipeline's shape. Processing never waits
on it; with no coordinator, workers keep processing what they hold. See docs/operations.md.

Options:
  --bus URL                 The NATS control bus (or WEIR_BUS)
  --cluster NAME            Subject namespace (default 'default')
  --epoch-ms N              Checkpoint interval (default 500)
  --worker-timeout-ms N     A worker silent this long is declared dead (default 10000)
  --worker-probe-ms N       Probe each worker's liveness this often over the bus; one
                            whose bus connection is gone (nobody answers twice in a row)
                            is declared dead at once, not after the timeout. 0: off
                            (default 250)
  --settle-ms N             Listen this long for running workers before the first
                            placement of a pipeline (default 3000)
  --release-timeout-ms N    A planned move (a worker leaves or joins) waits this long
                            for the old owner to report the actor released after its
                            final checkpoint, then assigns it anyway (default 10000)
  --lease-ttl-ms N          Leadership lease in NATS KV: several coordinators may run,
                            one leads; a standby takes over this long after the leader
                            died (at once when it stops cleanly) (default 5000)
  --name NAME               This coordinator's name (default <host>-<pid>)
  --health-port N           Serve GET /livez and /readyz (no token; ready = connected to
                            the bus and leading, or standing by behind a live leader)
  --health-host H           Their address (default 127.0.0.1; 0.0.0.0 for a kubelet)
  -h, --help                Show this help

${NATS_SECURITY}
The bus, the leader lease and the cluster metadata (NATS KV) use the same credentials.
`

export const WORKER_USAGE = `Usage: weir worker <pipeline.ts> --pipe kafka://host:port --bus nats://host:port [options]

Runs the actors the coordinator assigns to this worker. Every worker of a pipeline runs
the same pipeline file (a different topology is refused by the coordinator). SIGTERM hands
the actors off to other workers (final checkpoint each) before exiting; a bounded
pipeline's workers exit 0 when every stage finished.

Options:
  --pipe URL                kafka://host:port (or WEIR_PIPE): workers share their pipe
  --pipe-config FILE        JSON with Kafka client options (docs/kafka.md)
  --bus URL                 The NATS control bus (or WEIR_BUS)
  --cluster NAME            Subject namespace (default 'default')
  --state-dir DIR           Local RocksDB state (default ./.weir/<pipeline>-worker)
  --id ID                   Worker id, unique in the cluster (default <host>-<random>)
  --param key=value         A parameter for a pipeline function (repeatable)
  --metrics-port N          Serve Prometheus metrics on GET /metrics and the probes
                            GET /livez and /readyz (0 = any port; docs/operations.md)
  --metrics-host H          Their address (default 127.0.0.1; another needs a token)
  --metrics-token-file FILE Require 'Authorization: Bearer <token>' on /metrics (or
                            WEIR_METRICS_TOKEN); the probes need none
  --ready-max-lag N         /readyz is 200 only when every assigned actor is restored
                            and at most N records behind its input's end (default 1000)
  --views-port N            Serve the pipeline's views on GET /views/<pipeline>/…: any
                            worker answers any key (docs/views.md; default a free port)
  --views-host H            Their address (default 127.0.0.1; another needs a token)
  --views-token-file FILE   Require 'Authorization: Bearer <token>' on /views (or
                            WEIR_VIEWS_TOKEN)
  --epoch-ms N              The coordinator's epoch interval, for the local checkpoint
                            fallback (default 500)
  --heartbeat-ms N          Heartbeat interval (default 1000)
  --savepoint-dir DIR       Take part in savepoints of the running pipeline (weir savepoint
                            create --bus): its actors' state is written under DIR, which
                            every worker and the command share; without it, refused
  -h, --help                Show this help

${NATS_SECURITY}`

export const PEEK_USAGE = `Usage: weir peek <pipeline> <view> [key] [options]

Prints what a view serves (docs/views.md) as of its partition's last committed checkpoint,
with the epoch and input positions it reflects: the value of one key, or a page of keys in
key order. It asks the views server of a running 'weir run' (named in its data dir's
views.json) or of any 'weir worker' (--url), or any worker on the NATS bus (--bus); either
routes the key to the worker holding its partition.

Options:
  --prefix P           A page of the keys starting with P (instead of a key)
  --gte A, --lt B      A page of the keys in [A, B)
  --after K            The page after key K (the previous page's last key)
  --limit N            Keys per page, 1..1000 (default 100)
  --at-least X         Wait until the state includes X: epoch:N, or <input>:<partition>:<offset>
                       (comma-separated), e.g. the atLeast of an HTTP ingest's answer
  --stale              While the key's actor moves, a standby replica may answer
  --timeout-ms N       How long to wait for an answer (default 15000)
  --data-dir DIR       The run's data dir (default ./.weir/<pipeline>)
  --url URL            http://host:port of a views server (a worker's --views-port)
  --token-file FILE    Its bearer token (or WEIR_VIEWS_TOKEN)
  --bus URL            nats://host:port: ask any worker on the bus instead (or WEIR_BUS;
                       --limit at most 50, no --gte/--lt)
  --cluster NAME       The cluster's subject namespace, with --bus (default 'default')
  --json               Print the server's JSON answer
  -h, --help           Show this help

Exit codes: 0 printed, 1 the key is absent or no answer came, 2 refused (bad option, no run found).

${NATS_SECURITY.replace('NATS credentials and TLS', 'NATS credentials and TLS, with --bus')}`

const COMMANDS: Record<string, string> = { savepoint: SAVEPOINT_USAGE, run: RUN_USAGE, coordinator: COORDINATOR_USAGE, worker: WORKER_USAGE, monitor: MONITOR_USAGE, status: STATUS_USAGE, actor: ACTOR_USAGE, jobs: JOBS_USAGE, peek: PEEK_USAGE, tail: TAIL_USAGE, config: CONFIG_USAGE, help: MAIN_USAGE }

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
