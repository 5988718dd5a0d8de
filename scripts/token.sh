#!/usr/bin/env bash
# make token ROLE=operator|service|customer [CUSTOMER_ID=...]: prints a dev bearer token
# (and nothing else on stdout), signed with AUTH_JWT_SECRET from scripts/dev-env.sh, so
#     TOKEN=$(make -s token ROLE=operator)
#     grpcurl -plaintext -H "authorization: Bearer $TOKEN" ...
# TOKEN_TTL_SECONDS sets the lifetime (mint-token's default: 3600, at most one day).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/dev-env.sh
source scripts/dev-env.sh

role="${1:-}"
customer_id="${2:-}"
if [[ -z "$role" ]]; then
    echo "usage: scripts/token.sh operator|service|customer [CUSTOMER_ID]" >&2
    exit 64
fi
if [[ "$role" == customer && -z "$customer_id" ]]; then
    echo "token: a customer token needs a customer id: make token ROLE=customer CUSTOMER_ID=..." >&2
    exit 64
fi
args=(--role "$role")
[[ -n "$customer_id" ]] && args+=(--customer-id "$customer_id")
[[ -n "${TOKEN_TTL_SECONDS:-}" ]] && args+=(--ttl-seconds "$TOKEN_TTL_SECONDS")
# cargo run rebuilds mint-token only when its sources changed; -q keeps stdout to the token.
exec cargo run -q -p microloan-platform --bin mint-token -- "${args[@]}"
