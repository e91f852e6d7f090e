# kubetrail's container image: a static binary on distroless "static", run
# as the non-root user 65532. Build it with `make image` (docker or podman,
# whichever is installed); `make static` is the build step below, which CI
# checks (cmd/kubetrail/static_test.go).
#
# The collector DaemonSet overrides the user with runAsUser: 0, because the
# API server's audit.log is root's with mode 0600 (docs/deploy.md).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG COMMIT=unknown
RUN make static BIN=/out/kubetrail COMMIT=$COMMIT

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kubetrail /usr/local/bin/kubetrail
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kubetrail"]
