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
#    references between objects, no placeholder in a Secret). The
#    validator's own unit tests run whenever it is rebuilt. The overlays
#    render from a temporary copy of deploy/k8s with test secrets that
#    deploy/k8s/secrets.sh makes there (secrets are never committed, so a
#    clean clone has none; the developer's own are not used).
# 3. Negative self-checks: the dev rendering with one defect injected by sed
#    (a misspelt field, an unknown kind, a wrong type, a writable root
#    filesystem) and the prod rendering with a placeholder secret must be
#    rejected with a message naming the defect; prod without its secrets
#    must not render at all.
# 4. The NATS users and permissions are the same for Kubernetes and local
#    runs, and no secret file is tracked by git.
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
NATS_CLI="$TOOLS/nats" # secrets.sh makes NKeys with natscli
NATSCLI_VERSION=v0.5.0 # as scripts/setup.sh

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

if [ ! -x "$NATS_CLI" ]; then
    echo "installing natscli $NATSCLI_VERSION into .tools/bin" >&2
    GOBIN="$TOOLS" go install "github.com/nats-io/natscli/nats@$NATSCLI_VERSION" ||
        give_up "natscli $NATSCLI_VERSION: go install failed"
fi
export NATS_CLI

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

# A copy of the tree to render, without any secrets of the developer's.
work="$tmp/k8s"
mkdir -p "$work"
cp -r deploy/k8s/base deploy/k8s/overlays "$work/"
rm -rf "$work"/overlays/*/secrets

# Prod refuses to render without its secrets (nothing secret is committed).
if out="$("$KUSTOMIZE" build "$work/overlays/prod" 2>&1)"; then
    fail "prod without secrets: rendered, but must not"
elif grep -q "secrets/" <<<"$out"; then
    pass "prod without secrets: not rendered ($(grep -o "secrets/[A-Za-z0-9_./-]*" <<<"$out" | head -n1) missing)"
else
    fail "prod without secrets: failed for another reason"
    printf '%s\n' "$out" | indent
fi

# Positive: every overlay renders, with test secrets, and validates.
for dir in "$work"/overlays/*/; do
    name="$(basename "$dir")"
    if ! bash deploy/k8s/secrets.sh "$name" --dir "$dir/secrets" 2>"$tmp/$name.err"; then
        fail "overlay $name: deploy/k8s/secrets.sh failed"
        indent <"$tmp/$name.err"
        continue
    fi
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
# Prod refuses a placeholder secret: rendered from a copy in which one
# secret file holds one, it must be rejected, naming the Secret and key.
# negative_secret LABEL FILE CONTENT EXPECTED-TEXT
negative_secret() {
    local label="$1" file="$2" content="$3" expect="$4" out rc=0
    rm -rf "$tmp/defect"
    cp -r "$work" "$tmp/defect"
    printf '%s\n' "$content" >"$tmp/defect/overlays/prod/secrets/$file"
    if ! "$KUSTOMIZE" build "$tmp/defect/overlays/prod" >"$tmp/defect.yaml" 2>&1; then
        fail "negative: $label: prod did not render at all"
        indent <"$tmp/defect.yaml"
        return
    fi
    out="$("$VALIDATE" -source "overlays/prod+defect" <"$tmp/defect.yaml" 2>&1)" || rc=$?
    if [ "$rc" -eq 1 ] && grep -qF -- "$expect" <<<"$out"; then
        pass "negative: $label: rejected: $(grep -m1 -F -- "$expect" <<<"$out" | sed "s/^FAIL //")"
    else
        fail "negative: $label: expected exit 1 and \"$expect\", got exit $rc"
        printf '%s\n' "$out" | indent
    fi
}

negative_secret "placeholder password in prod" mongodb-uri \
    'mongodb://sluice:change-me-sluice@mongodb-0.mongodb-headless:27017/sluice?replicaSet=rs0' \
    'Secret sluice/sluice-mongodb-'
negative_secret "placeholder key file in prod" mongodb-keyfile \
    'PLACEHOLDERreplaceMeWithTheOutputOfOpensslRandBase64756PLACEHOLDER' \
    'Secret sluice/mongodb-keyfile: data.keyfile holds a placeholder'

# The users and permissions NATS runs with are the same everywhere.
if cmp -s deploy/local/nats-accounts.conf deploy/k8s/base/nats/accounts.conf; then
    pass "NATS accounts: deploy/k8s/base/nats/accounts.conf = deploy/local/nats-accounts.conf"
else
    fail "NATS accounts: deploy/k8s/base/nats/accounts.conf differs from deploy/local/nats-accounts.conf"
fi

# No secret is tracked (outside a git checkout there is nothing to ask).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    tracked="$(git ls-files -- 'deploy/k8s/overlays/*/secrets')"
    if [ -z "$tracked" ]; then
        pass "no secret file tracked by git"
    else
        fail "secret files tracked by git: $tracked"
    fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
