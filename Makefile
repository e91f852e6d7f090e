# kubetrail — see README.md. `make test` is what CI runs (through .ci/run).
GO        ?= go
BIN       ?= bin/kubetrail
PKGS      := ./...
E2E_DIR   := test/e2e
GOFLAGS_TEST ?=

.PHONY: all build static image test unit verify-suite e2e e2e-deps lint ui ui-check screenshots fuzz bench bench-quick bench-policy clean

all: build

COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)
## build: CGO_ENABLED=0 too: kubetrail has no cgo of its own (only net's libc resolver would use
## it), and a dynamically linked binary pays the loader and libc at every start, 1.1 ms of a
## `kubetrail --version` (docs/adr/0026-process-start.md).
build:
	CGO_ENABLED=0 $(GO) build -ldflags "-X github.com/kubetrail/kubetrail/internal/cli.Commit=$(COMMIT)" -o $(BIN) ./cmd/kubetrail

## static: a static binary (no cgo, no dynamic loader), the one the image ships.
static:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X github.com/kubetrail/kubetrail/internal/cli.Commit=$(COMMIT)" -o $(BIN) ./cmd/kubetrail

## image: the container image (Dockerfile) with docker, else podman; IMAGE=registry.example/kubetrail:TAG to name it.
IMAGE     ?= kubetrail:latest
CONTAINER ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
image:
	@[ -n "$(CONTAINER)" ] || { echo "make image: neither docker nor podman is installed"; exit 1; }
	$(CONTAINER) build --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

## test: everything CI checks: lint, the UI's build, unit tests with the race detector (the UI's
## browser test among them), e2e against the real kube-apiserver.
test: lint ui-check unit verify-suite e2e

unit:
	$(GO) test -race -count=1 -timeout 20m $(GOFLAGS_TEST) $(PKGS)

## verify-suite: issue 14's "verify catches everything" suite on a store of 100k events
## (make unit runs it at 10k, under the race detector).
verify-suite:
	KUBETRAIL_VERIFY_EVENTS=100000 $(GO) test -count=1 -run TestVerifyCatchesEverything ./internal/store/local/

## ui: rebuild the web UI (web/) into internal/server/ui/dist, which the server embeds
## (docs/ui.md). npm ci installs exactly web/package-lock.json; no browser is downloaded.
ui:
	cd web && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
	cd web && node build.mjs

## ui-check: rebuild the UI and fail when the result differs from what is committed.
ui-check: ui
	@if ! git diff --quiet -- internal/server/ui/dist || [ -n "$$(git status --porcelain --untracked-files=all -- internal/server/ui/dist)" ]; then \
		git status --short -- internal/server/ui/dist; \
		echo "internal/server/ui/dist differs from a fresh build of web/: run make ui and commit the result"; exit 1; fi

## screenshots: the browser test's pictures of each page, into docs/ui/ (docs/ui.md shows them).
screenshots: ui
	SCREENSHOTS=$(CURDIR)/docs/ui $(GO) test -count=1 -run TestBrowser ./test/ui/

## e2e-deps: build kube-apiserver and etcd from the Go module proxy (cached in test/e2e/bin).
e2e-deps:
	cd $(E2E_DIR) && ./build.sh

e2e: e2e-deps
	cd $(E2E_DIR) && $(GO) test -count=1 -timeout 20m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	cd $(E2E_DIR) && $(GO) vet ./...

## fuzz: run every fuzz target briefly (FUZZTIME=30s for longer).
FUZZTIME ?= 10s
fuzz:
	$(GO) test ./internal/audit -run '^$$' -fuzz FuzzDecodeBody -fuzztime $(FUZZTIME)
	$(GO) test ./internal/audit -run '^$$' -fuzz FuzzDecodeLine -fuzztime $(FUZZTIME)
	$(GO) test ./internal/audit -run '^$$' -fuzz FuzzFastDecode -fuzztime $(FUZZTIME)
	$(GO) test ./internal/wal -run '^$$' -fuzz FuzzScan -fuzztime $(FUZZTIME)
	$(GO) test ./internal/query -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./internal/policy -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME)
	$(GO) test ./internal/policy -run '^$$' -fuzz FuzzEvaluateMatchesUpstream -fuzztime $(FUZZTIME)
	$(GO) test ./internal/setup -run '^$$' -fuzz FuzzCheckManifest -fuzztime $(FUZZTIME)
	$(GO) test ./internal/rules/native -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME)
	$(GO) test ./internal/rules/falco -run '^$$' -fuzz FuzzParseCondition -fuzztime $(FUZZTIME)
	$(GO) test ./internal/rules/sigma -run '^$$' -fuzz FuzzCondition -fuzztime $(FUZZTIME)

## bench: the side-by-side benchmark suite (200k and 2M events; kubetrail beside
## jq, gojq, gzip, zstd, DuckDB, upstream policy); writes docs/BENCHMARKS.md. Under 45 min on 2 cores.
bench:
	./bench/run.sh full

## bench-quick: the same at 200k events only, about 7 minutes; also writes docs/BENCHMARKS.md.
bench-quick:
	./bench/run.sh quick

## bench-policy: only the policy evaluator beside upstream, printed (no report written).
bench-policy:
	./bench/run.sh policy

clean:
	rm -rf bin
