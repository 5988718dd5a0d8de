#!/usr/bin/env bash
# `make bench`: builds the ledger service and the load generator (release), starts the
# ledger on free loopback ports against Postgres and Redis, runs every loadgen scenario
# that exists at a few concurrency levels, stops the service with SIGTERM, prints the
# results table and writes it, with the machine it ran on, to docs/benchmarks.md.
#
# Knobs (environment):
#   BENCH_DURATION_SECONDS  measured seconds per run          (default 10, 1..600)
#   BENCH_WARMUP_SECONDS    unmeasured warm-up per run        (default 2, 0..300)
#   BENCH_CONCURRENCY       concurrency levels, space-separated (default "1 16 64")
#   BENCH_CONNECTIONS       HTTP/2 connections per run, at most one per worker (default 4)
#   BENCH_READY_SECONDS     how long the service may take to answer health (default 90)
#   BENCH_OUTPUT            where the report goes (default docs/benchmarks.md)
#   BENCH_EVENTS_PRODUCERS  events-relay: producer tasks (default 8, 1..1024)
#   BENCH_EVENTS_PER_TX     events-relay: events per producer transaction, space-separated,
#                           one run each (default "1 10")
#   BENCH_NOTIFY_PRODUCERS  notification-throughput: events in flight (default 64, 1..1024)
#   BENCH_LEDGER_BATCHES    ledger-transfers: transfers per call, space-separated, one run
#                           each at concurrency 16 (default "1 100 1000")
#   BENCH_EOD_LOANS         ledger-eod: active loans before each timed end of day,
#                           space-separated, ascending (default "10000 100000": the
#                           issue's sizes; booking 100,000 loans takes minutes)
# Postgres/Redis: scripts/dev-deps.sh when present (MICROLOAN_PG_URL, REDIS_URL), else
# DATABASE_URL / REDIS_URL, else the local servers on 5432 and 6379.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() {
  echo "bench: $*" >&2
  exit 1
}

