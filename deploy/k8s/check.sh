#!/usr/bin/env bash
# Offline check of the Kubernetes deployment (no cluster needed):
#   bash deploy/k8s/check.sh            (from anywhere inside the repo)
#
# 1. Installs kustomize and the strict validator (deploy/k8s/validate) into
#    .tools/bin of the repo, only when missing or out of date: a second run
#    builds nothing.
# 2. Renders every overlay in deploy/k8s/overlays with `kustomize build` and
#    decodes every object strictly into the Kubernetes API types, plus
#    Sluice's rules (resources, probes, non-root read-only containers,
#    references between objects). The validator's own unit tests run
#    whenever it is rebuilt.
# 3. Negative self-checks: the dev rendering with one defect injected by sed
#    (a misspelt field, an unknown kind, a wrong type, a writable root
#    filesystem) must be rejected with a message naming the defect.
#
# One line per check, then "N passed, M failed"; exit status 1 on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

TOOLS="$ROOT/.tools/bin"
KUSTOMIZE_VERSION=v5.8.2 # v5.8.3 needs Go 1.27
KUSTOMIZE="$TOOLS/kustomize"
VALIDATE="$TOOLS/sluice-k8s-validate"
VALIDATE_SRC="deploy/k8s/validate"

# Use the Go on the machine; never fetch another toolchain implicitly.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

mkdir -p "$TOOLS"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
indent() { sed 's/^/    /'; }

# A tool that cannot be had ends the run, with the summary line.
give_up() {
    fail "$*"
    echo "$passed passed, $failed failed"
    exit 1
}

if [ ! -x "$KUSTOMIZE" ] || [ "$("$KUSTOMIZE" version 2>/dev/null)" != "$KUSTOMIZE_VERSION" ]; then
    echo "installing kustomize $KUSTOMIZE_VERSION into .tools/bin" >&2
    GOBIN="$TOOLS" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" ||
        give_up "kustomize $KUSTOMIZE_VERSION: go install failed"
fi

# The validator is built and its unit tests run when its sources or the Go
# version changed; the stamp is written only when both succeeded.
stamp_file="$TOOLS/.sluice-k8s-validate.sha256"
stamp="$( (go version; cat "$VALIDATE_SRC"/go.mod "$VALIDATE_SRC"/go.sum "$VALIDATE_SRC"/*.go) | sha256sum | cut -d' ' -f1)"
if [ -x "$VALIDATE" ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
    pass "validator unit tests: passed when this validator was built (sources unchanged)"
else
    echo "building and testing the manifest validator into .tools/bin" >&2
    rm -f "$stamp_file"
    (cd "$VALIDATE_SRC" && go build -buildvcs=false -trimpath -o "$VALIDATE" .) ||
        give_up "validator: go build failed"
    if out="$(cd "$VALIDATE_SRC" && go test -buildvcs=false -count=1 ./... 2>&1)"; then
        pass "validator unit tests: $(tail -n1 <<<"$out")"
        echo "$stamp" >"$stamp_file"
    else
        fail "validator unit tests"
        printf '%s\n' "$out" | indent
    fi
fi

# Positive: every overlay renders and validates.
for dir in deploy/k8s/overlays/*/; do
    name="$(basename "$dir")"
    if ! "$KUSTOMIZE" build "$dir" >"$tmp/$name.yaml" 2>"$tmp/$name.err"; then
        fail "overlay $name: kustomize build failed"
        indent <"$tmp/$name.err"
        continue
    fi
    if out="$("$VALIDATE" -source "overlays/$name" <"$tmp/$name.yaml" 2>&1)"; then
        pass "overlay $name: $out"
    else
        fail "overlay $name: rejected by the validator"
        printf '%s\n' "$out" | indent
    fi
done

# Negative: the validator must reject each injected defect, saying what it is.
# negative LABEL SED-EXPRESSION EXPECTED-TEXT
negative() {
    local label="$1" expr="$2" expect="$3" out rc=0
    if [ ! -s "$tmp/dev.yaml" ]; then
        fail "negative: $label: no dev rendering to alter"
        return
    fi
    sed -e "$expr" "$tmp/dev.yaml" >"$tmp/broken.yaml"
    if cmp -s "$tmp/dev.yaml" "$tmp/broken.yaml"; then
        fail "negative: $label: the sed expression changed nothing"
        return
    fi
    out="$("$VALIDATE" -source "overlays/dev+defect" <"$tmp/broken.yaml" 2>&1)" || rc=$?
    if [ "$rc" -eq 1 ] && grep -qF -- "$expect" <<<"$out"; then
        pass "negative: $label: rejected: $(grep -m1 -F -- "$expect" <<<"$out" | sed "s/^FAIL //")"
    else
        fail "negative: $label: expected exit 1 and \"$expect\", got exit $rc"
        printf '%s\n' "$out" | indent
    fi
}

negative "misspelt containerPort" \
    '0,/containerPort:/s//containerPrt:/' \
    'unknown field "spec.template.spec.containers[0].ports[0].containerPrt"'
negative "misspelt replicas" \
    '0,/^  replicas: 1$/s//  replica: 1/' \
    'unknown field "spec.replica"'
negative "unknown kind" \
    '0,/^kind: PodDisruptionBudget$/s//kind: PodDisruptionBudjet/' \
    'no kind "PodDisruptionBudjet" is registered'
negative "wrong type" \
    '0,/^  replicas: 1$/s//  replicas: one/' \
    'cannot unmarshal string into Go struct field'
negative "writable root filesystem" \
    '0,/readOnlyRootFilesystem: true/s//readOnlyRootFilesystem: false/' \
    'readOnlyRootFilesystem must be true'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
