#!/usr/bin/env bash
# Renders an overlay for kubectl, only when it is fit to apply:
#   bash deploy/k8s/render.sh prod | kubectl apply -f -
#   bash deploy/k8s/render.sh --external-secrets prod   (Secrets from a secret manager)
# kustomize builds it (which fails, naming the file, while its secrets are
# missing: bash deploy/k8s/secrets.sh prod), then the validator
# (deploy/k8s/validate) checks it: strict API types, Sluice's rules, and no
# placeholder ("change-me", ...) in any Secret. The YAML goes to stdout only
# when both passed; otherwise the problems go to stderr and the exit status
# is 1, so kubectl gets nothing. `make k8s` installs both tools.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
external=()
if [ "${1:-}" = "--external-secrets" ]; then
    external=(-external-secrets) # referenced Secrets may be absent from the rendering
    shift
fi
overlay="${1:?usage: render.sh [--external-secrets] OVERLAY}"
dir="$ROOT/deploy/k8s/overlays/$overlay"
kustomize="$ROOT/.tools/bin/kustomize"
validate="$ROOT/.tools/bin/sluice-k8s-validate"

if [ ! -d "$dir" ]; then
    echo "render.sh: no overlay $overlay in deploy/k8s/overlays" >&2
    exit 2
fi
for tool in "$kustomize" "$validate"; do
    if [ ! -x "$tool" ]; then
        echo "render.sh: $tool is missing: run make k8s once" >&2
        exit 2
    fi
done

out="$(mktemp)"
trap 'rm -f "$out"' EXIT
if ! "$kustomize" build "$dir" >"$out"; then
    echo "render.sh: $overlay did not render (no secrets yet? bash deploy/k8s/secrets.sh $overlay)" >&2
    exit 1
fi
if ! "$validate" -q ${external[@]+"${external[@]}"} -source "overlays/$overlay" <"$out"; then
    echo "render.sh: $overlay refused: fix the problems above before applying it" >&2
    exit 1
fi
cat "$out"
