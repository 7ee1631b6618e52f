#!/usr/bin/env bash
# Local services without Docker: Kafka (KRaft, from Maven Central jars), ClickHouse and Redis
# (Debian packages), stripe-mock (go install). Everything listens on 127.0.0.1 and keeps its
# data under .data/ in the repository.
#
#   services.sh up [NAME...]    install what is missing, start what is not running, wait until healthy
#   services.sh down [NAME...]  stop what this script started (no stray processes)
#   services.sh status   one line per service
#   services.sh env      the environment variables the code and tests read, as `export` lines
#
# Idempotent: `up` twice leaves the running services alone. Errors are one line naming the
# problem; details stay in the service's log file under .data/<service>/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA="${KEYMETER_DATA_DIR:-$ROOT/.data}"
CACHE="${KEYMETER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keymeter}"
HERE="$ROOT/infra/local"

KAFKA_VERSION=3.9.1
STRIPE_MOCK_VERSION=v0.203.0

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
CLICKHOUSE_HTTP_PORT="${CLICKHOUSE_HTTP_PORT:-8123}"
CLICKHOUSE_TCP_PORT="${CLICKHOUSE_TCP_PORT:-9000}"
REDIS_PORT="${REDIS_PORT:-6379}"
STRIPE_MOCK_PORT="${STRIPE_MOCK_PORT:-12111}"
START_TIMEOUT_S="${KEYMETER_START_TIMEOUT_S:-60}"

die() { echo "services: $*" >&2; exit 1; }
say() { echo "services: $*"; }

