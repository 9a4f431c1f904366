#!/usr/bin/env bash
# Real services on 127.0.0.1 for weir's integration tests: Kafka (one KRaft node), NATS with
# JetStream, PostgreSQL, Redis, MariaDB and an S3-compatible object store (versitygw over a
# directory), and a second Kafka and NATS (kafka2, nats2: "site B", on other ports) for the
# tests that move a pipeline from one cluster to another. Installs what is missing (Debian
# packages, the Kafka jars from Maven Central, versitygw built with Go), keeps every
# service's data, logs and pid file under one directory, and `down` removes it. Running `up` twice is safe: a service whose port already
# answers is left alone.
#
#   scripts/services.sh up [SERVICE...]       start all eight, or the ones named
#   scripts/services.sh down                  stop them (SIGTERM, then SIGKILL) and remove the data dir
#   scripts/services.sh status [SERVICE...]   one line each; exits 1 when one does not answer
#   scripts/services.sh check [SERVICE...]    whether `up` could start each here (starts and installs
#                                             nothing): "<service> ready [| <note>]", "<service> install <why> |
#                                             <what up installs>" (root with apt-get), or "<service>
#                                             missing <why> | <what to do>"; exits 1 when one is missing
#   scripts/services.sh stop SERVICE...       stop the ones named, keeping their data (a test's outage);
#                                             `up` starts them again on the same data
#   scripts/services.sh start-kafka | stop-kafka | restart-kafka
#
# SERVICE is kafka, nats, postgres, redis, mariadb, s3, kafka2 or nats2. Environment:
#   WEIR_SERVICES_DIR     the data dir (default <repo>/.services; when PostgreSQL's and
#                         MariaDB's users cannot reach it, /var/tmp/weir-services-<hash>)
#   WEIR_KAFKA_CACHE_DIR  where the Kafka jars are kept between runs (~/.cache/weir/kafka-3.9.1)
#   WEIR_VERSITYGW_CACHE_DIR  where the versitygw binary is kept (~/.cache/weir/versitygw-1.7.0)
#   the URLs of test/support/services.ts (WEIR_KAFKA_BROKERS, WEIR_NATS_URL,
#   WEIR_POSTGRES_URL, WEIR_REDIS_URL, WEIR_MARIADB_URL, WEIR_S3_URL, WEIR_KAFKA2_BROKERS,
#   WEIR_NATS2_URL): each service listens on its URL's port; WEIR_KAFKA_CONTROLLER_PORT
#   (9093), WEIR_NATS_MONITOR_PORT (8222), WEIR_KAFKA2_CONTROLLER_PORT (19093) and
#   WEIR_NATS2_MONITOR_PORT (18222) set the others. S3's root credentials are WEIR_S3_ACCESS_KEY (weir) and
#   WEIR_S3_SECRET_KEY (weirweirweir); its region is us-east-1, its addressing path-style.
# shellcheck disable=SC2016  # single-quoted scripts for `bash -c`, literal backquotes
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ALL_SERVICES=(kafka nats postgres redis mariadb s3 kafka2 nats2)
KAFKA_VERSION=3.9.1
KAFKA_CACHE=${WEIR_KAFKA_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/weir/kafka-$KAFKA_VERSION}
# The S3 server is versitygw (Versity S3 Gateway, Apache-2.0): a real S3 API over a plain
# directory, built from its Go module. Chosen over SeaweedFS (the other permissively licensed
# S3 server the Go module proxy serves; MinIO is AGPL, gofakes3 is a fake) because it builds
# with `go install` from a clean module cache in about 75 s on 2 cores (SeaweedFS: its go.mod
# has replace directives, so no `go install`, and its build took 7 min and 2 GB of modules),
# is one 51 MB binary (SeaweedFS: 233 MB), answers in 0.3 s, and keeps each object as a file
# (ETag, an MD5 of the content, in an extended attribute), which is all FileSetSource needs:
# ListObjectsV2 with prefix and continuation, GetObject with Range, HeadObject, PutObject.
VERSITYGW_VERSION=1.7.0
VERSITYGW_CACHE=${WEIR_VERSITYGW_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/weir/versitygw-$VERSITYGW_VERSION}
MARKER=.weir-services   # marks a data dir as ours: `down` removes no other directory

log() { printf '%s\n' "$*" >&2; }
die() { log "services.sh: $*"; exit 1; }
now() { printf '%s' "${EPOCHREALTIME/[.,]/}"; }                       # microseconds
since() { local us=$(($(now) - $1)); printf '%d.%d s' $((us / 1000000)) $((us / 100000 % 10)); }

# ---------------------------------------------------------------- ports and URLs

