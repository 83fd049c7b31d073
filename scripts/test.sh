#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the packages it needs, starts PostgreSQL and Redis if they are
# not running, installs (once) and starts a Kafka-protocol broker (tansu) of its own, then runs every test: unit,
# property, HTTP integration on the embedded default, on PostgreSQL and on the production backends (PostgreSQL +
# Kafka + Redis), kill -9 crash tests on each, the outage tests, the WebSocket feeds, the pages in a headless
# Chromium, and schemathesis against the OpenAPI document. A server that cannot be started fails the run; nothing is
# skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*" >&2; }

need_packages=()
# cmake and libcurl's headers build librdkafka for the Kafka journal (feature `kafka`); chromium and its driver run
# the browser tests of the pages; prometheus brings promtool, which checks the alert rules and scrape configuration
# under deploy/.
for package in pkg-config libsqlite3-dev libpq-dev redis-server cmake libcurl4-openssl-dev chromium chromium-driver \
  prometheus; do
  dpkg -s "$package" >/dev/null 2>&1 || need_packages+=("$package")
done
if ((${#need_packages[@]})); then
  log "installing ${need_packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}"
fi

export SECKILL_TEST_POSTGRES_URL="${SECKILL_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting PostgreSQL"
  for version in /etc/postgresql/*; do
    pg_ctlcluster --skip-systemctl-redirect "$(basename "$version")" main start || true
  done
  for _ in $(seq 1 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432; the tests need it" >&2; exit 1; }

export SECKILL_TEST_REDIS_URL="${SECKILL_TEST_REDIS_URL:-redis://127.0.0.1:6379}"
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 40); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.25; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { echo "Redis is not reachable on 127.0.0.1:6379; the tests need it" >&2; exit 1; }

# The Kafka-protocol broker: tansu 0.6, built once (about 18 minutes cold) and reused, with SQLite storage in a
# clean folder of its own (it reads .env and STORAGE_ENGINE from where it starts), stopped when the tests end.
TANSU="${SECKILL_TEST_TANSU:-$HOME/.cargo/bin/tansu}"
if [[ ! -x "$TANSU" ]]; then
  log "installing tansu 0.6.0 (once; about 18 minutes)"
  cargo install tansu --version 0.6.0 --locked --no-default-features --features libsql
fi
export SECKILL_TEST_TANSU="$TANSU"
broker_dir="$(mktemp -d)"
broker_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
log "starting tansu on 127.0.0.1:$broker_port"
(cd "$broker_dir" && exec env -u STORAGE_ENGINE "$TANSU" broker \
  --listener-url "tcp://127.0.0.1:$broker_port" --advertised-listener-url "tcp://127.0.0.1:$broker_port" \
  --storage-engine sqlite://broker.db >broker.log 2>&1) &
broker_pid=$!
trap 'kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; rm -rf "$broker_dir"' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null && break; sleep 0.1; done
(exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null \
  || { echo "tansu did not start on 127.0.0.1:$broker_port:" >&2; cat "$broker_dir/broker.log" >&2; exit 1; }
export SECKILL_TEST_KAFKA_BROKERS="127.0.0.1:$broker_port"

# schemathesis fuzzes the service against its OpenAPI document (tests/contract.rs): an exact version, in a virtualenv
# of its own that later runs reuse (reinstalled only when the pin changes), named to the test by its executable.
SCHEMATHESIS_VERSION=4.32.5
schemathesis_venv="${SECKILL_TEST_SCHEMATHESIS_VENV:-$HOME/.cache/seckill/schemathesis}"
if [[ "$("$schemathesis_venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]]; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $schemathesis_venv"
  python3 -m venv --clear "$schemathesis_venv"
  "$schemathesis_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export SECKILL_TEST_SCHEMATHESIS="$schemathesis_venv/bin/schemathesis"

# The crowd tests hold a few thousand sockets open at once, and the live test ten thousand WebSockets.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log "promtool: the operator files under deploy/"
promtool check rules deploy/prometheus/alerts.yml
promtool check config deploy/prometheus/prometheus.yml

log "cargo test"
cargo test --locked --features kafka --lib --bins --tests "$@"
