# httpmirror as a static binary in a distroless image: no shell, no
# package manager, run as a numeric non-root user.
#
#   docker build -t httpmirror .
#   docker run -p 8080:8080 -v httpmirror-cache:/var/cache/httpmirror httpmirror \
#     --host-from-first-path --storage-url file:///var/cache/httpmirror \
#     --allow-host 'github.com,*.githubusercontent.com'
#
# Arguments given to docker run replace CMD below (the flags), not the
# binary. The build stamps the VCS revision into the binary, which
# --version and the start line show; in a git worktree, where the
# repository lies outside the build context, pass
# --build-arg BUILDVCS=false. See docs/operations.md#deploying.

FROM golang:1.26 AS build
ARG BUILDVCS=auto
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static: no cgo, so the binary needs no libc and runs on a distroless
# static (or scratch) base.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=${BUILDVCS} -ldflags='-s -w' -o /out/httpmirror ./cmd/httpmirror
# The cache directory, owned by the runtime user: the final stage has no
# shell to create it.
RUN mkdir -p /out/cache && chown 65532:65532 /out/cache

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/httpmirror /httpmirror
COPY --from=build --chown=65532:65532 /out/cache /var/cache/httpmirror
# distroless's "nonroot" user, by number, so that Kubernetes'
# runAsNonRoot can check it without reading /etc/passwd.
USER 65532:65532
VOLUME /var/cache/httpmirror
# 8080: mirror requests; 9090: the admin listener (metrics, health,
# cache API); 8081: the peer listener of replicas sharing a bucket.
EXPOSE 8080 9090 8081
ENTRYPOINT ["/httpmirror"]
CMD ["--address", ":8080", "--host-from-first-path", "--storage-url", "file:///var/cache/httpmirror"]
