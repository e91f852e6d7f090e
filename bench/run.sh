#!/usr/bin/env bash
# Benchmark suite entry point: installs the tools it compares against (and a
# C/C++ toolchain for DuckDB's cgo bindings), then runs bench/run, which
# writes docs/BENCHMARKS.md.
#   bench/run.sh quick   200k events, about 7 minutes
#   bench/run.sh full    200k and 2M events (~2.5 GiB), under 45 minutes
#   bench/run.sh policy  the policy evaluator beside upstream, printed only
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for t in jq zstd gzip; do command -v "$t" >/dev/null || need+=("$t"); done
# bench/duckdb links DuckDB's static library with -lstdc++: gcc and g++.
for t in gcc g++; do command -v "$t" >/dev/null || need+=("$t"); done
# The ClickHouse section starts Debian's clickhouse-server (18.16) on
# loopback, as the store's tests do (.ci/run installs it for them).
command -v clickhouse-server >/dev/null || [ -x /usr/sbin/clickhouse-server ] || need+=(clickhouse-server)
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" libc6-dev >/dev/null
fi
export PATH="$(go env GOPATH)/bin:$PATH"
exec go run ./bench/run --mode "${1:-quick}"
