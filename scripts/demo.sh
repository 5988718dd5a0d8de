#!/usr/bin/env bash
# make demo: the portfolio simulator (tools/demo, docs/demo.md) against the stack
# `make run` brought up on the ports of scripts/dev-env.sh. If nothing answers there, it
# starts one itself (scripts/run.sh in the background) and stops it at the end.
#
#   DEMO_CUSTOMERS (default 10000)  DEMO_MONTHS (12)  DEMO_SEED (2026)
#   DEMO_CONCURRENCY (32)           DEMO_REPORT_DIR (demo-report)
#   MICROLOAN_RUN_PROFILE (release)  MICROLOAN_RUN_BUILD=0: no build, the binaries as built
#   DEMO_FRESH=1  only when this script starts the stack itself: drop the four dev
#                 databases (account, scoring, ledger, notification) and the dev Redis
#                 keys first, so the book starts empty and the same seed gives the same
#                 figures. Never touches a stack that is already running.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/dev-env.sh
source scripts/dev-env.sh

say() { printf 'demo: %s\n' "$*" >&2; }
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

RUN_PID=""
stop_stack() {
    [[ -n "$RUN_PID" ]] || return 0
    say "stopping the stack this script started (pid $RUN_PID)"
    kill -TERM -- "-$RUN_PID" 2>/dev/null || kill -TERM "$RUN_PID" 2>/dev/null || true
    wait "$RUN_PID" 2>/dev/null || true
    RUN_PID=""
}
trap stop_stack EXIT

# The demo binary is built with the stack's profile (scripts/run.sh: release unless
# MICROLOAN_RUN_PROFILE=debug): one build of the workspace serves both.
PROFILE="${MICROLOAN_RUN_PROFILE:-release}"
build_args=(--workspace --bins)
[[ "$PROFILE" == release ]] && build_args+=(--release)

answering=0
for port in "$ACCOUNT_PORT" "$SCORING_PORT" "$LEDGER_PORT" "$NOTIFICATION_PORT"; do
    port_open "$port" && answering=$((answering + 1))
done

if ((answering == 4)); then
    say "using the running stack on $ACCOUNT_PORT-$NOTIFICATION_PORT"
    [[ "${MICROLOAN_RUN_BUILD:-1}" == 1 ]] && cargo build "${build_args[@]}"
elif ((answering == 0)); then
    if [[ "${DEMO_FRESH:-0}" == 1 ]]; then
        # shellcheck source=scripts/dev-deps.sh
        source scripts/dev-deps.sh
        say "DEMO_FRESH=1: dropping the dev databases and Redis keys ($REDIS_KEY_PREFIX*)"
        for db in account scoring ledger notification; do
            psql -q "$MICROLOAN_PG_URL" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >&2
        done
        if command -v redis-cli >/dev/null 2>&1; then
            redis-cli -u "$REDIS_URL" --scan --pattern "${REDIS_KEY_PREFIX}*" \
                | xargs -r -n 500 redis-cli -u "$REDIS_URL" DEL >/dev/null
        fi
    fi
    mkdir -p "$MICROLOAN_DEV_DIR/logs"
    say "nothing answers on $ACCOUNT_PORT-$NOTIFICATION_PORT: starting scripts/run.sh (log .dev/logs/demo-run.log)"
    # Emptied here, not only by the redirect below: that one runs in the child, and the
    # banner check could read the last run's "microloan is up" before it does.
    : >"$MICROLOAN_DEV_DIR/logs/demo-run.log"
    # Its own process group, so that stopping it reaches the four services.
    MICROLOAN_RUN_QUIET=1 setsid scripts/run.sh >"$MICROLOAN_DEV_DIR/logs/demo-run.log" 2>&1 &
    RUN_PID=$!
    deadline=$((SECONDS + 1800)) # the first build of the workspace included
    until grep -q "microloan is up" "$MICROLOAN_DEV_DIR/logs/demo-run.log" 2>/dev/null; do
        kill -0 "$RUN_PID" 2>/dev/null || { RUN_PID=""; say "scripts/run.sh exited; see .dev/logs/demo-run.log"; exit 1; }
        ((SECONDS < deadline)) || { say "the stack did not come up within 1800 s"; exit 1; }
        sleep 0.5
    done
else
    say "only $answering of the four service ports answer: is \`make run\` half up? (ports: scripts/dev-env.sh)"
    exit 1
fi

# run.sh's `cargo build --workspace --bins [--release]` built tools/demo too (one
# feature unification, no second compile of the dependency tree).
"${CARGO_TARGET_DIR:-target}/$PROFILE/demo"
