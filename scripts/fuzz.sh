#!/usr/bin/env bash
# Short fuzz runs of every fuzz target, as part of `make test`.
# FUZZTIME overrides the per-target budget (default 10s).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-10s}"
targets=(
  "./pkg/api FuzzDecode"
  "./pkg/api FuzzFastPath"
  "./pkg/store FuzzUnmarshalRecord"
)
for t in "${targets[@]}"; do
  set -- $t
  echo "fuzz $2 in $1 for $fuzztime"
  go test -run='^$' -fuzz="^$2\$" -fuzztime="$fuzztime" "$1"
done
