# rxflow: one image holding the processor, the projector and the partner
# simulators. docker-compose.yml picks the binary per service (entrypoint).
#
#   docker build -t rxflow .
#   docker run --rm rxflow processor -h
#
# Build stage: static binaries (pure Go; the SQLite driver is modernc.org/sqlite).
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -ldflags="-s -w" -o /out/ ./cmd/processor ./cmd/projector ./cmd/partnersim

# Runtime stage: debian-slim rather than distroless so that compose
# healthchecks can curl /readyz; ca-certificates for TLS to real clusters.
FROM debian:trixie-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin rxflow \
    && mkdir -p /data/projector \
    && chown -R rxflow:rxflow /data
COPY --from=build /out/ /usr/local/bin/

# Inside a container the services must listen on every interface; the
# binaries' own defaults (127.0.0.1) suit a developer's machine instead.
ENV PROCESSOR_HTTP_ADDR=0.0.0.0:9101 \
    PROJECTOR_HTTP_ADDR=0.0.0.0:8080 \
    PARTNERSIM_ADDR=0.0.0.0:8090 \
    PROJECTOR_DATA_DIR=/data/projector

# /data/projector holds the projector's embedded stores (read model,
# side-effect ledger, operations, access log) when it runs without
# DATABASE_URL: mount a persistent volume there. On PostgreSQL (as in
# docker-compose.yml) it is not used. No VOLUME instruction, so that the
# processor and partnersim get no anonymous volumes.
WORKDIR /data
USER rxflow:rxflow
EXPOSE 8080 8090 9101
CMD ["processor"]
