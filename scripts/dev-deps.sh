#!/usr/bin/env bash
# shellcheck shell=bash
# Postgres and Redis for local runs and tests (DESIGN §10).
#
# Sourced by scripts/run.sh, scripts/test.sh, tests/e2e/smoke.sh and scripts/bench.sh:
#     source scripts/dev-deps.sh      # ensures both, then exports
#       MICROLOAN_PG_URL   a Postgres SERVER url whose database is `postgres`
#                          (services replace the database name with their own)
#       REDIS_URL
# Executed:
#     scripts/dev-deps.sh [start]     ensure both and print the two `export` lines
#     scripts/dev-deps.sh status      say what is found / running
#     scripts/dev-deps.sh stop        stop the project-local servers under .dev/ (only those)
#
# Where they come from, first match wins:
#   1. DATABASE_URL / REDIS_URL from the environment (must answer; the database part of
#      DATABASE_URL is ignored: its server is used);
#   2. the machine's servers on 127.0.0.1:5432 (user postgres, no password) and
#      127.0.0.1:6379;
#   3. project-local servers under .dev/: Postgres (initdb + pg_ctl, trust auth, 127.0.0.1
#      only) on $MICROLOAN_LOCAL_PG_PORT (54329) and Redis on $MICROLOAN_LOCAL_REDIS_PORT
#      (63799), installing the binaries with apt-get when absent. They keep running
#      after the scripts exit (shared by later runs) until `scripts/dev-deps.sh stop`.
# MICROLOAN_FORCE_LOCAL_DEPS=1 skips 1 and 2. Every wait is bounded.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
fi
# shellcheck source=scripts/dev-env.sh
source "$(dirname "${BASH_SOURCE[0]}")/dev-env.sh"

