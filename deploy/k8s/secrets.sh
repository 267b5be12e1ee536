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
#   ingest-tls/              sluice-ingest's gRPC TLS (prod): a CA of its own
#                            (ca.crt, ca.key: give ca.crt to clients) and the
#                            server certificate tls.crt + tls.key for the
#                            Service's names in the overlay's namespace
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

# sluice-ingest's TLS: a CA kept across runs and a server certificate it
# signs, for the Service's DNS names (namespace "sluice" in prod, "sluice-dev"
# in dev). One year; delete tls.crt to renew (docs/deploy.md).
ingest_tls() {
    local t="$dir/ingest-tls" ns=sluice
    [ "$overlay" = dev ] && ns=sluice-dev
    mkdir -p "$t"
    if [ ! -s "$t/ca.crt" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
            -subj "/CN=Sluice ingest CA ($overlay)" -keyout "$t/ca.key" -out "$t/ca.crt" 2>/dev/null
        echo "made $t/ca.crt" >&2
    fi
    if [ ! -s "$t/tls.crt" ]; then
        local names="DNS:sluice-ingest,DNS:sluice-ingest.$ns,DNS:sluice-ingest.$ns.svc"
        names="$names,DNS:sluice-ingest.$ns.svc.cluster.local"
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -subj "/CN=sluice-ingest.$ns.svc" -keyout "$t/tls.key" -out "$t/tls.csr" 2>/dev/null
        openssl x509 -req -in "$t/tls.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" \
            -CAcreateserial -days 365 -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$names") \
            -out "$t/tls.crt" 2>/dev/null
        rm -f "$t/tls.csr" "$t/ca.srl"
        echo "made $t/tls.crt" >&2
    fi
}
ingest_tls
echo "secrets for overlay $overlay in $dir" >&2