# The port of a URL as test/support/services.ts writes them: scheme://user:pass@host:port/db
# or host:port[,host:port]. Services here only ever listen on 127.0.0.1.
url_port() {
  local rest=${1%%,*}
  rest=${rest#*://}; rest=${rest##*@}; rest=${rest%%/*}
  local host=${rest%:*} port=${rest##*:}
  [[ $host == 127.0.0.1 || $host == localhost ]] || die "$1: services.sh starts services on 127.0.0.1 only"
  [[ $port =~ ^[0-9]+$ ]] || die "$1: no port"
  printf '%s' "$port"
}

KAFKA_URL=${WEIR_KAFKA_BROKERS:-127.0.0.1:9092}
NATS_URL=${WEIR_NATS_URL:-nats://127.0.0.1:4222}
POSTGRES_URL=${WEIR_POSTGRES_URL:-postgres://weir:weir@127.0.0.1:5432/weir}
REDIS_URL=${WEIR_REDIS_URL:-redis://127.0.0.1:6379}
MARIADB_URL=${WEIR_MARIADB_URL:-mysql://weir:weir@127.0.0.1:3306/weir}
S3_URL=${WEIR_S3_URL:-http://127.0.0.1:9000}
# The second site: ports 10000 above the first's.
KAFKA2_URL=${WEIR_KAFKA2_BROKERS:-127.0.0.1:19092}
NATS2_URL=${WEIR_NATS2_URL:-nats://127.0.0.1:14222}
S3_ACCESS_KEY=${WEIR_S3_ACCESS_KEY:-weir}
S3_SECRET_KEY=${WEIR_S3_SECRET_KEY:-weirweirweir}
KAFKA_PORT=$(url_port "$KAFKA_URL")
KAFKA_CONTROLLER_PORT=${WEIR_KAFKA_CONTROLLER_PORT:-9093}
NATS_PORT=$(url_port "$NATS_URL")
NATS_MONITOR_PORT=${WEIR_NATS_MONITOR_PORT:-8222}
POSTGRES_PORT=$(url_port "$POSTGRES_URL")
REDIS_PORT=$(url_port "$REDIS_URL")
MARIADB_PORT=$(url_port "$MARIADB_URL")
S3_PORT=$(url_port "$S3_URL")
KAFKA2_PORT=$(url_port "$KAFKA2_URL")
KAFKA2_CONTROLLER_PORT=${WEIR_KAFKA2_CONTROLLER_PORT:-19093}
NATS2_PORT=$(url_port "$NATS2_URL")
NATS2_MONITOR_PORT=${WEIR_NATS2_MONITOR_PORT:-18222}

service_port() {
  case $1 in
    kafka) echo "$KAFKA_PORT" ;; nats) echo "$NATS_PORT" ;; postgres) echo "$POSTGRES_PORT" ;;
    redis) echo "$REDIS_PORT" ;; mariadb) echo "$MARIADB_PORT" ;; s3) echo "$S3_PORT" ;;
    kafka2) echo "$KAFKA2_PORT" ;; nats2) echo "$NATS2_PORT" ;;
  esac
}

service_url() {
  case $1 in
    kafka) echo "$KAFKA_URL" ;; nats) echo "$NATS_URL (monitor http://127.0.0.1:$NATS_MONITOR_PORT)" ;;
    postgres) echo "$POSTGRES_URL" ;; redis) echo "$REDIS_URL" ;; mariadb) echo "$MARIADB_URL" ;;
    s3) echo "$S3_URL (key $S3_ACCESS_KEY)" ;;
    kafka2) echo "$KAFKA2_URL" ;; nats2) echo "$NATS2_URL (monitor http://127.0.0.1:$NATS2_MONITOR_PORT)" ;;
  esac
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
answers() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0"' "$1" 2>/dev/null
}

# True when GET http://127.0.0.1:PORT/PATH answers 200.
http_ok() {
  timeout 2 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3
    IFS= read -r status <&3 && [[ $status == HTTP/1.?\ 200* ]]' "$1" "$2" 2>/dev/null
}

# ---------------------------------------------------------------- the data dir

# Every ancestor of PATH can be searched by other users: PostgreSQL and MariaDB refuse to
# run as root, so their users must be able to reach their folders.
searchable_by_all() {
  local p
  p=$(dirname "$1")
  while [[ $p != / ]]; do
    [[ -d $p ]] || { p=$(dirname "$p"); continue; }
    [[ $(stat -c %A "$p") == ?????????[xt]* ]] || return 1
    p=$(dirname "$p")
  done
}

data_dir() {
  if [[ -n ${WEIR_SERVICES_DIR:-} ]]; then
    realpath -m "$WEIR_SERVICES_DIR"
  elif searchable_by_all "$REPO/.services"; then
    printf '%s' "$REPO/.services"
  else
    printf '/var/tmp/weir-services-%s' "$(printf '%s' "$REPO" | md5sum | cut -c1-8)"
  fi
}
DIR=$(data_dir)