_mldeps_log() { printf 'deps: %s\n' "$*" >&2; }
_mldeps_err() { printf 'deps: error: %s\n' "$*" >&2; }
# A URL with its password hidden, for messages.
_mldeps_mask() { printf '%s' "$1" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#'; }

_mldeps_privileged() {
    if [[ "$(id -u)" == 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        _mldeps_err "need root (or sudo) to run: $*"
        return 1
    fi
}

_MLDEPS_APT_UPDATED=0
_mldeps_apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        _mldeps_err "missing $*; no apt-get here: install them with your package manager"
        return 1
    fi
    _mldeps_log "installing $* with apt-get"
    if [[ "$_MLDEPS_APT_UPDATED" == 0 ]]; then
        _mldeps_privileged env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
        _MLDEPS_APT_UPDATED=1
    fi
    _mldeps_privileged env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >&2
}

_mldeps_need_clients() {
    if ! command -v psql >/dev/null 2>&1 || ! command -v pg_isready >/dev/null 2>&1; then
        _mldeps_apt_install postgresql-client || return 1
    fi
    if ! command -v redis-cli >/dev/null 2>&1; then
        _mldeps_apt_install redis-tools || return 1
    fi
}

_mldeps_pg_answers() {
    PGCONNECT_TIMEOUT=5 pg_isready -q -t 5 -d "$1" >/dev/null 2>&1 \
        && PGCONNECT_TIMEOUT=5 psql "$1" -XAtq -c 'select 1' >/dev/null 2>&1
}

_mldeps_redis_answers() {
    [[ "$(timeout 5 redis-cli -u "$1" ping 2>/dev/null)" == PONG ]]
}

# The directory holding initdb/pg_ctl: PATH first, else the newest Debian-style install.
_mldeps_pg_bindir() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"
        return 0
    fi
    local dir
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
    [[ -n "$dir" && -x "$dir/initdb" && -x "$dir/pg_ctl" ]] || return 1
    printf '%s\n' "$dir"
}

# initdb refuses to run as root: as root, the cluster belongs to the `postgres` user.
_MLDEPS_PG_AS=()
_mldeps_pg_user_setup() {
    _MLDEPS_PG_AS=()
    if [[ "$(id -u)" == 0 ]]; then
        if ! id -u postgres >/dev/null 2>&1; then
            useradd --system --home-dir /nonexistent --shell /usr/sbin/nologin postgres || return 1
        fi
        command -v runuser >/dev/null 2>&1 || { _mldeps_err "runuser (util-linux) is needed"; return 1; }
        _MLDEPS_PG_AS=(runuser -u postgres --)
    fi
}

_mldeps_pg_local_dir() { printf '%s\n' "$MICROLOAN_LOCAL_DEPS_DIR/postgres"; }
_mldeps_redis_local_dir() { printf '%s\n' "$MICROLOAN_LOCAL_DEPS_DIR/redis"; }

# Port of the running project-local cluster (4th line of postmaster.pid), if any.
_mldeps_pg_local_running_port() {
    local data; data="$(_mldeps_pg_local_dir)/data"
    [[ -f "$data/postmaster.pid" ]] || return 1
    local pid; pid="$(sed -n 1p "$data/postmaster.pid")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    sed -n 4p "$data/postmaster.pid"
}

_mldeps_pg_local_start() {
    local dir port bindir
    dir="$(_mldeps_pg_local_dir)"
    port="$MICROLOAN_LOCAL_PG_PORT"
    if ! bindir="$(_mldeps_pg_bindir)"; then
        _mldeps_apt_install postgresql || return 1
        bindir="$(_mldeps_pg_bindir)" || { _mldeps_err "initdb/pg_ctl not found after installing postgresql"; return 1; }
    fi
    _mldeps_pg_user_setup || return 1
    mkdir -p "$dir/run" || return 1
    if [[ "$(id -u)" == 0 ]]; then
        chown -R postgres: "$dir" || return 1
        if ! runuser -u postgres -- test -w "$dir"; then
            _mldeps_err "user postgres cannot write $dir (a parent directory is not searchable);" \
                "set MICROLOAN_LOCAL_DEPS_DIR to a directory it can reach"
            return 1
        fi
    fi
    if [[ ! -s "$dir/data/PG_VERSION" ]]; then
        _mldeps_log "initdb $dir/data ($("$bindir/postgres" --version 2>/dev/null || echo postgres))"
        rm -rf "$dir/data"
        if ! "${_MLDEPS_PG_AS[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust \
            -E UTF8 --no-locale >"$dir/initdb.log" 2>&1; then
            _mldeps_err "initdb failed; see $dir/initdb.log"
            return 1
        fi
    fi
    if _mldeps_pg_local_running_port >/dev/null; then
        return 0
    fi
    _mldeps_log "starting project-local Postgres on 127.0.0.1:$port (log $dir/postgres.log)"
    if ! "${_MLDEPS_PG_AS[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k '$dir/run'" start >/dev/null; then
        _mldeps_err "Postgres did not start; last lines of $dir/postgres.log:"
        tail -n 20 "$dir/postgres.log" >&2 || true
        return 1
    fi
}

_mldeps_redis_local_start() {
    local dir port
    dir="$(_mldeps_redis_local_dir)"
    port="$MICROLOAN_LOCAL_REDIS_PORT"
    if _mldeps_redis_answers "redis://127.0.0.1:$port"; then
        return 0
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        _mldeps_apt_install redis-server || return 1
    fi
    mkdir -p "$dir" || return 1
    _mldeps_log "starting project-local Redis on 127.0.0.1:$port (log $dir/redis.log)"
    # A cache and a bus, never a source of truth (DESIGN §2): no persistence.
    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
        --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly no \
        || { _mldeps_err "redis-server failed; see $dir/redis.log"; return 1; }
    local i
    for ((i = 0; i < 50; i++)); do
        _mldeps_redis_answers "redis://127.0.0.1:$port" && return 0
        sleep 0.2
    done
    _mldeps_err "Redis did not answer on 127.0.0.1:$port within 10 s; see $dir/redis.log"
    return 1
}

# Runs "$@" holding .dev/deps.lock (two scripts may start the local servers at once).
_mldeps_locked() {
    mkdir -p "$MICROLOAN_LOCAL_DEPS_DIR" || return 1
    if ! command -v flock >/dev/null 2>&1; then
        "$@"
        return
    fi
    (
        exec 8>"$MICROLOAN_LOCAL_DEPS_DIR/.deps.lock"
        flock -w 120 8 || { _mldeps_err "timed out waiting for $MICROLOAN_LOCAL_DEPS_DIR/.deps.lock"; exit 1; }
        # fd 8 closed for what "$@" starts: a daemon inheriting it would hold the lock forever
        "$@" 8>&-
    )
}

microloan_deps_ensure() {
    _mldeps_need_clients || return 1
    local force="${MICROLOAN_FORCE_LOCAL_DEPS:-0}" pg_url="" redis_url="" how

    # --- Postgres
    if [[ "$force" != 1 && -n "${DATABASE_URL:-}" ]]; then
        pg_url="$(microloan_pg_url_with_db "$DATABASE_URL" postgres 2>/dev/null)" \
            || { _mldeps_err "DATABASE_URL is not a postgres:// URL"; return 1; }
        if ! _mldeps_pg_answers "$pg_url"; then
            _mldeps_err "DATABASE_URL is set but its server does not answer: $(_mldeps_mask "$pg_url")"
            return 1
        fi
        how="from DATABASE_URL"
    elif [[ "$force" != 1 ]] && _mldeps_pg_answers "postgres://postgres@127.0.0.1:5432/postgres"; then
        pg_url="postgres://postgres@127.0.0.1:5432/postgres"
        how="the machine's server"
    else
        local port
        _mldeps_locked _mldeps_pg_local_start || return 1
        port="$(_mldeps_pg_local_running_port)" || { _mldeps_err "project-local Postgres is not running"; return 1; }
        pg_url="postgres://postgres@127.0.0.1:$port/postgres"
        _mldeps_pg_answers "$pg_url" || { _mldeps_err "project-local Postgres does not answer on $port"; return 1; }
        how="project-local, $(_mldeps_pg_local_dir)"
    fi
    _mldeps_log "Postgres $(_mldeps_mask "$pg_url") ($how)"

    # --- Redis
    if [[ "$force" != 1 && -n "${REDIS_URL:-}" ]]; then
        redis_url="$REDIS_URL"
        if ! _mldeps_redis_answers "$redis_url"; then
            _mldeps_err "REDIS_URL is set but does not answer PING: $(_mldeps_mask "$redis_url")"
            return 1
        fi
        how="from REDIS_URL"
    elif [[ "$force" != 1 ]] && _mldeps_redis_answers "redis://127.0.0.1:6379"; then
        redis_url="redis://127.0.0.1:6379"
        how="the machine's server"
    else
        _mldeps_locked _mldeps_redis_local_start || return 1
        redis_url="redis://127.0.0.1:$MICROLOAN_LOCAL_REDIS_PORT"
        how="project-local, $(_mldeps_redis_local_dir)"
    fi
    _mldeps_log "Redis $(_mldeps_mask "$redis_url") ($how)"

    export MICROLOAN_PG_URL="$pg_url"
    export REDIS_URL="$redis_url"
}

microloan_deps_stop() {
    local dir bindir pid i
    dir="$(_mldeps_pg_local_dir)"
    if _mldeps_pg_local_running_port >/dev/null; then
        bindir="$(_mldeps_pg_bindir)" || { _mldeps_err "pg_ctl not found"; return 1; }
        _mldeps_pg_user_setup || return 1
        _mldeps_log "stopping project-local Postgres ($dir/data)"
        "${_MLDEPS_PG_AS[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || return 1
    else
        _mldeps_log "project-local Postgres: not running"
    fi
    dir="$(_mldeps_redis_local_dir)"
    pid="$(cat "$dir/redis.pid" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        _mldeps_log "stopping project-local Redis (pid $pid)"
        kill -TERM "$pid"
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            _mldeps_log "Redis still up after 10 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/redis.pid"
    else
        _mldeps_log "project-local Redis: not running"
    fi
}

microloan_deps_status() {
    local port pid
    if [[ -n "${DATABASE_URL:-}" ]]; then
        echo "DATABASE_URL: set ($(_mldeps_mask "$DATABASE_URL"))"
    fi
    if [[ -n "${REDIS_URL:-}" ]]; then
        echo "REDIS_URL: set ($(_mldeps_mask "$REDIS_URL"))"
    fi
    if command -v pg_isready >/dev/null 2>&1 \
        && _mldeps_pg_answers "postgres://postgres@127.0.0.1:5432/postgres"; then
        echo "Postgres on 127.0.0.1:5432: answers (user postgres)"
    else
        echo "Postgres on 127.0.0.1:5432: no answer (as user postgres without password)"
    fi
    if command -v redis-cli >/dev/null 2>&1 && _mldeps_redis_answers "redis://127.0.0.1:6379"; then
        echo "Redis on 127.0.0.1:6379: answers"
    else
        echo "Redis on 127.0.0.1:6379: no answer"
    fi
    if port="$(_mldeps_pg_local_running_port)"; then
        echo "project-local Postgres: running on 127.0.0.1:$port ($(_mldeps_pg_local_dir)/data)"
    else
        echo "project-local Postgres: not running"
    fi
    pid="$(cat "$(_mldeps_redis_local_dir)/redis.pid" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        echo "project-local Redis: running (pid $pid)"
    else
        echo "project-local Redis: not running"
    fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    case "${1:-start}" in
        start)
            microloan_deps_ensure
            printf 'export MICROLOAN_PG_URL=%q\nexport REDIS_URL=%q\n' "$MICROLOAN_PG_URL" "$REDIS_URL"
            ;;
        stop) microloan_deps_stop ;;
        status) microloan_deps_status ;;
        *)
            echo "usage: scripts/dev-deps.sh [start|stop|status]" >&2
            exit 64
            ;;
    esac
else
    microloan_deps_ensure || return 1
fi
