#!/usr/bin/env bash
# Benchmark suite entry point: installs the tools it compares against, then
# runs bench/run, which writes docs/BENCHMARKS.md.
#   bench/run.sh quick   200k events, a few minutes
#   bench/run.sh full    200k and 1M events (~1.2 GiB)
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for t in jq zstd gzip; do command -v "$t" >/dev/null || need+=("$t"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
export PATH="$(go env GOPATH)/bin:$PATH"
exec go run ./bench/run --mode "${1:-quick}"