# The lock serializes concurrent calls (a test may restart Kafka while another one asks
# for status). Every daemon is started with fd 9 closed so that it does not hold it.
take_lock() {
  [[ -d $DIR ]] || { mkdir -p "$DIR" && chmod 755 "$DIR"; }
  if [[ ! -e $DIR/$MARKER ]]; then
    # `down` removes the whole directory: never adopt one that holds something else.
    [[ -z $(ls -A "$DIR") ]] || die "$DIR is not empty and was not made by services.sh; point WEIR_SERVICES_DIR at a new directory"
    printf 'created by scripts/services.sh; removed by `scripts/services.sh down`\n' >"$DIR/$MARKER"
  fi
  exec 9>"$DIR/.lock"
  flock -w 300 9 || die "another services.sh has held $DIR/.lock for 5 minutes"
}

# ---------------------------------------------------------------- processes

# The process is alive (a zombie is not: nothing may reap our orphans).
alive() {
  [[ -r /proc/$1/stat ]] || return 1
  local state
  state=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $state && $state != Z ]]
}

# Prints the pid in FILE if that process is alive and is ours: its command line or working
# directory names the data dir, so a stale file or a reused pid never makes us signal a stranger.
our_pid() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(head -n1 "$1" | tr -dc '0-9')
  [[ -n $pid ]] && alive "$pid" || return 1
  if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/" \
    || [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$DIR"/* ]]; then
    printf '%s' "$pid"
  else
    return 1
  fi
}

# Sends SIGNAL to PID, waits up to TIMEOUT seconds for it to exit, then sends SIGKILL.
stop_pid() {
  local pid=$1 signal=$2 timeout=$3 name=$4 deadline
  kill "-$signal" "$pid" 2>/dev/null || return 0
  deadline=$((SECONDS + timeout))
  while alive "$pid"; do
    if ((SECONDS >= deadline)); then
      log "$name (pid $pid) did not stop within ${timeout}s of SIG$signal; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 10))
      while alive "$pid"; do
        ((SECONDS < deadline)) || { log "$name (pid $pid) survived SIGKILL"; return 1; }
        sleep 0.1
      done
      return 0
    fi
    sleep 0.1
  done
}

# Polls CHECK... every 0.2 s for up to SECONDS; gives up early when the server whose pid
# is in PIDFILE (if one is named) has died.
wait_until() {
  local deadline=$((SECONDS + $1)) pidfile=$2
  shift 2
  until "$@"; do
    if [[ -n $pidfile ]] && ! our_pid "$pidfile" >/dev/null; then
      log "the server died while starting"
      return 1
    fi
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# Starts a daemon in its own session, detached from our terminal, pipes and lock, in DIR.
spawn() {
  local dir=$1 logfile=$2
  shift 2
  (cd "$dir" && exec setsid "$@" </dev/null >>"$logfile" 2>&1 9>&-) &
  SPAWNED=$!
}

# ---------------------------------------------------------------- installing

have() { command -v "$1" >/dev/null 2>&1; }

pg_bin() {
  local bin
  for bin in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    [[ -x $bin/initdb ]] && { printf '%s' "$bin"; return 0; }
  done
  return 1
}

# The Debian packages the named services need that are not installed.
missing_packages() {
  local s
  for s in "$@"; do
    case $s in
      kafka | kafka2) have java || echo openjdk-17-jre-headless; have mvn || echo maven ;;
      # openssl: the NATS TLS tests make their certificates with it (test/support/nats-server.ts).
      nats | nats2) have nats-server || echo nats-server; have openssl || echo openssl ;;
      postgres) pg_bin >/dev/null || echo postgresql ;;
      redis) { have redis-server && have redis-cli; } || echo redis-server ;;
      mariadb) { have mariadbd && have mariadb-install-db && have mariadb && have mariadb-admin; } || echo mariadb-server ;;
    esac
  done
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confold "$@" 9>&-
}

# Installs the packages without letting their maintainer scripts start the distribution's
# own instances (which would take our ports): policy-rc.d answers "not now" meanwhile.
install_packages() {
  local apt_log=$DIR/apt.log made_policy=0 status=0
  log "installing Debian packages: $*"
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# left by weir scripts/services.sh while it installs packages\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  if ! apt_install "$@" >"$apt_log" 2>&1; then
    log "apt-get install failed; running apt-get update and trying again"
    { apt-get update -q 9>&- && apt_install "$@"; } >>"$apt_log" 2>&1 || status=1
  fi
  if ((made_policy)); then rm -f /usr/sbin/policy-rc.d; fi
  if ((status)); then
    log "could not install $*; the end of $apt_log:"
    tail -n 30 "$apt_log" >&2
  fi
  return "$status"
}

# The broker's jars, fetched once into the cache by Maven (scripts/kafka/pom.xml).
kafka_libs() {
  local libs=$KAFKA_CACHE/libs fetch_log=$DIR/kafka-fetch.log tmp
  [[ -f $libs/.complete ]] && return 0
  { have mvn && have java; } || { log "kafka needs java and mvn"; return 1; }
  mkdir -p "$KAFKA_CACHE"
  tmp=$(mktemp -d "$KAFKA_CACHE/libs.XXXXXX") && chmod 755 "$tmp"
  log "fetching Kafka $KAFKA_VERSION from Maven Central into $libs"
  if ! mvn -q -B -Dstyle.color=never -f "$REPO/scripts/kafka/pom.xml" \
    dependency:copy-dependencies -DoutputDirectory="$tmp" >"$fetch_log" 2>&1 9>&- \
    || [[ ! -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]]; then
    log "fetching the Kafka jars failed; the end of $fetch_log:"
    tail -n 30 "$fetch_log" >&2
    rm -rf "$tmp"
    return 1
  fi
  touch "$tmp/.complete"
  rm -rf "$libs"
  mv "$tmp" "$libs"
}

# The Go command: on PATH, or where the official archive puts it (a root shell's PATH may
# lack /usr/local/go/bin).
go_cmd() {
  if have go; then command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go
  else return 1; fi
}

# Why this machine's Go cannot build versitygw (nothing: it can). versitygw 1.7.0 needs Go
# 1.25; a Go from 1.21 on fetches that toolchain from the Go module proxy by itself (Debian
# 12's golang-go is 1.19, too old for either, so `up` does not install it).
go_blocker() {
  local go version minor
  go=$(go_cmd) || { echo "go not found (builds versitygw $VERSITYGW_VERSION once)"; return; }
  version=$("$go" env GOVERSION 2>/dev/null) || version=unknown
  minor=$(sed -n 's/^go1\.\([0-9]*\).*/\1/p' <<<"$version")
  [[ -n $minor ]] && ((minor >= 21)) || echo "$go is $version; versitygw needs Go 1.21 or newer (it fetches 1.25 itself)"
}

