#!/usr/bin/env bash
# Lints the API in proto/ with buf (STANDARD + COMMENTS rules, see buf.yaml) and
# compiles it, using the buf version pinned in tools/buf/package.json.
# The buf binary comes from the npm registry (@bufbuild/buf); no other download.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ ! -x tools/buf/node_modules/.bin/buf ]]; then
  if ! command -v npm >/dev/null 2>&1; then
    # shellcheck source=scripts/dev-env.sh
    source scripts/dev-env.sh
    microloan_apt_install nodejs npm
  fi
  npm ci --prefix tools/buf --no-audit --no-fund
fi
buf=tools/buf/node_modules/.bin/buf

echo "buf $("$buf" --version): lint"
"$buf" lint
echo "buf: build (compile check)"
"$buf" build -o /dev/null
echo "proto-lint: ok ($("$buf" ls-files | wc -l) files)"