for v in KAFKA_PORT KAFKA_CONTROLLER_PORT CLICKHOUSE_HTTP_PORT CLICKHOUSE_TCP_PORT REDIS_PORT STRIPE_MOCK_PORT START_TIMEOUT_S; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_of() { local f="$DATA/$1/pid"; [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null && cat "$f"; }

# A port held by a process that is not ours is a configuration error, not something to wait out.
require_free_port() {
  local name=$1 var=$2 port=$3
  if port_open "$port"; then
    die "port $port for $name is already in use by another process (set $var to another port, or stop that process)"
  fi
}

# wait_until NAME LOGFILE CHECK...: polls CHECK until it succeeds or START_TIMEOUT_S passes.
wait_until() {
  local name=$1 log=$2; shift 2
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until "$@" >/dev/null 2>&1; do
    if ! pid_of "$name" >/dev/null; then
      die "$name exited during start-up; last log line: $(tail -n 1 "$log" 2>/dev/null || echo 'none') (log: $log)"
    fi
    ((SECONDS < deadline)) || die "$name did not become healthy within ${START_TIMEOUT_S}s (log: $log)"
    sleep 0.2
  done
}

apt_install() {
  command -v apt-get >/dev/null || die "$1 is missing and apt-get is not available to install it"
  say "installing $* from apt"
  if [[ ! -f "$CACHE/.apt-updated" ]]; then
    apt-get update -qq >/dev/null || die "apt-get update failed"
    mkdir -p "$CACHE" && touch "$CACHE/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >"$CACHE/apt.log" 2>&1 ||
    die "apt-get install $* failed (log: $CACHE/apt.log)"
}

# ---------------------------------------------------------------------------------- Redis
redis_up() {
  command -v redis-server >/dev/null || apt_install redis-server
  if pid_of redis >/dev/null; then return; fi
  require_free_port redis REDIS_PORT "$REDIS_PORT"
  mkdir -p "$DATA/redis"
  # AOF on: the key registry lives here. noeviction: BullMQ must never lose a job silently.
  cat >"$DATA/redis/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize no
dir $DATA/redis
appendonly yes
appendfsync everysec
save ""
maxmemory-policy noeviction
logfile $DATA/redis/redis.log
EOF
  setsid redis-server "$DATA/redis/redis.conf" >/dev/null 2>&1 </dev/null &
  echo $! >"$DATA/redis/pid"
  wait_until redis "$DATA/redis/redis.log" redis_healthy
}
redis_healthy() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

# ----------------------------------------------------------------------------- ClickHouse
clickhouse_up() {
  command -v clickhouse-server >/dev/null || apt_install clickhouse-server
  if pid_of clickhouse >/dev/null; then return; fi
  require_free_port clickhouse CLICKHOUSE_HTTP_PORT "$CLICKHOUSE_HTTP_PORT"
  require_free_port clickhouse CLICKHOUSE_TCP_PORT "$CLICKHOUSE_TCP_PORT"
  local dir="$DATA/clickhouse"
  mkdir -p "$dir/data" "$dir/log" "$dir/etc"
  # Debian's stock config, with its paths pointed into .data and loopback-only listeners.
  sed -e "s#/var/lib/clickhouse/#$dir/data/#g" \
    -e "s#/var/log/clickhouse-server/#$dir/log/#g" \
    -e "s#<http_port>8123</http_port>#<http_port>$CLICKHOUSE_HTTP_PORT</http_port>#" \
    -e "s#<tcp_port>9000</tcp_port>#<tcp_port>$CLICKHOUSE_TCP_PORT</tcp_port>#" \
    -e "s#<interserver_http_port>9009</interserver_http_port>##" \
    -e "s#<listen_host>::1</listen_host>##" \
    /etc/clickhouse-server/config.xml >"$dir/etc/config.xml"
  cp /etc/clickhouse-server/users.xml "$dir/etc/users.xml"
  setsid clickhouse-server --config-file="$dir/etc/config.xml" >"$dir/log/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  wait_until clickhouse "$dir/log/clickhouse-server.err.log" clickhouse_healthy
}
clickhouse_healthy() { [[ "$(curl -sf "http://127.0.0.1:$CLICKHOUSE_HTTP_PORT/ping")" == Ok. ]]; }

# ---------------------------------------------------------------------------------- Kafka
KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
fetch_kafka_libs() {
  local libs=$KAFKA_LIBS
  if [[ ! -f "$libs/.complete" ]]; then
    command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka $KAFKA_VERSION jars"
    command -v java >/dev/null || die "Java is needed to run Kafka"
    say "fetching Kafka $KAFKA_VERSION jars from Maven Central (cached in $libs)"
    mkdir -p "$libs"
    mvn -q -B -f "$HERE/kafka/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$libs" >"$CACHE/mvn-kafka.log" 2>&1 ||
      die "fetching the Kafka jars failed (log: $CACHE/mvn-kafka.log)"
    touch "$libs/.complete"
  fi
}

kafka_up() {
  fetch_kafka_libs
  if pid_of kafka >/dev/null; then return; fi
  require_free_port kafka KAFKA_PORT "$KAFKA_PORT"
  require_free_port kafka KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
  local dir="$DATA/kafka"
  mkdir -p "$dir/logs"
  sed -e "s#@PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
    -e "s#@LOG_DIRS@#$dir/logs#g" "$HERE/kafka/server.properties" >"$dir/server.properties"
  sed -e "s#@LOG_FILE@#$dir/server.log#g" "$HERE/kafka/log4j.properties" >"$dir/log4j.properties"
  local java=(java -Xms512m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j.configuration=file:$dir/log4j.properties" -cp "$KAFKA_LIBS/*")
  if [[ ! -f "$dir/logs/meta.properties" ]]; then
    local cluster_id; cluster_id="$("${java[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null)"
    "${java[@]}" kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
      >"$dir/format.log" 2>&1 || die "formatting Kafka storage failed (log: $dir/format.log)"
  fi
  : >"$dir/server.log"
  setsid "${java[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/pid"
  wait_until kafka "$dir/server.log" kafka_healthy
}
kafka_healthy() { port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$DATA/kafka/server.log"; }

# ------------------------------------------------------------------------------ stripe-mock
# Optional: billing tests that need it skip with a reason when it is absent.
stripe_mock_up() {
  local bin="$CACHE/bin/stripe-mock-$STRIPE_MOCK_VERSION"
  if [[ ! -x "$bin" ]]; then
    if ! command -v go >/dev/null; then say "warning: go is missing, stripe-mock not started"; return; fi
    say "installing stripe-mock $STRIPE_MOCK_VERSION with go install"
    mkdir -p "$CACHE/bin"
    if ! GOBIN="$CACHE/gobin" go install "github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION" >"$CACHE/go-install.log" 2>&1; then
      say "warning: go install stripe-mock failed, stripe-mock not started (log: $CACHE/go-install.log)"
      return
    fi
    mv "$CACHE/gobin/stripe-mock" "$bin"
  fi
  if pid_of stripe-mock >/dev/null; then return; fi
  require_free_port stripe-mock STRIPE_MOCK_PORT "$STRIPE_MOCK_PORT"
  mkdir -p "$DATA/stripe-mock"
  setsid "$bin" -http-addr "127.0.0.1:$STRIPE_MOCK_PORT" -https-addr "127.0.0.1:0" \
    >"$DATA/stripe-mock/stripe-mock.log" 2>&1 </dev/null &
  echo $! >"$DATA/stripe-mock/pid"
  wait_until stripe-mock "$DATA/stripe-mock/stripe-mock.log" stripe_mock_healthy
}
stripe_mock_healthy() {
  curl -sf -H "Authorization: Bearer sk_test_123" "http://127.0.0.1:$STRIPE_MOCK_PORT/v1/customers" >/dev/null
}

# ------------------------------------------------------------------------------ commands
stop_one() {
  local name=$1 pid
  pid="$(pid_of "$name")" || { rm -f "$DATA/$name/pid"; return 0; }
  # Each service was started with setsid, so its process group holds all of its children.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not stop within 20s, killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$DATA/$name/pid"
  say "$name stopped"
}

print_env() {
  cat <<EOF
export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export CLICKHOUSE_URL=http://127.0.0.1:$CLICKHOUSE_HTTP_PORT
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
EOF
  if pid_of stripe-mock >/dev/null; then echo "export STRIPE_API_BASE=http://127.0.0.1:$STRIPE_MOCK_PORT"; fi
}

SERVICES=(redis clickhouse kafka stripe-mock)

command=${1:-}
shift || true
selected=("$@")
[[ ${#selected[@]} -gt 0 ]] || selected=("${SERVICES[@]}")
for s in "${selected[@]}"; do
  [[ " ${SERVICES[*]} " == *" $s "* ]] || die "unknown service '$s' (known: ${SERVICES[*]})"
done

case "$command" in
  up)
    start=$SECONDS
    mkdir -p "$DATA" "$CACHE"
    for s in "${selected[@]}"; do "${s//-/_}_up"; done
    running=()
    for s in "${selected[@]}"; do pid_of "$s" >/dev/null && running+=("$s"); done
    say "up in $((SECONDS - start))s: ${running[*]} (redis :$REDIS_PORT, clickhouse :$CLICKHOUSE_HTTP_PORT, kafka :$KAFKA_PORT, stripe-mock :$STRIPE_MOCK_PORT)"
    ;;
  down)
    for s in "${selected[@]}"; do stop_one "$s"; done
    ;;
  status)
    for s in "${selected[@]}"; do
      if p="$(pid_of "$s")"; then echo "$s: running (pid $p)"; else echo "$s: stopped"; fi
    done
    ;;
  env) print_env ;;
  *) die "usage: services.sh up|down|status|env [SERVICE...]" ;;
esac