# The versitygw binary, built once into the cache by `go install` from its module (the Go
# module proxy), stripped; the module and build caches are Go's own, so a rebuild is quick.
versitygw_bin() {
  local bin=$VERSITYGW_CACHE/bin/versitygw build_log=$DIR/s3-build.log tmp go t0
  [[ -x $bin ]] && return 0
  go=$(go_cmd) || { log "s3 needs Go to build versitygw"; return 1; }
  mkdir -p "$VERSITYGW_CACHE"
  tmp=$(mktemp -d "$VERSITYGW_CACHE/bin.XXXXXX") && chmod 755 "$tmp"
  log "building versitygw $VERSITYGW_VERSION with $("$go" env GOVERSION) into $VERSITYGW_CACHE/bin (about 75 s from a clean module cache)"
  t0=$(now)
  if ! GOBIN=$tmp GOFLAGS=-modcacherw "$go" install -trimpath -ldflags='-s -w'     "github.com/versity/versitygw/cmd/versitygw@v$VERSITYGW_VERSION" >"$build_log" 2>&1 9>&-     || [[ ! -x $tmp/versitygw ]]; then
    log "building versitygw failed; the end of $build_log:"
    tail -n 30 "$build_log" >&2
    rm -rf "$tmp"
    return 1
  fi
  log "built versitygw in $(since "$t0")"
  rm -rf "$VERSITYGW_CACHE/bin"
  mv "$tmp" "$VERSITYGW_CACHE/bin"
}

# Installs what the named services need. The Kafka download and the versitygw build run
# beside apt-get.
install_prerequisites() {
  local packages fetch_pid="" build_pid="" status=0
  [[ " $* " == *" kafka "* || " $* " == *" kafka2 "* ]] && have mvn && have java && [[ ! -f $KAFKA_CACHE/libs/.complete ]] && {
    kafka_libs & fetch_pid=$!
  }
  [[ " $* " == *" s3 "* && ! -x $VERSITYGW_CACHE/bin/versitygw ]] && go_cmd >/dev/null && {
    versitygw_bin & build_pid=$!
  }
  mapfile -t packages < <(missing_packages "$@" | sort -u)
  if ((${#packages[@]})); then
    [[ $(id -u) == 0 ]] || die "not root: install ${packages[*]} first"
    install_packages "${packages[@]}" || status=1
  fi
  if [[ -n $fetch_pid ]]; then wait "$fetch_pid" || status=1; fi
  if [[ -n $build_pid ]]; then wait "$build_pid" || status=1; fi
  return "$status"
}

# Why `up` could not start SERVICE here as things are, one reason a line (nothing: it can).
# Only what `up` needs before it starts the server: a program, root, the Kafka jars.
service_blockers() {
  case $1 in
    kafka | kafka2)
      have java || echo "java not found"
      [[ -f $KAFKA_CACHE/libs/.complete ]] || have mvn || echo "mvn not found (fetches the Kafka jars once)" ;;
    nats | nats2) have nats-server || echo "nats-server not found"; have openssl || echo "openssl not found" ;;
    postgres)
      pg_bin >/dev/null || echo "PostgreSQL not installed (initdb not found)"
      [[ $(id -u) == 0 ]] || echo "not root: the server runs as the postgres user" ;;
    redis) { have redis-server && have redis-cli; } || echo "redis-server not found" ;;
    mariadb)
      { have mariadbd && have mariadb-install-db && have mariadb && have mariadb-admin; } || echo "mariadbd not found"
      [[ $(id -u) == 0 ]] || echo "not root: the server runs as the mysql user" ;;
    s3) [[ -x $VERSITYGW_CACHE/bin/versitygw ]] || go_blocker ;;
  esac
}

