#!/usr/bin/env bash
# Installs everything Sluice needs to build, run and test, idempotently:
#   - Debian packages (compilers, clang and its libFuzzer runtime, gRPC C core,
#     protobuf-c, cnats, libmongoc, libjq, ...)
#   - Go-built servers and tools into .tools/bin (nats-server, FerretDB, natscli,
#     grpcurl, ghz, grpc-health-probe, buf)
#   - a Python virtual environment in .venv with the test clients
#   - the C build in build/ (or $SLUICE_BUILD_DIR)
# A second run finds everything in place and returns within seconds.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tools="$root/.tools"
mkdir -p "$tools/bin" "$tools/stamps"
export GOBIN="$tools/bin"
export GOFLAGS="${GOFLAGS:-} -modcacherw"

say() { printf '[setup] %s\n' "$*"; }

# ---- Debian packages ------------------------------------------------------
apt_packages=(
  build-essential cmake ninja-build pkg-config git
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
  libnats-dev libmongoc-dev libbson-dev libjq-dev libmicrohttpd-dev libssl-dev libjwt-dev rapidjson-dev
  python3-venv golang-go curl nodejs npm
  clang libclang-rt-14-dev
)
# A newer Go or Node already on PATH is kept; Debian's are only fallbacks.
have_go=0; command -v go >/dev/null 2>&1 && have_go=1
have_node=0; command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && have_node=1
missing=()
for p in "${apt_packages[@]}"; do
  case "$p" in
    golang-go) ((have_go)) && continue ;;
    nodejs | npm) ((have_node)) && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends ${missing[*]} >/dev/null
fi

# ---- Go-built servers and tools --------------------------------------------
# go_tool NAME MODULE/PATH@VERSION: builds once per version.
go_tool() {
  local name=$1 spec=$2
  if [ -x "$tools/bin/$name" ] && [ "$(cat "$tools/stamps/$name" 2>/dev/null)" = "$spec" ]; then
    return
  fi
  say "building $name ($spec)"
  go install "$spec"
  echo "$spec" > "$tools/stamps/$name"
}

# FerretDB's released module embeds its version from a file that its release
# tooling writes; a plain `go install` therefore panics at start. Build it from
# the module's own source with that file in place.
ferretdb_tool() {
  local version=v1.24.2 spec="github.com/FerretDB/FerretDB@v1.24.2"
  if [ -x "$tools/bin/ferretdb" ] && [ "$(cat "$tools/stamps/ferretdb" 2>/dev/null)" = "$spec" ]; then
    return
  fi
  say "building ferretdb ($spec)"
  local dir src
  dir=$(go mod download -json "$spec" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
  src=$(mktemp -d)
  cp -r "$dir/." "$src/"
  chmod -R u+w "$src"
  echo "$version" > "$src/build/version/version.txt"
  (cd "$src" && go build -buildvcs=false -o "$tools/bin/ferretdb" ./cmd/ferretdb)
  rm -rf "$src"
  echo "$spec" > "$tools/stamps/ferretdb"
}

go_tool nats-server github.com/nats-io/nats-server/v2@v2.15.2
ferretdb_tool
go_tool nats github.com/nats-io/natscli/nats@v0.5.0
go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4
go_tool ghz github.com/bojand/ghz/cmd/ghz@v0.120.0
go_tool grpc-health-probe github.com/grpc-ecosystem/grpc-health-probe@v0.4.62
go_tool buf github.com/bufbuild/buf/cmd/buf@v1.75.0
go_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
go_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2

# ---- Python test clients ---------------------------------------------------
py_reqs="$root/test/requirements.txt"
if [ ! -x "$root/.venv/bin/python" ] ||
   [ "$(cat "$tools/stamps/venv" 2>/dev/null)" != "$(sha256sum "$py_reqs" | cut -d' ' -f1)" ]; then
  say "preparing .venv"
  python3 -m venv "$root/.venv"
  "$root/.venv/bin/pip" install -q --disable-pip-version-check -r "$py_reqs"
  sha256sum "$py_reqs" | cut -d' ' -f1 > "$tools/stamps/venv"
fi

# ---- The C build -------------------------------------------------------------
build_dir="${SLUICE_BUILD_DIR:-$root/build}"
build_type="${SLUICE_BUILD_TYPE:-RelWithDebInfo}"
sanitize="${SLUICE_SANITIZE:-OFF}"
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S "$root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE="$build_type" \
        -DSLUICE_SANITIZE="$sanitize" >/dev/null
fi
cmake --build "$build_dir" >/dev/null
say "ready: binaries in $build_dir, tools in .tools/bin, Python in .venv"
