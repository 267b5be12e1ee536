#!/usr/bin/env bash
# buf breaking: proto/ (the work tree) against proto/ in the previous commit of
# main (HEAD~1 by default; SLUICE_BUF_AGAINST=<git ref> picks another, e.g.
# origin/main). The rules are proto/buf.yaml's `breaking` section.
# With nothing to compare against (a single commit, a shallow clone, or no
# proto/ in that commit) it prints a note and exits 0.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
buf="$root/.tools/bin/buf"
against=${SLUICE_BUF_AGAINST:-HEAD~1}

if ! commit=$(git rev-parse --verify -q "$against^{commit}"); then
  echo "buf breaking: no commit $against to compare against (single commit or shallow clone); skipped"
  exit 0
fi
if ! git cat-file -e "$commit:proto" 2>/dev/null; then
  echo "buf breaking: $against ($commit) has no proto/; skipped"
  exit 0
fi
"$buf" breaking proto --against ".git#ref=$commit,subdir=proto"
echo "buf breaking: proto/ has no breaking change against $against ($commit)"