# An integer within bounds, or stop with the variable's name.
bounded() {
  local name=$1 value=$2 min=$3 max=$4
  [[ $value =~ ^[0-9]+$ ]] && ((10#$value >= min && 10#$value <= max)) ||
    die "$name must be an integer in $min..$max, got '$value'"
  echo $((10#$value))
}

duration=$(bounded BENCH_DURATION_SECONDS "${BENCH_DURATION_SECONDS:-10}" 1 600)
warmup=$(bounded BENCH_WARMUP_SECONDS "${BENCH_WARMUP_SECONDS:-2}" 0 300)
connections=$(bounded BENCH_CONNECTIONS "${BENCH_CONNECTIONS:-4}" 1 256)
ready_seconds=$(bounded BENCH_READY_SECONDS "${BENCH_READY_SECONDS:-90}" 1 600)
read -r -a levels <<<"${BENCH_CONCURRENCY:-1 16 64}"
((${#levels[@]} > 0)) || die "BENCH_CONCURRENCY is empty"
for i in "${!levels[@]}"; do
  levels[i]=$(bounded BENCH_CONCURRENCY "${levels[i]}" 1 1024)
done
output=${BENCH_OUTPUT:-docs/benchmarks.md}
events_producers=$(bounded BENCH_EVENTS_PRODUCERS "${BENCH_EVENTS_PRODUCERS:-8}" 1 1024)
notify_producers=$(bounded BENCH_NOTIFY_PRODUCERS "${BENCH_NOTIFY_PRODUCERS:-64}" 1 1024)
read -r -a events_per_tx <<<"${BENCH_EVENTS_PER_TX:-1 10}"
for i in "${!events_per_tx[@]}"; do
  events_per_tx[i]=$(bounded BENCH_EVENTS_PER_TX "${events_per_tx[i]}" 1 1000)
done
read -r -a ledger_batches <<<"${BENCH_LEDGER_BATCHES:-1 100 1000}"
for i in "${!ledger_batches[@]}"; do
  ledger_batches[i]=$(bounded BENCH_LEDGER_BATCHES "${ledger_batches[i]}" 1 1000)
done
read -r -a eod_loans <<<"${BENCH_EOD_LOANS:-10000 100000}"
for i in "${!eod_loans[@]}"; do
  eod_loans[i]=$(bounded BENCH_EOD_LOANS "${eod_loans[i]}" 1 1000000)
done
# Scenarios that need nothing but a running service; later ones are added here.
scenarios=(health)

# Postgres, Redis and the dev secrets: the shared dev scripts when they exist.
for helper in scripts/dev-env.sh scripts/dev-deps.sh; do
  if [[ -f $helper ]]; then
    # shellcheck source=/dev/null
    source "$helper"
  fi
done
set -euo pipefail
cd "$root"
# Keep whatever EXIT trap the helpers installed (e.g. stopping a project-local
# Postgres) and run it after ours.
previous_exit_trap=
if [[ -n $(trap -p EXIT) ]]; then
  eval "set -- $(trap -p EXIT)"
  previous_exit_trap=$3
fi

# `url` with its database replaced by `db` (query string kept).
with_database() {
  local url=$1 db=$2 base query=
  base=${url%%\?*}
  [[ $base != "$url" ]] && query="?${url#*\?}"
  [[ ${base#*://} == */* ]] && base=${base%/*}
  echo "$base/$db$query"
}

pg_url=${MICROLOAN_PG_URL:-${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}}
[[ $pg_url =~ ^postgres(ql)?:// ]] || die "the Postgres URL must start with postgres:// (MICROLOAN_PG_URL or DATABASE_URL)"
database_url=$(with_database "$pg_url" microloan_bench_ledger)
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
jwt_secret=${AUTH_JWT_SECRET:-microloan-bench-only-dev-secret-0123456789abcdef}
((${#jwt_secret} >= 32)) || die "AUTH_JWT_SECRET must be at least 32 bytes"

echo "bench: building the services and loadgen (release; this takes a while on a small machine)"
cargo build --release --bin ledger --bin scoring --bin account --bin loadgen
target_dir=${CARGO_TARGET_DIR:-$root/target}
ledger_bin=$target_dir/release/ledger
loadgen_bin=$target_dir/release/loadgen
[[ -x $ledger_bin && -x $loadgen_bin ]] || die "release binaries not found under $target_dir/release"

results=$target_dir/bench
mkdir -p "$results"
rm -f "$results"/*.json "$results"/ledger.log

# A port nothing listens on right now (checked by connecting to it).
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  die "no free port found"
}
grpc_port=$(free_port)
admin_port=$(free_port)
while [[ $admin_port == "$grpc_port" ]]; do admin_port=$(free_port); done
target=http://127.0.0.1:$grpc_port

ledger_pid=
ledger_status=
tmp=
stop_ledger() {
  [[ -n $ledger_pid ]] || return 0
  if kill -0 "$ledger_pid" 2>/dev/null; then
    kill -TERM "$ledger_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$ledger_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$ledger_pid" 2>/dev/null; then
      echo "bench: ledger did not stop within 30 s of SIGTERM; killing it" >&2
      kill -KILL "$ledger_pid" 2>/dev/null || true
    fi
  fi
  ledger_status=0
  wait "$ledger_pid" 2>/dev/null || ledger_status=$?
  ledger_pid=
}
scoring_pid=
stop_scoring() {
  [[ -n $scoring_pid ]] || return 0
  kill -TERM "$scoring_pid" 2>/dev/null || true
  for _ in $(seq 1 300); do
    kill -0 "$scoring_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$scoring_pid" 2>/dev/null || true
  wait "$scoring_pid" 2>/dev/null || true
  scoring_pid=
}
# The account section's three processes (account, scoring, ledger), stopped in turn.
account_pids=()
stop_account_stack() {
  local pid
  for pid in "${account_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${account_pids[@]}"; do
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  account_pids=()
}
cleanup() {
  local status=$?
  stop_ledger
  stop_scoring
  stop_account_stack
  [[ -n $tmp && -f $tmp ]] && rm -f "$tmp"
  if [[ -n $previous_exit_trap ]]; then
    eval "$previous_exit_trap" || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The ledger's database starts empty each run (the ledger makes it again), so the
# ledger-eod book holds exactly the loans this run booked.
if command -v psql >/dev/null 2>&1; then
  psql -q "$pg_url" -c 'DROP DATABASE IF EXISTS microloan_bench_ledger WITH (FORCE)' >/dev/null 2>&1 ||
    echo "bench: warning: could not drop microloan_bench_ledger; the ledger scenarios run on the book left from earlier runs" >&2
fi
echo "bench: starting ledger on $target (log: $results/ledger.log)"
# OTLP export is left off so the numbers measure the service, not a collector.
env -u OTEL_EXPORTER_OTLP_ENDPOINT \
  LISTEN_ADDR="127.0.0.1:$grpc_port" \
  ADMIN_LISTEN_ADDR="127.0.0.1:$admin_port" \
  DATABASE_URL="$database_url" \
  REDIS_URL="$redis_url" \
  REDIS_KEY_PREFIX=bench: \
  AUTH_JWT_SECRET="$jwt_secret" \
  REQUEST_TIMEOUT_SECONDS=600 \
  RUST_LOG=warn \
  "$ledger_bin" >"$results/ledger.log" 2>&1 &
ledger_pid=$!

ready_by=$((SECONDS + ready_seconds))
until "$loadgen_bin" --scenario health --target "$target" --requests 1 --warmup-seconds 0 \
  --concurrency 1 --connections 1 --timeout-ms 1000 --format json >/dev/null 2>&1; do
  if ! kill -0 "$ledger_pid" 2>/dev/null; then
    tail -n 30 "$results/ledger.log" >&2 || true
    die "the ledger exited before answering health (log above)"
  fi
  ((SECONDS < ready_by)) || {
    tail -n 30 "$results/ledger.log" >&2 || true
    die "the ledger did not answer health within ${ready_seconds} s"
  }
  sleep 0.5
done
echo "bench: ledger is serving"

files=()
commands=()
for scenario in "${scenarios[@]}"; do
  for concurrency in "${levels[@]}"; do
    conns=$((concurrency < connections ? concurrency : connections))
    file=$results/$scenario-c$concurrency.json
    args=(--scenario "$scenario" --concurrency "$concurrency" --connections "$conns"
      --warmup-seconds "$warmup" --duration-seconds "$duration")
    "$loadgen_bin" "${args[@]}" --target "$target" --json "$file"
    files+=("$file")
    commands+=("loadgen ${args[*]} --target $target")
  done
done

# The ledger's own RPCs (issue 8), with a service token loadgen mints from the secret the
# ledger runs with: transfers at each batch size over 16 connections, end of day over a
# growing book (fewer loans first), then drawdowns across 1,000 customers.
for batch in "${ledger_batches[@]}"; do
  file=$results/ledger-transfers-x$batch.json
  args=(--scenario ledger-transfers --transfers-per-call "$batch" --concurrency 16 --connections 16
    --warmup-seconds "$warmup" --duration-seconds "$duration" --timeout-ms 30000)
  LOADGEN_JWT_SECRET="$jwt_secret" "$loadgen_bin" "${args[@]}" --target "$target" --json "$file"
  files+=("$file")
  commands+=("loadgen ${args[*]} --target $target")
done
for loans in "${eod_loans[@]}"; do
  file=$results/ledger-eod-$loans.json
  args=(--scenario ledger-eod --eod-loans "$loans" --timeout-ms 600000)
  LOADGEN_JWT_SECRET="$jwt_secret" "$loadgen_bin" "${args[@]}" --target "$target" --json "$file"
  files+=("$file")
  commands+=("loadgen ${args[*]} --target $target")
done
for scenario in ledger-disburse ledger-repay; do
  file=$results/$scenario.json
  args=(--scenario "$scenario" --concurrency 16 --connections 16
    --warmup-seconds "$warmup" --duration-seconds "$duration" --timeout-ms 30000)
  LOADGEN_JWT_SECRET="$jwt_secret" "$loadgen_bin" "${args[@]}" --target "$target" --json "$file"
  files+=("$file")
  commands+=("loadgen ${args[*]} --target $target")
done

# Postgres alone, for scale: pgbench single-row INSERT tps (one durable commit per
# row) at 16 clients on a scratch database, while the ledger idles.
pg_baseline=
if command -v pgbench >/dev/null 2>&1 && command -v psql >/dev/null 2>&1; then
  pgbench_url=$(with_database "$pg_url" microloan_bench_pgbench)
  pgbench_script=$(mktemp)
  echo 'INSERT INTO bench_rows (v) VALUES (1);' >"$pgbench_script"
  if psql -q "$pg_url" -c 'DROP DATABASE IF EXISTS microloan_bench_pgbench' -c 'CREATE DATABASE microloan_bench_pgbench' >/dev/null 2>&1 &&
    psql -q "$pgbench_url" -c 'CREATE TABLE bench_rows (id bigserial PRIMARY KEY, v bigint NOT NULL, at timestamptz NOT NULL DEFAULT now())' >/dev/null 2>&1; then
    pg_line=$(pgbench -n -f "$pgbench_script" -c 16 -j 2 -T "$duration" "$pgbench_url" 2>/dev/null |
      grep -E '^tps = ' | head -n 1) || true
    [[ -n $pg_line ]] && pg_baseline="- \`pgbench -n -f insert.sql -c 16 -j 2 -T $duration\` (\`INSERT INTO bench_rows (v) VALUES (1)\`, one commit per row): \`$pg_line\`"
  fi
  psql -q "$pg_url" -c 'DROP DATABASE IF EXISTS microloan_bench_pgbench' >/dev/null 2>&1 || true
  rm -f "$pgbench_script"
fi
[[ -n $pg_baseline ]] || pg_baseline="- not measured: pgbench or psql is not installed, or the scratch database could not be made"

stop_ledger
[[ $ledger_status == 0 ]] || echo "bench: warning: ledger exited with status $ledger_status after SIGTERM" >&2

# Scoring (issue 9), its own process on a fresh database after the ledger stopped:
# the health ceiling and Evaluate at concurrency 16 in the same run (Evaluate first
# loads a 100,000-party graph through IngestSignals), then IngestSignals in batches of
# 1,000 at concurrency 4. The load average is recorded beside the rows.
scoring_port=$(free_port)
scoring_admin_port=$(free_port)
scoring_target=http://127.0.0.1:$scoring_port
if command -v psql >/dev/null 2>&1; then
  psql -q "$pg_url" -c 'DROP DATABASE IF EXISTS microloan_bench_scoring WITH (FORCE)' >/dev/null 2>&1 || true
fi
env -u OTEL_EXPORTER_OTLP_ENDPOINT \
  LISTEN_ADDR="127.0.0.1:$scoring_port" \
  ADMIN_LISTEN_ADDR="127.0.0.1:$scoring_admin_port" \
  DATABASE_URL="$(with_database "$pg_url" microloan_bench_scoring)" \
  REDIS_URL="$redis_url" \
  REDIS_KEY_PREFIX=bench-scoring: \
  AUTH_JWT_SECRET="$jwt_secret" \
  RUST_LOG=warn \
  "$target_dir/release/scoring" >"$results/scoring.log" 2>&1 &
scoring_pid=$!
ready_by=$((SECONDS + ready_seconds))
until "$loadgen_bin" --scenario health --target "$scoring_target" --requests 1 --warmup-seconds 0 \
  --concurrency 1 --connections 1 --timeout-ms 1000 --format json >/dev/null 2>&1; do
  kill -0 "$scoring_pid" 2>/dev/null || die "scoring exited before answering health (see $results/scoring.log)"
  ((SECONDS < ready_by)) || die "scoring did not answer health within ${ready_seconds} s"
  sleep 0.5
done
scoring_load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) || true
for scoring_scenario in health scoring-evaluate; do
  file=$results/scoring-$scoring_scenario-c16.json
  args=(--scenario "$scoring_scenario" --concurrency 16 --connections 4
    --warmup-seconds "$warmup" --duration-seconds "$duration" --timeout-ms 60000)
  LOADGEN_JWT_SECRET="$jwt_secret" "$loadgen_bin" "${args[@]}" --target "$scoring_target" --json "$file"
  # Tell the scoring process's ceiling apart from the ledger's in the table.
  sed -i 's/"scenario": "health"/"scenario": "health (scoring, ceiling)"/' "$file"
  files+=("$file")
  commands+=("loadgen ${args[*]} --target $scoring_target  # scoring")
done
file=$results/scoring-ingest.json
args=(--scenario scoring-ingest --concurrency 4 --connections 4
  --warmup-seconds "$warmup" --duration-seconds "$duration" --timeout-ms 60000)
LOADGEN_JWT_SECRET="$jwt_secret" "$loadgen_bin" "${args[@]}" --target "$scoring_target" --json "$file"
files+=("$file")
commands+=("loadgen ${args[*]} --target $scoring_target  # scoring")
scoring_load="$scoring_load -> $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" || true
stop_scoring

# Account (issue 10): account with its real peers, scoring and the ledger, each its own
# process on a fresh database (microloan_bench_account, _account_scoring,
# _account_ledger), after the scoring rows. The health ceiling of the account process
# first, then GetCreditLine on cache hits at concurrency 16 and Borrow (through scoring's
# Evaluate and the ledger's Disburse) at concurrency 32. Each scenario first onboards
# 400 customers of a seeded population and applies for their lines (replayed by the
# second run: the request ids are the population's).
declare -A account_ports=() account_admin_ports=()
for svc in account scoring ledger; do
  account_ports[$svc]=$(free_port)
  account_admin_ports[$svc]=$(free_port)
done
account_target=http://127.0.0.1:${account_ports[account]}
notification_closed_port=$(free_port)
# Fresh Redis keys too: scoring's velocity counters (per device, phone, national id)
# would otherwise hold the previous run's applications by the same population and send
# them to review within the hour.
if command -v redis-cli >/dev/null 2>&1 && [[ $redis_url =~ ^redis://([^:/@]+)(:([0-9]+))?/?$ ]]; then
  redis-cli -h "${BASH_REMATCH[1]}" -p "${BASH_REMATCH[3]:-6379}" --scan --pattern 'bench-account:*' |
    xargs -r -n 500 redis-cli -h "${BASH_REMATCH[1]}" -p "${BASH_REMATCH[3]:-6379}" DEL >/dev/null 2>&1 || true
fi
for svc in account scoring ledger; do
  db=microloan_bench_account
  [[ $svc == account ]] || db=microloan_bench_account_$svc
  if command -v psql >/dev/null 2>&1; then
    psql -q "$pg_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  # Notification is not started: nothing these scenarios call reaches it.
  env -u OTEL_EXPORTER_OTLP_ENDPOINT \
    LISTEN_ADDR="127.0.0.1:${account_ports[$svc]}" \
    ADMIN_LISTEN_ADDR="127.0.0.1:${account_admin_ports[$svc]}" \
    DATABASE_URL="$(with_database "$pg_url" "$db")" \
    REDIS_URL="$redis_url" \
    REDIS_KEY_PREFIX=bench-account: \
    AUTH_JWT_SECRET="$jwt_secret" \
    ACCOUNT_URL="$account_target" \
    SCORING_URL="http://127.0.0.1:${account_ports[scoring]}" \
    LEDGER_URL="http://127.0.0.1:${account_ports[ledger]}" \
    NOTIFICATION_URL="http://127.0.0.1:$notification_closed_port" \
    SCORING_PAGERANK_REFRESH_SECONDS=2 \
    RUST_LOG=warn \
    "$target_dir/release/$svc" >"$results/account-$svc.log" 2>&1 &
  account_pids+=($!)
done
ready_by=$((SECONDS + ready_seconds))
for svc in ledger scoring account; do
  until "$loadgen_bin" --scenario health --target "http://127.0.0.1:${account_ports[$svc]}" --requests 1 \
    --warmup-seconds 0 --concurrency 1 --connections 1 --timeout-ms 1000 --format json >/dev/null 2>&1; do
    ((SECONDS < ready_by)) || die "$svc (account section) did not answer health within ${ready_seconds} s (see $results/account-$svc.log)"
    sleep 0.5
  done
done
account_load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) || true
for account_scenario in "health 16" "account-credit-line 16" "account-borrow 32"; do
  read -r name concurrency <<<"$account_scenario"
  file=$results/account-$name-c$concurrency.json
  args=(--scenario "$name" --concurrency "$concurrency" --connections 4
    --warmup-seconds "$warmup" --duration-seconds "$duration" --timeout-ms 30000)
  LOADGEN_JWT_SECRET="$jwt_secret" "$loadgen_bin" "${args[@]}" --target "$account_target" \
    --scoring-target "http://127.0.0.1:${account_ports[scoring]}" \
    --scoring-admin "127.0.0.1:${account_admin_ports[scoring]}" --json "$file"
  # Tell the account process's ceiling apart from the ledger's in the table.
  sed -i 's/"scenario": "health"/"scenario": "health (account, ceiling)"/' "$file"
  files+=("$file")
  commands+=("loadgen ${args[*]} --target $account_target --scoring-target http://127.0.0.1:${account_ports[scoring]}  # account")
done
account_load="$account_load -> $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)" || true
stop_account_stack

# events-relay: the outbox -> relay -> stream -> consumer pipeline, run by loadgen in its
# own process (no service needed), after the ledger stopped so it has the machine.
for per_tx in "${events_per_tx[@]}"; do
  file=$results/events-relay-x$per_tx.json
  args=(--scenario events-relay --concurrency "$events_producers" --events-per-transaction "$per_tx"
    --warmup-seconds "$warmup" --duration-seconds "$duration")
  LOADGEN_DATABASE_URL="$pg_url" LOADGEN_REDIS_URL="$redis_url" RUST_LOG=warn \
    "$loadgen_bin" "${args[@]}" --json "$file"
  files+=("$file")
  commands+=("loadgen ${args[*]}")
done

# notification-throughput: events on the stream -> notices -> PUSH webhooks to a local
# receiver, the notification service in loadgen's process (docs/notification.md).
file=$results/notification-throughput.json
args=(--scenario notification-throughput --concurrency "$notify_producers"
  --warmup-seconds "$warmup" --duration-seconds "$duration")
LOADGEN_DATABASE_URL="$pg_url" LOADGEN_REDIS_URL="$redis_url" RUST_LOG=warn \
  "$loadgen_bin" "${args[@]}" --json "$file"
files+=("$file")
commands+=("loadgen ${args[*]}")

# Redis alone, from the same run, when redis-benchmark is installed: what one XADD (the
# relay's command, same MAXLEN) and one SET cost on this machine, for scale.
redis_baseline=
if command -v redis-benchmark >/dev/null 2>&1 &&
  [[ $redis_url =~ ^redis://([^:/@]+)(:([0-9]+))?/?$ ]]; then
  redis_host=${BASH_REMATCH[1]}
  redis_port=${BASH_REMATCH[3]:-6379}
  rb_key="bench:redis-benchmark:{events}"
  rb=(redis-benchmark -h "$redis_host" -p "$redis_port" -c 16 -n 200000 -q)
  set_line=$("${rb[@]}" -t set 2>/dev/null | tr '\r' '\n' | grep -E '^SET:' | tail -n 1) || true
  xadd_line=$("${rb[@]}" XADD "$rb_key" MAXLEN '~' 1000000 '*' event 0123456789abcdef0123456789abcdef 2>/dev/null |
    tr '\r' '\n' | grep -E '^XADD' | tail -n 1) || true
  redis-cli -h "$redis_host" -p "$redis_port" DEL "$rb_key" >/dev/null 2>&1 || true
  if [[ -n $set_line || -n $xadd_line ]]; then
    redis_baseline=$(printf -- '- `%s`\n' "${xadd_line:-XADD: not measured}" "${set_line:-SET: not measured}")
  fi
fi
[[ -n $redis_baseline ]] || redis_baseline="- not measured: redis-benchmark is not installed, or REDIS_URL carries credentials or a database number"

# The report.
cpu_model=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//') || true
memory=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo 2>/dev/null) || true
commit=$(git rev-parse --short HEAD 2>/dev/null) || commit="none (no commit yet)"
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then
  commit="$commit, with uncommitted changes"
fi
when=$(date -u '+%Y-%m-%d %H:%M UTC')
table_md=$("$loadgen_bin" report --format markdown "${files[@]}")
table_text=$("$loadgen_bin" report --format table "${files[@]}")

tmp=$(mktemp "$output.XXXXXX")
{
  cat <<EOF
# Benchmarks

Generated by \`make bench\` (\`scripts/bench.sh\`) on $when. Rerun it to refresh this
page; edits by hand are overwritten.

## What is measured

\`loadgen\` (\`tests/loadgen\`) drives closed-loop load against the **ledger** service
(release build) on loopback, plaintext HTTP/2, with the service's real dependencies
(Postgres database \`microloan_bench_ledger\`, Redis keys under \`bench:\`).

| scenario | call | what it tells |
| :--- | :--- | :--- |
| \`health\` | \`grpc.health.v1.Health/Check\` | The gRPC ceiling: the full server stack every RPC goes through (HTTP/2, tonic, the auth and metrics/tracing layers, concurrency limits) with no database or Redis work. No RPC of a service is faster than this on the same machine; compare every later scenario with it. |
| \`events-relay\` | outbox → relay → Redis Stream → consumer group (libs/events, docs/events.md) | Not an RPC: \`concurrency\` producer tasks in the loadgen process each commit transactions of \`N/tx\` events (\`append\`; Postgres database \`microloan_bench_events\`, made afresh) while the relay and one consumer group run beside them as every service runs them (default \`EVENTS_*\` knobs, group \`loadgen\`). \`requests\` and throughput count events handled in the measured window; the latencies run from a producer's \`COMMIT\` returning to the handler starting on that event, for every event committed in the window. The handler does nothing itself, so this is the pipeline's own cost: the relay's batch transaction and \`XADD\`, \`XREADGROUP\`, the consumer's dedupe insert and commit, \`XACK\`. |
| \`notification-throughput\` | Redis Stream → notification consumer → IN_APP + PUSH notices → signed webhook (services/notification, docs/notification.md) | Not an RPC: the notification service runs in the loadgen process on a fresh database \`microloan_bench_notification\`, with a local HTTP receiver as the push provider. \`concurrency\` producers each \`XADD\` one \`InstallmentDueSoon\` event and wait for its webhook (closed loop). Throughput counts webhooks delivered in the window; the latencies run from the \`XADD\` returning to the provider receiving the webhook. Target (issue 11): at least 2,000 notices/s with p99 under 200 ms. |
| \`ledger-transfers (N/call, transfers/s)\` | \`LedgerService/CreateTransfers\` with N transfers per call | 16 workers on 16 connections, each moving 1.00 CNY back and forth between its own two platform \`FUNDING\` sub-accounts (no balance flags, no row shared between workers). \`requests\` and throughput count **transfers**; the latencies are per **call**. Compare with the pgbench line below. Target (issue 8): batched ≥ 2× pgbench's single-row INSERT tps. |
| \`ledger-disburse (1000 customers)\` | \`LedgerService/Disburse\` | 1,000 credit lines (200,000 CNY each) opened first, then 16 workers draw 100–1,000 CNY loans (10 months, equal principal), each worker on its own customers in turn; bounded well before a line runs out. |
| \`ledger-repay (1000 customers x 3 loans)\` | \`LedgerService/Repay\` | 1,000 new credit lines (200,000 CNY each) opened first and 3,000 loans booked on them through \`Disburse\` (3 per customer), then 16 workers repay 1.00 CNY at a time, worker i on the loans of customers i, i + 16, ... (no line shared between workers); at most 50 calls per loan, so no loan is paid off in a run. The path of every instalment the demo and \`AccountService.Repay\` pay. |
| \`scoring-evaluate (...)\` | \`ScoringService/Evaluate\` (CREDIT_LINE_APPLICATION) | Against the **scoring** service (its own process and database \`microloan_bench_scoring\`, after the ledger stopped). First a 100,000-party graph is loaded through IngestSignals (1,000 applicants with 50 CONTACT edges each, one edge per other party, 2% known defaulters), then 16 workers evaluate random applicants: features over the 2-hop neighbourhood, the scorecard, the eight fraud rules, the stored decision. Compare with the \`health\` row just before it (same scoring process, same run). Target (issue 9): ≥ 50% of that ceiling, p99 under 5 ms. |
| \`scoring-ingest (1000/batch, signals/s)\` | \`ScoringService/IngestSignals\`, one batch of 1,000 CONTACT edges per call | 4 workers; \`requests\` and throughput count **signals**, latencies are per batch. Target (issue 9): ≥ 20,000 signals/s. |
| \`account-credit-line (cache hits, N customers)\` | \`AccountService/GetCreditLine\` | Against the **account** service with its real peers (account, scoring and the ledger each their own process on fresh databases \`microloan_bench_account\`, \`_account_scoring\`, \`_account_ledger\`, after the scoring rows). 400 people of a seeded synthetic population are onboarded first as the e2e suite does it (CreateCustomer, their signals through IngestSignals, ApplyForCreditLine with their own token); onboarding waits for a PageRank refresh of the ingested graph before anyone applies (scoring refreshes every 2 s here), so drawdowns are scored on the graph the applications saw; the approved ones (N) are read once each to fill the Redis cache, then 16 workers read their lines in turn, each call with that customer's token: every call is a cache hit (token check, one \`HMGET\`, decode). Compare with the \`health (account, ceiling)\` row just before it (same process, same run). Target (issue 10): ≥ 60% of that ceiling. |
| \`account-borrow (100 CNY, N customers)\` | \`AccountService/Borrow\` | The same stack and customers: 32 workers borrow 100 CNY over 5 months for the customers in turn (their own tokens, a new request id each call, no device id: the proto's unknown): account's checks (customer, line, idempotency, rate limits, cached headroom), scoring's \`Evaluate(DRAWDOWN)\`, the ledger's \`Disburse\`, then account's drawdown record, response and cache update. Target (issue 10): p99 under 50 ms on this machine. |
| \`ledger-eod (N loans; loans/s, wall time)\` | \`LedgerService/RunEndOfDay\` | Loans are booked (16 concurrent \`Disburse\`, 10 per customer) until the book holds the wanted count of active loans, then one end of day for the current business date is timed. One call: \`requests\` = loans processed, throughput = loans/s, every latency column = its wall time. Target (issue 8): under 10 s for 100,000 loans. |

Each row is one run: \`concurrency\` workers spread over \`connections\` HTTP/2
connections (for \`events-relay\`: producers, each with its own Postgres connection),
${warmup} s of unmeasured warm-up, then ${duration} s measured.

## Machine

| | |
| :--- | :--- |
| CPUs (\`nproc\`) | $(nproc) |
| CPU model | ${cpu_model:-unknown} |
| memory | ${memory:-unknown} |
| kernel | $(uname -sr) |
| rustc | $(rustc --version) |
| git commit | $commit |

## Command

\`\`\`sh
make bench    # BENCH_DURATION_SECONDS=$duration BENCH_WARMUP_SECONDS=$warmup BENCH_CONCURRENCY="${levels[*]}" BENCH_CONNECTIONS=$connections
\`\`\`

which runs, against a ledger started on a free port:

\`\`\`sh
EOF
  printf '%s\n' "${commands[@]}"
  cat <<EOF
\`\`\`

## Results

Latencies in milliseconds, successful calls only; throughput is successful calls per
second over the measured window.

$table_md

Load average (1, 5, 15 min) at the start and the end of the scoring rows: ${scoring_load:-not read};
of the account rows: ${account_load:-not read}.

Redis alone on the same machine in the same run (\`redis-benchmark -c 16 -n 200000\`:
one \`XADD\` per request to one stream with the relay's \`MAXLEN ~\`, and \`SET\`):

$redis_baseline

Postgres alone on the same machine in the same run (16 clients, single-row INSERT into a
scratch database, one commit per row; what \`ledger-transfers\` is compared with):

$pg_baseline

## How to read it

- **Closed loop.** Each worker sends its next call only when the previous one has
  answered, so throughput ≈ concurrency ÷ mean latency (Little's law). Concurrency 1 is
  the bare round trip; higher levels show where the server saturates: throughput
  flattens and latency grows by the time calls wait in queues. A closed loop slows down
  with the server, so it does not show how latency would explode under a fixed arrival
  rate above capacity (coordinated omission); read the tail columns as "under this much
  concurrency", not "at this request rate".
- **One small box.** The load generator runs on the same $(nproc)-core machine as the
  service and competes with it for CPU; for a call as cheap as a health check the
  client's HTTP/2 and protobuf work costs about as much as the server's, so the service
  alone would do more. Other processes on the machine (builds, Postgres, Redis) add
  noise. Use these numbers to compare scenarios and commits on the same machine, not as
  production capacity.
- **Errors** are counted by gRPC code and kept out of the latency columns; a run with
  errors is listed under the table. p99.9 rests on few samples when throughput is low.
- **events-relay** rows are events, not calls: with 1 event per transaction the
  producers' commit rate is the limit (each commit waits for its WAL flush), and the
  relay and consumer keep up with it; with 10 per transaction the pipeline itself is
  measured. The loadgen process holds producers, relay and consumer together and
  competes with Postgres and Redis for the same cores. Target (issue 7): at least
  5,000 events/s with p99 under 50 ms.
- **notification-throughput** rows are webhooks, not calls: each event becomes an IN_APP
  notice (stored) and a PUSH notice delivered to the local receiver; throughput counts
  the webhooks, latency runs from the event's \`XADD\` to the webhook's arrival. The
  notification service, its consumer and workers, the receiver and the producers share
  the loadgen process and the machine's cores with Postgres and Redis. Target (issue
  11): at least 2,000 notices/s with p99 under 200 ms.
- **ledger-transfers** rows count transfers: one call of N transfers is one database
  transaction, so batching spreads the commit (and the gRPC round trip) over N rows;
  compare the batched rows with the pgbench line, measured on the same Postgres while
  the ledger idles. **ledger-eod** sizes come from \`BENCH_EOD_LOANS\` (each run adds
  loans to the same book, so the rows are one book growing); the 100,000-loan row
  needs 100,000 loans booked first (minutes of \`Disburse\` on a small machine; each end
  of day ends with an \`ANALYZE\` of the book, so the booking after the 10,000-loan row
  runs with statistics).
- Loopback only: no network latency, no TLS.
EOF
} >"$tmp"
mv "$tmp" "$output"

echo
echo "$table_text"
echo
echo "bench: wrote $output"
