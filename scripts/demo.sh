#!/usr/bin/env bash
# A first look: sends sample records of two types through a running pipeline
# (`make up` in another shell) with grpcurl, using server reflection (no
# .proto file), then prints what landed in MongoDB's `records` and `audit`.
#   SLUICE_ADDR     gRPC address      (default 127.0.0.1:50051, or the secure stack's)
#   MONGODB_URI     the store          (default mongodb://127.0.0.1:27017/sluice)
#   SLUICE_RUN_DIR  the stack's run directory (default .run): its `mode` file says
#                   whether `make up` runs open or secure (SLUICE_SECURE=1 or mtls);
#                   secure, the demo calls over TLS with the credentials in secure/,
#                   as a JWT's subject and as an API key's principal, and shows what
#                   the policy refuses
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
run="${SLUICE_RUN_DIR:-$root/.run}"
uri="${MONGODB_URI:-mongodb://127.0.0.1:27017/sluice}"
grpcurl="$root/.tools/bin/grpcurl"
py="$root/.venv/bin/python"
[ -x "$grpcurl" ] && [ -x "$py" ] || bash "$root/scripts/setup.sh"

mode=$(cat "$run/mode" 2>/dev/null || echo plain)
creds="$run/secure"
addr="${SLUICE_ADDR:-}"
if [ "$mode" = plain ]; then
  conn=(-plaintext)
else
  [ -n "$addr" ] || addr=$(sed -n 's/^SLUICE_ADDR=//p' "$creds/client.env")
  conn=(-cacert "$creds/ca.crt")
  [ "$mode" != mtls ] || conn+=(-cert "$creds/client.crt" -key "$creds/client.key")
  # The secrets go to grpcurl through its environment (-expand-headers), not
  # its command line, where any user's `ps` would see them.
  DEMO_JWT=$(cat "$creds/token")
  DEMO_API_KEY=$(cat "$creds/api-key")
  export DEMO_JWT DEMO_API_KEY
fi
addr="${addr:-127.0.0.1:50051}"

run_id="demo-$(date +%s)"
b64() { printf '%s' "$1" | base64 -w0; }

call() { # WHO (jwt, key or none) grpcurl arguments...: plaintext, or TLS as WHO
  local who=$1 auth=()
  shift
  [ "$mode" != plain ] || who=none
  case "$who" in
    jwt) auth=(-expand-headers -H 'authorization: Bearer ${DEMO_JWT}') ;;
    key) auth=(-expand-headers -H 'authorization: Bearer ${DEMO_API_KEY}') ;;
  esac
  "$grpcurl" "${conn[@]}" ${auth[@]+"${auth[@]}"} "$@"
}
request() { # id type json
  echo "{\"record\":{\"id\":\"$1\",\"type\":\"$2\",\"key\":\"demo\",\"payload\":\"$(b64 "$3")\"}}"
}
send() { # [WHO] id type json
  local who=jwt
  [ $# -eq 4 ] && { who=$1; shift; }
  call "$who" -d "$(request "$@")" "$addr" sluice.v1.IngestService/Ingest | tr -d '\n ' ; echo
}
refused() { # CODE WHO id type json: the call must fail with CODE
  local want=$1 who=$2 out code msg
  shift 2
  if out=$(call "$who" -d "$(request "$@")" "$addr" sluice.v1.IngestService/Ingest 2>&1); then
    echo "expected $want, but the record was stored: $out" >&2
    return 1
  fi
  # grpcurl says "Code: X / Message: Y", or "code = X desc = Y" when its
  # reflection lookup was refused before the call
  code=$(sed -n 's/^ *Code: //p; s/.*code = \([A-Za-z]*\) desc = .*/\1/p' <<<"$out" | head -1)
  msg=$(sed -n 's/^ *Message: //p; s/.*code = [A-Za-z]* desc = //p' <<<"$out" | head -1)
  echo "refused: $code: $msg"
  [ "$code" = "$want" ] || { echo "expected $want: $out" >&2; return 1; }
}

extra=() # records sent to show whose they are, beside the three of the demo
if [ "$mode" = plain ]; then
  echo "== services on $addr"
else
  echo "== services on $addr (TLS; as \"local-dev\", the subject of the JWT in $creds/token)"
fi
call jwt "$addr" list

echo
echo "== sending 3 records: two order.created, one user.signed_up (ids start with $run_id)"
send "$run_id-o1" order.created '{"id":"o1","customer":"c-7","items":[{"price":2.5,"qty":4},{"price":10,"qty":1}]}'
send "$run_id-o2" order.created '{"id":"o2","customer":"c-9","items":[{"price":1,"qty":3}]}'
send "$run_id-u1" user.signed_up '{"email":"ada@example.com","password":"hunter2","plan":"pro"}'
echo "== the same id again is stored once:"
send "$run_id-o1" order.created '{"id":"o1","customer":"c-7","items":[{"price":2.5,"qty":4},{"price":10,"qty":1}]}'

if [ "$mode" != plain ]; then
  echo
  echo "== the API key in $creds/api-key (principal \"local-api-client\"): the policy gives it order.> only"
  send key "$run_id-k1" order.created '{"id":"k1","customer":"c-1","items":[]}'
  refused PermissionDenied key "$run_id-k2" user.signed_up '{"email":"eve@example.com"}'
  extra+=("$run_id-k1")
  if [ "$mode" = mtls ]; then
    echo "== no token: the client certificate says who calls (its URI SAN)"
    send none "$run_id-c1" order.created '{"id":"c1","customer":"c-2","items":[]}'
    extra+=("$run_id-c1")
  else
    echo "== no credentials:"
    refused Unauthenticated none "$run_id-n1" order.created '{"id":"n1"}'
  fi
fi

echo
echo "== waiting for transform and audit, then reading MongoDB"
"$py" - "$uri" "$run_id" "$mode" ${extra[@]+"${extra[@]}"} <<'PY'
import json, sys, time
import pymongo
uri, run_id, mode, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
db = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000).get_default_database()
want = {f"{run_id}-o1", f"{run_id}-o2", f"{run_id}-u1"}
deadline = time.time() + 20
while time.time() < deadline:
    recs = list(db.records.find({"_id": {"$in": sorted(want)}}))
    auds = list(db.audit.find({"record_id": {"$in": sorted(want | set(extra))}}))
    if len(recs) == 3 and len(auds) == 3 + len(extra):
        break
    time.sleep(0.2)
show = lambda d: json.dumps(d, default=str, indent=1)
print(f"records ({len(recs)}):")
for d in sorted(recs, key=lambda d: d["_id"]):
    print(show(d))
main = [d for d in auds if d["record_id"] in want]
print(f"audit ({len(main)}):")
for d in sorted(main, key=lambda d: d["record_id"]):
    print(show(d))
if mode != "plain":
    print("who wrote what (audit.principal): " + ", ".join(
        f"{d['record_id']} {d['principal']}" for d in sorted(auds, key=lambda d: d["record_id"])))
sys.exit(0 if len(recs) == 3 and len(auds) == 3 + len(extra) else 1)
PY
