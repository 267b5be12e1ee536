#!/usr/bin/env bash
# A first look: sends sample records of two types through a running pipeline
# (`make up` in another shell) with grpcurl, using server reflection (no
# .proto file), then prints what landed in MongoDB's `records` and `audit`.
#   SLUICE_ADDR   gRPC address      (default 127.0.0.1:50051)
#   MONGODB_URI   the store          (default mongodb://127.0.0.1:27017/sluice)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
addr="${SLUICE_ADDR:-127.0.0.1:50051}"
uri="${MONGODB_URI:-mongodb://127.0.0.1:27017/sluice}"
grpcurl="$root/.tools/bin/grpcurl"
py="$root/.venv/bin/python"
[ -x "$grpcurl" ] && [ -x "$py" ] || bash "$root/scripts/setup.sh"

run_id="demo-$(date +%s)"
b64() { printf '%s' "$1" | base64 -w0; }

echo "== services on $addr"
"$grpcurl" -plaintext "$addr" list

echo
echo "== sending 3 records: two order.created, one user.signed_up (ids start with $run_id)"
send() { # id type json
  "$grpcurl" -plaintext -d "{\"record\":{\"id\":\"$1\",\"type\":\"$2\",\"key\":\"demo\",\"payload\":\"$(b64 "$3")\"}}" \
    "$addr" sluice.v1.IngestService/Ingest | tr -d '\n ' ; echo
}
send "$run_id-o1" order.created '{"id":"o1","customer":"c-7","items":[{"price":2.5,"qty":4},{"price":10,"qty":1}]}'
send "$run_id-o2" order.created '{"id":"o2","customer":"c-9","items":[{"price":1,"qty":3}]}'
send "$run_id-u1" user.signed_up '{"email":"ada@example.com","password":"hunter2","plan":"pro"}'
echo "== the same id again is stored once:"
send "$run_id-o1" order.created '{"id":"o1","customer":"c-7","items":[{"price":2.5,"qty":4},{"price":10,"qty":1}]}'

echo
echo "== waiting for transform and audit, then reading MongoDB"
"$py" - "$uri" "$run_id" <<'PY'
import json, sys, time
import pymongo
uri, run_id = sys.argv[1], sys.argv[2]
db = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000).get_default_database()
want = {f"{run_id}-o1", f"{run_id}-o2", f"{run_id}-u1"}
deadline = time.time() + 20
while time.time() < deadline:
    recs = list(db.records.find({"_id": {"$in": sorted(want)}}))
    auds = list(db.audit.find({"record_id": {"$in": sorted(want)}}))
    if len(recs) == 3 and len(auds) == 3:
        break
    time.sleep(0.2)
show = lambda d: json.dumps(d, default=str, indent=1)
print(f"records ({len(recs)}):")
for d in sorted(recs, key=lambda d: d["_id"]):
    print(show(d))
print(f"audit ({len(auds)}):")
for d in sorted(auds, key=lambda d: d["record_id"]):
    print(show(d))
sys.exit(0 if len(recs) == 3 and len(auds) == 3 else 1)
PY
