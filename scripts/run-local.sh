#!/usr/bin/env bash
# Runs the whole pipeline on this machine, on embedded defaults:
#   nats-server (JetStream on .run/nats), FerretDB on SQLite (.run/ferretdb) as
#   the MongoDB, and sluice-ingest, sluice-transform and sluice-audit.
# Stays in the foreground; Ctrl-C (or SIGTERM) stops everything in order.
# Ports: gRPC 50051, NATS 4222, MongoDB wire 27017, metrics 9090/9091/9092
# (override with SLUICE_LISTEN, SLUICE_NATS_PORT, SLUICE_MONGO_PORT and
# SLUICE_METRICS_BASE, the first of the three metrics ports). Data and logs go
# to .run/ (SLUICE_RUN_DIR).
#
# Open by default: no TLS, no credentials. SLUICE_SECURE=1 makes local
# credentials in .run/secure/ (scripts/local-credentials.sh: a CA, a server
# certificate for localhost and 127.0.0.1, a client certificate, an ES256 JWT
# key pair and a token, an API key and its hash file, a policy) and starts
# sluice-ingest with TLS, JWTs, API keys and the policy; SLUICE_SECURE=mtls
# also requires client certificates. The mode goes into .run/mode, which
# scripts/demo.sh reads.
#
# NATS is open by default. SLUICE_NATS_AUTH=1 runs it with the shipped
# least-privilege users instead (deploy/local/nats-auth.conf): NKeys made once
# into .run/nats-keys (scripts/nats-keys.sh), each service connecting as its
# own user; admin.nk there is for natscli (nats --nkey .run/nats-keys/admin.nk).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh

build="${SLUICE_BUILD_DIR:-$root/build}"
run="${SLUICE_RUN_DIR:-$root/.run}"
mkdir -p "$run/nats" "$run/ferretdb" "$run/logs"

nats_port="${SLUICE_NATS_PORT:-4222}"
mongo_port="${SLUICE_MONGO_PORT:-27017}"
listen="${SLUICE_LISTEN:-127.0.0.1:50051}"
metrics_base="${SLUICE_METRICS_BASE:-9090}"
m_ingest="127.0.0.1:$metrics_base"
m_transform="127.0.0.1:$((metrics_base + 1))"
m_audit="127.0.0.1:$((metrics_base + 2))"
nats_url="nats://127.0.0.1:$nats_port"
mongo_uri="mongodb://127.0.0.1:$mongo_port/sluice"
rules="${SLUICE_TRANSFORM_RULES:-$root/deploy/local/transform-rules.json}"

# Where clients connect: the listen address, with a wildcard host made loopback.
host=${listen%:*}
case "$host" in "" | 0.0.0.0 | "[::]") host=127.0.0.1 ;; esac
addr="$host:${listen##*:}"

secure="${SLUICE_SECURE:-0}"
case "$secure" in
  0 | "" | false | no) mode=plain ;;
  1 | true | yes) mode=secure ;;
  mtls) mode=mtls ;;
  *) echo "SLUICE_SECURE must be 1 (TLS, JWTs, API keys, policy), mtls (the same and client certificates) or 0; got: $secure" >&2
     exit 2 ;;
esac
creds="$run/secure"
ingest_security=()
if [ "$mode" != plain ]; then
  bash scripts/local-credentials.sh "$creds" "$addr"
  ingest_security=(--tls-cert="$creds/server.crt" --tls-key="$creds/server.key"
    --auth-jwt-public-key="$creds/jwt.pub.pem" --auth-jwt-issuer=sluice-local
    --auth-jwt-audience=sluice --auth-tokens-file="$creds/api-keys.txt"
    --auth-policy="$creds/policy.json")
  if [ "$mode" = mtls ]; then
    ingest_security+=(--tls-client-ca="$creds/ca.crt")
    printf 'SLUICE_CERT=%s\nSLUICE_KEY=%s\n' "$creds/client.crt" "$creds/client.key" >> "$creds/client.env"
  fi
fi
echo "$mode" > "$run/mode"

