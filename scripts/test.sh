#!/usr/bin/env bash
# make test (and CI, through .ci/run): the whole suite against real Postgres and Redis.
#
#   1. Postgres + Redis from scripts/dev-deps.sh (DATABASE_URL/REDIS_URL, else the local
#      5432/6379, else project-local servers under .dev/); the Rust tests get
#      DATABASE_URL = that SERVER (they create and drop their own mltest_* databases);
#      databases older runs left behind (mltest_*, unused, over 10 minutes old) are dropped
#   2. rust-tests   cargo nextest run --workspace --all-targets --no-tests=fail when
#                   cargo-nextest is installed, else cargo test --workspace --all-targets
#   3. doc-tests    cargo test --workspace --doc (neither nextest nor --all-targets runs
#                   doc tests)
#   4. e2e-smoke    tests/e2e/smoke.sh (the four real binaries, real grpcurl)
#   5. deploy-check deploy/check.sh, when it exists
#   6. rust-fmt, rust-clippy  cargo fmt --check, cargo clippy -D warnings (make lint's Rust half),
#                   so a submission with warnings does not land
#   7. proto-lint   scripts/proto-lint.sh
# Every step runs even when an earlier one failed (one run shows every problem); the
# exit code is non-zero when any failed. Last line: `steps: N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/dev-env.sh
source scripts/dev-env.sh
# shellcheck source=scripts/dev-deps.sh
source scripts/dev-deps.sh

export DATABASE_URL="$MICROLOAN_PG_URL"
export REDIS_URL
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-auto}"
# A one-shot build gains nothing from incremental caches, which cost several GB of disk
# and time on a cold CI machine; a developer may set it back (CARGO_INCREMENTAL=1).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

say() { printf '\n==> %s\n' "$*"; }

# --- leftovers of earlier runs -----------------------------------------------------
# Only databases nobody is connected to and (where the server lets us read file times,
# i.e. as a superuser) created over 10 minutes ago: a test running right now elsewhere
# keeps its own. DROP without FORCE fails rather than cut a connection.
drop_leftover_databases() {
    local unused="datname like 'mltest\_%' and not exists
        (select 1 from pg_stat_activity a where a.datname = d.datname)"
    local names db dropped=0
    if ! names="$(psql "$DATABASE_URL" -XAtq -v ON_ERROR_STOP=1 -c "select datname from pg_database d
            where $unused and (pg_stat_file('base/' || oid || '/PG_VERSION')).modification
                              < now() - interval '10 minutes'" 2>/dev/null)"; then
        names="$(psql "$DATABASE_URL" -XAtq -c "select datname from pg_database d where $unused")" || return 0
    fi
    for db in $names; do
        if psql "$DATABASE_URL" -XAtq -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null 2>&1; then
            dropped=$((dropped + 1))
        fi
    done
    echo "test: dropped $dropped leftover mltest_* database(s)"
}
drop_leftover_databases

# --- the steps ------------------------------------------------------------------------
PASSED=()
FAILED=()
step() { # name command...
    local name="$1" start=$SECONDS
    shift
    say "$name: $*"
    if "$@"; then
        PASSED+=("$name")
        echo "test: $name ok ($((SECONDS - start))s)"
    else
        FAILED+=("$name")
        echo "test: $name FAILED ($((SECONDS - start))s)"
    fi
}

if cargo nextest --version >/dev/null 2>&1; then
    step rust-tests cargo nextest run --workspace --all-targets --no-tests=fail
else
    step rust-tests cargo test --workspace --all-targets
fi
step doc-tests cargo test --workspace --doc
step e2e-smoke tests/e2e/smoke.sh
if [[ -f deploy/check.sh ]]; then
    step deploy-check bash deploy/check.sh
fi
step rust-fmt cargo fmt --all --check
step rust-clippy cargo clippy --workspace --all-targets -- -D warnings
step proto-lint scripts/proto-lint.sh

say "summary"
for name in "${PASSED[@]+"${PASSED[@]}"}"; do echo "  ok      $name"; done
for name in "${FAILED[@]+"${FAILED[@]}"}"; do echo "  FAILED  $name"; done
echo "steps: ${#PASSED[@]} passed, ${#FAILED[@]} failed"
((${#FAILED[@]} == 0))
