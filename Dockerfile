# Multi-stage build: static binaries on a distroless, non-root image.
# Not built by `make`; see README "Docker".
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/master ./cmd/worker ./cmd/flowctl
# The data volume must belong to the non-root user (65532) that runs the master.
RUN mkdir -p /data-dir

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
COPY --from=build --chown=65532:65532 /data-dir /data
# The worker binary sits beside the master, where --worker-bin looks by default.
ENV ATOMICFLOW_LISTEN=0.0.0.0:8080 \
    ATOMICFLOW_DATA_DIR=/data \
    ATOMICFLOW_RUN_DIR=/tmp/atomicflow
VOLUME ["/data"]
EXPOSE 8080
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/master"]
