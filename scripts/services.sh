#!/usr/bin/env bash
# Starts (or stops) the servers the tests talk to: one Kafka-protocol broker
# (Nisshi 0.8.1, or Tansu 0.6.0 with TEST_BROKER=tansu) with durable sqlite storage and one throwaway PostgreSQL cluster, both on free
# local ports, with their state under target/test-services/.
#
#   eval "$(scripts/services.sh start)"   # exports KAFKA_BOOTSTRAP_SERVERS, TEST_DATABASE_URL, TEST_BROKER, GRPCURL, KAFKA_ENABLE_IDEMPOTENCE
#   scripts/services.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="${BLAZING_SUN_TOOLS:-$HOME/.cache/blazing-sun-tools}"
BROKER="${TEST_BROKER:-nisshi}"
case "$BROKER" in
  nisshi) IDEMPOTENCE=true ;;
  # Tansu 0.6.0 panics (and stops serving) when librdkafka bumps an idempotent
  # producer's epoch, which it does after a delivery timeout: see src/kafka.rs.
  tansu) IDEMPOTENCE=false ;;
  *) echo "TEST_BROKER=$BROKER: expected nisshi or tansu" >&2; exit 64 ;;
esac
STATE="${TEST_SERVICES_DIR:-$PWD/target/test-services}"

log() { printf '[services] %s\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() { # port seconds what
  local deadline=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$3 did not listen on port $1 within $2 s"
      return 1
    fi
    sleep 0.1
  done
}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

stop() {
  if [ -f "$STATE/broker.pid" ]; then
    kill "$(cat "$STATE/broker.pid")" 2>/dev/null || true
    rm -f "$STATE/broker.pid"
  fi
  if [ -f "$STATE/pg/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$STATE/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
}

PG_BIN="$(dirname "$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n 1)")"

start() {
  stop
  rm -rf "$STATE"
  mkdir -p "$STATE/broker"
  chmod 755 "$STATE"

  local kafka_port pg_port
  kafka_port="$(free_port)"
  log "starting $BROKER on 127.0.0.1:$kafka_port (storage $STATE/broker/broker.db)"
  (
    cd "$STATE/broker"
    RUST_LOG=warn exec "$TOOLS/bin/$BROKER" broker \
      --listener-url "tcp://127.0.0.1:$kafka_port" \
      --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
      --storage-engine "sqlite://broker.db" >"$STATE/broker.log" 2>&1
  ) &
  echo $! >"$STATE/broker.pid"
  wait_for_port "$kafka_port" 30 "$BROKER"

  pg_port="$(free_port)"
  log "starting PostgreSQL on 127.0.0.1:$pg_port"
  mkdir -p "$STATE/pg" "$STATE/pgsock"
  [ "$(id -u)" -ne 0 ] || chown postgres "$STATE/pg" "$STATE/pgsock"
  as_postgres "$PG_BIN/initdb" -D "$STATE/pg" -U postgres -A trust --no-sync >/dev/null
  as_postgres "$PG_BIN/pg_ctl" -D "$STATE/pg" -l "$STATE/pg/server.log" -w -t 60 \
    -o "-p $pg_port -k $STATE/pgsock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=500" \
    start >/dev/null

  cat >"$STATE/env" <<ENV
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$kafka_port
export TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$pg_port/postgres
export TEST_BROKER=$BROKER
export GRPCURL=$TOOLS/bin/grpcurl
# Idempotent producers (production's default) unless the broker is Tansu 0.6.0.
export KAFKA_ENABLE_IDEMPOTENCE=$IDEMPOTENCE
ENV
  cat "$STATE/env"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 64 ;;
esac