# `up` installs missing packages only as root with apt-get; it cannot make us root.
cmd_check() {
  local s blockers packages missing=0 can_install=0
  parse_services "$@"
  [[ $(id -u) == 0 ]] && have apt-get && can_install=1
  for s in "${NAMES[@]}"; do
    mapfile -t blockers < <(service_blockers "$s")
    if ((${#blockers[@]} == 0)); then
      if [[ $s == kafka* && ! -f $KAFKA_CACHE/libs/.complete ]]; then
        printf '%-9s ready | its first start fetches the Kafka %s jars from Maven Central (about 80 s)\n' "$s" "$KAFKA_VERSION"
      elif [[ $s == s3 && ! -x $VERSITYGW_CACHE/bin/versitygw ]]; then
        printf '%-9s ready | its first start builds versitygw %s with Go (about 75 s)\n' "$s" "$VERSITYGW_VERSION"
      else
        printf '%-9s ready\n' "$s"
      fi
      continue
    fi
    mapfile -t packages < <(missing_packages "$s")
    local why
    why=$(IFS=';'; printf '%s' "${blockers[*]}" | sed 's/;/; /g')
    if ((can_install)) && ((${#packages[@]})) && [[ $why != *"not root"* ]]; then
      printf '%-9s install %s | up installs %s\n' "$s" "$why" "${packages[*]}"
    else
      ((${#packages[@]})) && why="$why | install ${packages[*]}, or run scripts/services.sh up as root"
      [[ $s == s3 ]] && why="$why | install Go 1.21 or newer (the official archive in /usr/local/go)"
      printf '%-9s missing %s\n' "$s" "$why"
      missing=1
    fi
  done
  return "$missing"
}

# ---------------------------------------------------------------- Kafka

# A cluster id as `kafka-storage random-uuid` makes them: 16 random bytes, URL-safe base64
# without padding, never starting with '-' (it would read as an option).
kafka_cluster_id() {
  local id
  while :; do
    id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    [[ $id != -* ]] && { printf '%s' "$id"; return; }
  done
}

kafka_config() {
  local d=$1 port=$2 controller_port=$3
  cat >"$d/server.properties" <<EOF
# written by scripts/services.sh on every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$d/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.check.interval.ms=10000
EOF
  cat >"$d/log4j.properties" <<'EOF'
# written by scripts/services.sh: the broker's own lines at INFO (startup, shutdown), the rest at WARN
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
EOF
}

# Where each broker's log stood when `up` started it: the "started" line must be newer.
declare -A KAFKA_LOG_OFFSET=()

# start_kafka_in NAME PORT CONTROLLER_PORT XMS XMX: a broker whose files are in $DIR/NAME.
start_kafka_in() {
  local name=$1 port=$2 controller_port=$3 xms=$4 xmx=$5 d=$DIR/$1 java=${JAVA_HOME:+$JAVA_HOME/bin/}java
  mkdir -p "$d"
  touch "$d/$name.log"
  our_pid "$d/$name.pid" >/dev/null && return 0
  kafka_libs || return 1
  kafka_config "$d" "$port" "$controller_port"
  if [[ ! -f $d/data/meta.properties ]]; then
    "$java" -Dlog4j.configuration="file:$d/log4j.properties" -cp "$KAFKA_CACHE/libs/*" \
      kafka.tools.StorageTool format -t "$(kafka_cluster_id)" -c "$d/server.properties" \
      >>"$d/$name.log" 2>&1 9>&- || { log "formatting Kafka's storage failed"; return 1; }
  fi
  KAFKA_LOG_OFFSET[$name]=$(stat -c %s "$d/$name.log")
  spawn "$d" "$d/$name.log" "$java" "-Xms$xms" "-Xmx$xmx" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j.configuration="file:$d/log4j.properties" \
    -cp "$KAFKA_CACHE/libs/*" kafka.Kafka "$d/server.properties"
  echo "$SPAWNED" >"$d/$name.pid"
}

# Serving means: the broker logged that it started (since this start), its port accepts
# connections, and it answers a Metadata request with a live broker and a controller.
kafka_serves_in() {
  local name=$1 port=$2
  tail -c "+$((${KAFKA_LOG_OFFSET[$name]:-0} + 1))" "$DIR/$name/$name.log" | grep -q 'Kafka Server started' \
    && answers "$port" \
    && node "$REPO/scripts/kafka/metadata-probe.mjs" "127.0.0.1:$port" 2>/dev/null
}

start_kafka() { start_kafka_in kafka "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" 256m 1g; }
wait_kafka() { wait_until 120 "$DIR/kafka/kafka.pid" kafka_serves_in kafka "$KAFKA_PORT"; }
# Site B's broker only carries the migration tests' second cluster (a few small topics and
# transactions): half the first one's heap. `up` starts it beside the others, so the JVMs
# warm up in parallel.
start_kafka2() { start_kafka_in kafka2 "$KAFKA2_PORT" "$KAFKA2_CONTROLLER_PORT" 128m 512m; }
wait_kafka2() { wait_until 120 "$DIR/kafka2/kafka2.pid" kafka_serves_in kafka2 "$KAFKA2_PORT"; }

# ---------------------------------------------------------------- NATS

# start_nats_in NAME PORT MONITOR_PORT: a NATS server with JetStream whose files are in $DIR/NAME.
start_nats_in() {
  local name=$1 port=$2 monitor_port=$3 d=$DIR/$1
  mkdir -p "$d/jetstream"
  our_pid "$d/$name.pid" >/dev/null && return 0
  cat >"$d/$name.conf" <<EOF
# written by scripts/services.sh on every start
listen: 127.0.0.1:$port
http: 127.0.0.1:$monitor_port
jetstream {
  store_dir: "$d/jetstream"
  max_memory_store: 1G
  max_file_store: 10G
}
EOF
  spawn "$d" "$d/$name.log" nats-server -c "$d/$name.conf"
  echo "$SPAWNED" >"$d/$name.pid"
}

nats_serves_in() { answers "$1" && http_ok "$2" /healthz; }

start_nats() { start_nats_in nats "$NATS_PORT" "$NATS_MONITOR_PORT"; }
wait_nats() { wait_until 30 "$DIR/nats/nats.pid" nats_serves_in "$NATS_PORT" "$NATS_MONITOR_PORT"; }
start_nats2() { start_nats_in nats2 "$NATS2_PORT" "$NATS2_MONITOR_PORT"; }
wait_nats2() { wait_until 30 "$DIR/nats2/nats2.pid" nats_serves_in "$NATS2_PORT" "$NATS2_MONITOR_PORT"; }

# ---------------------------------------------------------------- PostgreSQL

as_postgres() { runuser -u postgres -- "$@" 9>&-; }

start_postgres() {
  local d=$DIR/postgres bin
  bin=$(pg_bin) || { log "PostgreSQL is not installed"; return 1; }
  mkdir -p "$d"
  chown postgres: "$d" && chmod 700 "$d"
  touch "$d/postgres.log" && chown postgres: "$d/postgres.log"
  our_pid "$d/data/postmaster.pid" >/dev/null && return 0
  as_postgres test -w "$d" || { log "the postgres user cannot write to $d"; return 1; }
  # Left by a server that was killed (or a machine that restarted): its pid may belong to
  # another process by now, and PostgreSQL would then refuse to start.
  rm -f "$d/data/postmaster.pid" "$d/.s.PGSQL.$POSTGRES_PORT" "$d/.s.PGSQL.$POSTGRES_PORT.lock"
  if [[ ! -f $d/data/PG_VERSION ]]; then
    as_postgres "$bin/initdb" -D "$d/data" -U postgres -E UTF8 --no-locale --no-sync \
      --auth-local=peer --auth-host=scram-sha-256 >>"$d/postgres.log" 2>&1 || { log "initdb failed"; return 1; }
    # Test data only: durability across an OS crash is not something the tests need.
    cat >>"$d/data/postgresql.conf" <<EOF

# added by scripts/services.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$d'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  fi
  # pg_ctl waits until the server accepts connections or has failed (quick either way). Its
  # own lines and the server's go to the same log, both appending.
  # shellcheck disable=SC2094
  (cd "$d" && setsid runuser -u postgres -- "$bin/pg_ctl" start -w -t 60 -D "$d/data" -l "$d/postgres.log" \
    -o "-p $POSTGRES_PORT" </dev/null >>"$d/postgres.log" 2>&1 9>&-) || { log "pg_ctl start failed"; return 1; }
}

postgres_serves() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT"; }

wait_postgres() {
  local d=$DIR/postgres
  wait_until 60 "$d/data/postmaster.pid" postgres_serves || return 1
  as_postgres "$(pg_bin)/psql" -h "$d" -p "$POSTGRES_PORT" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 \
    >>"$d/postgres.log" 2>&1 <<'EOF' || { log "creating the weir role and database failed"; return 1; }
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'weir') THEN
    CREATE ROLE weir LOGIN CREATEDB PASSWORD 'weir';
  END IF;
END $$;
SELECT 'CREATE DATABASE weir OWNER weir' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'weir')\gexec
EOF
}

# ---------------------------------------------------------------- Redis

start_redis() {
  local d=$DIR/redis
  mkdir -p "$d"
  our_pid "$d/redis.pid" >/dev/null && return 0
  # No persistence: tests start from an empty Redis after `down`/`up`. Detached by spawn
  # (its own session, no terminal) rather than by --daemonize, so its pid is known at once.
  spawn "$d" "$d/redis.log" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' \
    --appendonly no --daemonize no --pidfile "$d/redis.pid" --logfile "$d/redis.log" --dir "$d"
  echo "$SPAWNED" >"$d/redis.pid"
}

redis_serves() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

wait_redis() { wait_until 30 "$DIR/redis/redis.pid" redis_serves; }

# ---------------------------------------------------------------- MariaDB

start_mariadb() {
  local d=$DIR/mariadb
  mkdir -p "$d"
  chown mysql: "$d"
  touch "$d/mariadb.log" && chown mysql: "$d/mariadb.log"
  our_pid "$d/mariadb.pid" >/dev/null && return 0
  runuser -u mysql -- test -w "$d" 9>&- || { log "the mysql user cannot write to $d"; return 1; }
  # Left by a server that was killed: the socket's lock names a pid that may be reused.
  rm -f "$d/mariadb.sock" "$d/mariadb.sock.lock" "$d/data/mariadbd.pid"
  if [[ ! -d $d/data/mysql ]]; then
    mariadb-install-db --no-defaults --user=mysql --datadir="$d/data" --skip-test-db \
      --auth-root-authentication-method=socket >>"$d/mariadb.log" 2>&1 9>&- || { log "mariadb-install-db failed"; return 1; }
  fi
  # --no-defaults: nothing from /etc/mysql (its socket and pid dirs may not exist here).
  spawn "$d" "$d/mariadb.log" mariadbd --no-defaults --user=mysql --datadir="$d/data" \
    --bind-address=127.0.0.1 --port="$MARIADB_PORT" --socket="$d/mariadb.sock" \
    --pid-file="$d/data/mariadbd.pid" --log-error="$d/mariadb.log" --skip-name-resolve \
    --innodb-flush-log-at-trx-commit=2 --innodb-buffer-pool-size=256M
  echo "$SPAWNED" >"$d/mariadb.pid"
}

mariadb_root() { mariadb --no-defaults --socket="$DIR/mariadb/mariadb.sock" -uroot 9>&-; }

mariadb_serves() {
  answers "$MARIADB_PORT" && mariadb-admin --no-defaults --socket="$DIR/mariadb/mariadb.sock" -uroot ping >/dev/null 2>&1
}

wait_mariadb() {
  wait_until 60 "$DIR/mariadb/mariadb.pid" mariadb_serves || return 1
  mariadb_root >>"$DIR/mariadb/mariadb.log" 2>&1 <<'EOF' || { log "creating the weir user and database failed"; return 1; }
CREATE DATABASE IF NOT EXISTS weir;
CREATE USER IF NOT EXISTS 'weir'@'%' IDENTIFIED BY 'weir';
CREATE USER IF NOT EXISTS 'weir'@'localhost' IDENTIFIED BY 'weir';
GRANT ALL PRIVILEGES ON weir.* TO 'weir'@'%';
GRANT ALL PRIVILEGES ON weir.* TO 'weir'@'localhost';
EOF
}

# ---------------------------------------------------------------- S3 (versitygw)

start_s3() {
  local d=$DIR/s3
  mkdir -p "$d/data"
  our_pid "$d/s3.pid" >/dev/null && return 0
  versitygw_bin || return 1
  # The credentials go in its environment, not on its command line (`ps` shows that); the
  # variables it would also read from ours (LOGFILE, WEBHOOK) are dropped. Objects are files
  # under data/<bucket>/, their ETags and metadata extended attributes of those files.
  spawn "$d" "$d/s3.log" env -u LOGFILE -u WEBHOOK ROOT_ACCESS_KEY="$S3_ACCESS_KEY" ROOT_SECRET_KEY="$S3_SECRET_KEY" \
    "$VERSITYGW_CACHE/bin/versitygw" --port "127.0.0.1:$S3_PORT" --region us-east-1 --health /health --quiet \
    posix "$d/data"
  echo "$SPAWNED" >"$d/s3.pid"
}

s3_serves() { http_ok "$S3_PORT" /health; }

wait_s3() { wait_until 30 "$DIR/s3/s3.pid" s3_serves; }

# ---------------------------------------------------------------- per service

# Each service keeps its log and pid file as <dir>/<service>/<service>.{log,pid}; PostgreSQL
# writes its own pid file into its data directory.
service_log() { echo "$DIR/$1/$1.log"; }

service_pid() {
  if [ "$1" = postgres ]; then our_pid "$DIR/postgres/data/postmaster.pid"; else our_pid "$DIR/$1/$1.pid"; fi
}

# PostgreSQL's SIGTERM waits for every client to disconnect; SIGINT is its "fast" shutdown,
# which ends the sessions. The others shut down cleanly on SIGTERM.
stop_signal() { [[ $1 == postgres ]] && echo INT || echo TERM; }

report() { printf '%-9s %-46s %s\n' "$1" "$(service_url "$1")" "$2"; }

fail_report() {
  local name=$1 logfile
  logfile=$(service_log "$name")
  report "$name" "FAILED"
  if [[ -s $logfile ]]; then
    log "---- the last lines of $logfile"
    tail -n 40 "$logfile" >&2
    log "----"
  fi
}

stop_service() {
  local name=$1 pid
  if pid=$(service_pid "$name"); then
    stop_pid "$pid" "$(stop_signal "$name")" 30 "$name" || return 1
    report "$name" "stopped (pid $pid)"
  elif answers "$(service_port "$name")"; then
    report "$name" "answering, but not started by services.sh here ($DIR): left alone"
  fi
}

# ---------------------------------------------------------------- commands

# Sets NAMES to the services named (all when none is), in the order given.
parse_services() {
  local s
  (($#)) || set -- "${ALL_SERVICES[@]}"
  for s in "$@"; do
    [[ " ${ALL_SERVICES[*]} " == *" $s "* ]] || die "unknown service '$s' (one of: ${ALL_SERVICES[*]})"
  done
  NAMES=("$@")
}

cmd_up() {
  local todo=() started=() failed=0 s t0 pid
  parse_services "$@"
  take_lock
  for s in "${NAMES[@]}"; do
    if answers "$(service_port "$s")"; then
      if pid=$(service_pid "$s"); then report "$s" "running (pid $pid)"
      else report "$s" "already answering (not started by services.sh here)"; fi
    else
      todo+=("$s")
    fi
  done
  ((${#todo[@]})) || return 0
  install_prerequisites "${todo[@]}" || die "installing what the services need failed"
  t0=$(now)
  # Start everything, then wait for each: the JVM warms up while the databases initialize.
  for s in "${todo[@]}"; do
    if "start_$s"; then started+=("$s"); else fail_report "$s"; failed=1; fi
  done
  for s in "${started[@]}"; do
    if "wait_$s"; then
      report "$s" "started (pid $(service_pid "$s" || echo '?'), $(since "$t0"))"
    else
      fail_report "$s"
      failed=1
    fi
  done
  return "$failed"
}

cmd_down() {
  local s failed=0
  if [[ ! -d $DIR ]]; then
    for s in "${ALL_SERVICES[@]}"; do stop_service "$s"; done
    log "nothing to remove: $DIR does not exist"
    return 0
  fi
  [[ -e $DIR/$MARKER ]] || die "refusing to remove $DIR: it has no $MARKER file, so services.sh did not create it"
  take_lock
  for s in kafka kafka2 nats nats2 redis mariadb s3 postgres; do stop_service "$s" || failed=1; done
  ((failed == 0)) || die "a service did not stop; $DIR is kept"
  rm -rf "$DIR"
  log "removed $DIR"
}

cmd_status() {
  local s pid down=0
  parse_services "$@"
  for s in "${NAMES[@]}"; do
    pid=$(service_pid "$s") || pid=""
    if answers "$(service_port "$s")"; then
      if [[ -n $pid ]]; then report "$s" "running (pid $pid)"
      else report "$s" "answering (not started by services.sh here)"; fi
    elif [[ -n $pid ]]; then
      report "$s" "not answering yet (pid $pid)"; down=1
    else
      report "$s" "stopped"; down=1
    fi
  done
  log "data dir: $DIR"
  return "$down"
}

# Stops the services named and keeps their data, so that `up` resumes them where they were.
cmd_stop() {
  local s pid
  (($#)) || die "stop needs the services to stop (one or more of: ${ALL_SERVICES[*]})"
  parse_services "$@"
  take_lock
  for s in "${NAMES[@]}"; do
    if pid=$(service_pid "$s"); then
      stop_pid "$pid" "$(stop_signal "$s")" 60 "$s" || die "$s did not stop"
      [[ $s == postgres ]] || rm -f "$DIR/$s/$s.pid"
      report "$s" "stopped (pid $pid)"
    elif answers "$(service_port "$s")"; then
      die "$s on 127.0.0.1:$(service_port "$s") was not started by services.sh here ($DIR); not stopping it"
    else
      report "$s" "not running"
    fi
  done
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) shift; cmd_status "$@" ;;
  check) shift; cmd_check "$@" ;;
  start-kafka) cmd_up kafka ;;
  stop) shift; cmd_stop "$@" ;;
  stop-kafka) cmd_stop kafka ;;
  restart-kafka) (cmd_stop kafka) && cmd_up kafka ;;
  *) sed -n '2,/^# shellcheck/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