pids=()
stop_all() {
  trap - INT TERM EXIT
  echo "stopping..."
  # Services first (they finish what they hold), then the servers.
  for ((i=${#pids[@]}-1; i>=0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  echo "stopped; data stays in $run (delete it for a fresh start)"
}
trap "stop_all; exit 0" INT TERM
trap stop_all EXIT

wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "port $1 did not open; see $run/logs" >&2
  return 1
}

start() { # name, command...
  local name=$1; shift
  "$@" >>"$run/logs/$name.log" 2>&1 &
  pids+=($!)
  echo "started $name (pid $!, log $run/logs/$name.log)"
}

nats_conf=deploy/local/nats.conf
ingest_auth=() transform_auth=() audit_auth=()
nats_access="open (no credentials; SLUICE_NATS_AUTH=1 for users and permissions)"
if [ "${SLUICE_NATS_AUTH:-0}" = 1 ]; then
  keys="$run/nats-keys"
  eval "$(bash scripts/nats-keys.sh "$keys")" # exports the public keys for nats-server
  nats_conf=deploy/local/nats-auth.conf
  ingest_auth=(--nats-nkey="$keys/ingest.nk")
  transform_auth=(--nats-nkey="$keys/transform.nk")
  audit_auth=(--nats-nkey="$keys/audit.nk")
  nats_access="users ingest, transform, audit (NKeys in $keys; natscli: --nkey $keys/admin.nk)"
fi

start nats-server .tools/bin/nats-server -c "$nats_conf" -a 127.0.0.1 \
  -p "$nats_port" -sd "$run/nats"
wait_port "$nats_port"
start ferretdb .tools/bin/ferretdb --handler=sqlite --sqlite-url="file:$run/ferretdb/" \
  --listen-addr="127.0.0.1:$mongo_port" --debug-addr=- --telemetry=disable \
  --state-dir="$run/ferretdb" --log-level=warn
wait_port "$mongo_port"

start sluice-ingest "$build/services/ingest/sluice-ingest" --listen="$listen" \
  --nats-url="$nats_url" ${ingest_auth[@]+"${ingest_auth[@]}"} --metrics-listen="$m_ingest" \
  ${ingest_security[@]+"${ingest_security[@]}"}
wait_port "${listen##*:}"
if [ -x "$build/services/transform/sluice-transform" ]; then
  SLUICE_TRANSFORM_RULES="$rules" start sluice-transform \
    "$build/services/transform/sluice-transform" --nats-url="$nats_url" \
    ${transform_auth[@]+"${transform_auth[@]}"} --mongodb-uri="$mongo_uri" \
    --metrics-listen="$m_transform"
fi
if [ -x "$build/services/audit/sluice-audit" ]; then
  start sluice-audit "$build/services/audit/sluice-audit" --nats-url="$nats_url" \
    ${audit_auth[@]+"${audit_auth[@]}"} --mongodb-uri="$mongo_uri" --metrics-listen="$m_audit"
fi

if [ "$mode" = plain ]; then
  cat <<MSG

Sluice is up.
  gRPC    $listen   (grpcurl -plaintext $addr list)
MSG
else
  cert_flags="" probe_flags="" also=""
  if [ "$mode" = mtls ]; then
    also=", client certificates required"
    cert_flags=" -cert $creds/client.crt -key $creds/client.key"
    probe_flags=" -tls-client-cert=$creds/client.crt -tls-client-key=$creds/client.key"
  fi
  cat <<MSG

Sluice is up, secure: TLS, JWTs, API keys and a policy$also.
  gRPC    $addr (TLS), credentials in $creds:
          ca.crt (the CA of the server's certificate), token (a JWT for "local-dev", 7 days),
          api-key (principal "local-api-client"), client.crt + client.key, policy.json
    .tools/bin/grpcurl -cacert $creds/ca.crt$cert_flags \\
      -H "authorization: Bearer \$(cat $creds/token)" $addr list
    .tools/bin/grpc-health-probe -addr=$addr -tls -tls-ca-cert=$creds/ca.crt$probe_flags
    set -a; . $creds/client.env; set +a; examples/clients/go/run.sh
MSG
fi
cat <<MSG
  NATS    $nats_url, $nats_access
  MongoDB $mongo_uri
  metrics http://$m_ingest/metrics (ingest), http://$m_transform/metrics (transform),
          http://$m_audit/metrics (audit)
Ctrl-C stops everything.
MSG
wait -n "${pids[@]}" || true
echo "a process exited; see $run/logs" >&2
