#!/usr/bin/env bash
# Makes the NKeys of Sluice's NATS users (deploy/local/nats-accounts.conf)
# in DIR, once, and prints their public keys for nats-server:
#   bash scripts/nats-keys.sh DIR          export SLUICE_NATS_INGEST_NKEY=U... (for eval)
#   bash scripts/nats-keys.sh --env DIR    SLUICE_NATS_INGEST_NKEY=U...        (an env file)
# DIR/ingest.nk, transform.nk, audit.nk and admin.nk are the seeds (mode
# 0600): secrets, each for one service's NATS_NKEY (admin.nk for natscli's
# --nkey). Seeds already in DIR are kept, so a second run prints the same
# keys. Uses natscli (`nats auth nkey`): $NATS_CLI, else .tools/bin/nats,
# else nats on PATH.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
format=export
if [ "${1:-}" = "--env" ]; then
  format=env
  shift
fi
dir=${1:?usage: nats-keys.sh [--env] DIR}

nats=${NATS_CLI:-$root/.tools/bin/nats}
[ -x "$nats" ] || nats=$(command -v nats || true)
if [ -z "$nats" ]; then
  echo "nats-keys.sh: natscli not found (run scripts/setup.sh, or set NATS_CLI)" >&2
  exit 1
fi

mkdir -p "$dir"
umask 077
for user in ingest transform audit admin; do
  seed="$dir/$user.nk"
  if [ ! -s "$seed" ]; then
    "$nats" --no-context auth nkey gen user --output="$seed" >/dev/null
  fi
  pub=$("$nats" --no-context auth nkey show "$seed")
  var="SLUICE_NATS_$(tr '[:lower:]' '[:upper:]' <<<"$user")_NKEY"
  if [ "$format" = env ]; then
    echo "$var=$pub"
  else
    echo "export $var=$pub"
  fi
done
