#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that the end-to-end tests run,
# into test/e2e/bin/, from the versions pinned in test/e2e/go.mod; and
# kubectl too when none is on PATH (the tests prefer the one on PATH).
#
# Idempotent: a binary is rebuilt only when it is missing or when go.mod,
# go.sum or this script changed since the last successful build (recorded
# in bin/.stamp). A cold kube-apiserver build takes several minutes on two
# cores; later runs reuse the Go build cache.
#
# Usage: test/e2e/build.sh [-f]   (-f forces a rebuild)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
bin="$here/bin"
mkdir -p "$bin"

# Serialize concurrent callers (make e2e-deps in two shells, CI + a test).
exec 9>"$bin/.lock"
if command -v flock >/dev/null 2>&1; then
	flock 9
fi

force=0
if [[ "${1:-}" == "-f" ]]; then
	force=1
fi

stamp="$bin/.stamp"
want="$(cat go.mod go.sum build.sh | sha256sum | cut -d' ' -f1)"
have="$(cat "$stamp" 2>/dev/null || true)"

targets=(etcd kube-apiserver)
# A kubectl built earlier is kept current even once one is on PATH.
if ! command -v kubectl >/dev/null 2>&1 || [[ -e "$bin/kubectl" ]]; then
	targets+=(kubectl)
fi

todo=()
for name in "${targets[@]}"; do
	if [[ $force == 1 || "$want" != "$have" || ! -x "$bin/$name" ]]; then
		todo+=("$name")
	fi
done
if [[ ${#todo[@]} == 0 ]]; then
	echo "e2e deps up to date in $bin"
	exit 0
fi

export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

# The version the API server reports (/version) and puts in the user agent
# of its own loopback requests; without these it says v0.0.0-master.
k8s_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
k8s_minor="$(echo "$k8s_version" | cut -d. -f2)"
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1"
	ldflags+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
done

build() {
	local name="$1" pkg="$2" flags="${3:-}"
	local start=$SECONDS
	echo "building $name from $pkg ..."
	go build -trimpath -ldflags "$flags" -o "$bin/$name.tmp" "$pkg"
	mv -f "$bin/$name.tmp" "$bin/$name"
	echo "built $bin/$name in $((SECONDS - start))s"
}

for name in "${todo[@]}"; do
	case $name in
	etcd) build etcd go.etcd.io/etcd/server/v3 ;;
	kube-apiserver) build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags" ;;
	kubectl) build kubectl k8s.io/kubernetes/cmd/kubectl "$ldflags" ;;
	esac
done

echo "$want" >"$stamp"
"$bin/etcd" --version | sed -n 1p # sed reads to the end: head would leave etcd a SIGPIPE (exit 141 under pipefail)
"$bin/kube-apiserver" --version
