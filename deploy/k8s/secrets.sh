#!/usr/bin/env bash
# Makes the secrets an overlay's secretGenerator reads, into files that git
# ignores; nothing secret is committed:
#   bash deploy/k8s/secrets.sh dev|prod [--dir DIR] [--mongodb-members N]
#
# DIR (default deploy/k8s/overlays/<overlay>/secrets, mode 0700) receives:
#   mongodb-credentials.env  root and application users of MongoDB, random passwords
#   mongodb-keyfile          the replica set's internal key (openssl rand -base64 756)
#   mongodb-uri              MONGODB_URI of the services, with the application password
#   nats/<user>.nk           NKey seeds of ingest, transform, audit (mounted as
#                            NATS_NKEY) and admin (kept for your natscli --nkey)
#   nats-users.env           their public keys, for the NATS servers
# A file that exists is kept, so a second run changes nothing: rotate a
# secret by deleting its file first (docs/deploy.md). The MongoDB URI names
# members mongodb-0..N-1 (N: 1 for dev, else 3, or --mongodb-members).
# Needs openssl and natscli (scripts/nats-keys.sh finds it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
usage() {
    echo "usage: secrets.sh OVERLAY [--dir DIR] [--mongodb-members N]" >&2
    exit 2
}

overlay="${1:-}"
[ -n "$overlay" ] || usage
shift
dir="$ROOT/deploy/k8s/overlays/$overlay/secrets"
members=3
[ "$overlay" = dev ] && members=1
while [ $# -gt 0 ]; do
    case "$1" in
    --dir) dir="${2:?}"; shift 2 ;;
    --mongodb-members) members="${2:?}"; shift 2 ;;
    *) usage ;;
    esac
done
[[ "$members" =~ ^[1-9][0-9]*$ ]] || usage

umask 077
mkdir -p "$dir"
chmod 700 "$dir"

# keep FILE COMMAND...: writes COMMAND's output to FILE unless it exists.
keep() {
    local file="$1"
    shift
    if [ ! -s "$file" ]; then
        "$@" >"$file.tmp"
        mv "$file.tmp" "$file"
        echo "made $file" >&2
    fi
}

password() { openssl rand -hex 24; }

credentials() {
    echo "MONGO_INITDB_ROOT_USERNAME=root"
    echo "MONGO_INITDB_ROOT_PASSWORD=$(password)"
    echo "SLUICE_DB_USERNAME=sluice"
    echo "SLUICE_DB_PASSWORD=$(password)"
}

# The application password comes from the credentials file, so that the
# URI and the user mongodb-init creates always agree.
uri() {
    local pw hosts="" i
    pw="$(sed -n 's/^SLUICE_DB_PASSWORD=//p' "$dir/mongodb-credentials.env")"
    for ((i = 0; i < members; i++)); do
        hosts="$hosts${hosts:+,}mongodb-$i.mongodb-headless:27017"
    done
    printf 'mongodb://sluice:%s@%s/sluice?replicaSet=rs0&w=majority&retryWrites=true\n' "$pw" "$hosts"
}

keep "$dir/mongodb-credentials.env" credentials
keep "$dir/mongodb-keyfile" openssl rand -base64 756
keep "$dir/mongodb-uri" uri
keep "$dir/nats-users.env" bash "$ROOT/scripts/nats-keys.sh" --env "$dir/nats"
echo "secrets for overlay $overlay in $dir" >&2
