#!/usr/bin/env bash
# Generates the stubs in gen/ when proto/ changed (buf generate, local plugins),
# builds bin/ingest-client, and runs it:
#   examples/clients/go/run.sh [-addr HOST:PORT] [-count N] [-prefix P] ...
# Needs go and the repository's .tools/bin/buf (scripts/setup.sh); installs the
# two protoc plugins there at the pinned versions when they are missing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
export PATH="$root/.tools/bin:$PATH"
protoc_gen_go=google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
protoc_gen_go_grpc=google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

plugin() { # NAME SPEC: go install SPEC into .tools/bin unless that version is there
  local have
  have=$("$root/.tools/bin/$1" --version 2>/dev/null | awk '{print $NF}' | sed 's/^v*/v/') || true
  [ "$have" = "${2##*@}" ] || GOBIN="$root/.tools/bin" go install "$2"
}

cd "$here"
want=$(cat "$root/proto/sluice/v1/ingest.proto" buf.gen.yaml | sha256sum | cut -d' ' -f1)
if [ "$(cat gen/.stamp 2>/dev/null)" != "$want" ]; then
  plugin protoc-gen-go "$protoc_gen_go"
  plugin protoc-gen-go-grpc "$protoc_gen_go_grpc"
  rm -rf gen
  buf generate
  echo "$want" > gen/.stamp
fi
go build -o bin/ingest-client .
exec bin/ingest-client "$@"
