# syntax=docker/dockerfile:1
#
# The attestd container image: the release binary on a distroless base (glibc
# and libgcc, no shell, no package manager), running as a fixed non-root
# user. deploy/README.md says how to run it; tests/deploy.rs checks that this
# file agrees with the binary's flags, the Helm chart and the systemd unit.
#
#   docker build -t attestd:0.1.0 .
#
# Build stage: the official Rust image on Debian 12, whose glibc is the one
# the runtime image ships. RUST_VERSION is the toolchain the project builds
# and tests with (Cargo.toml's rust-version is the oldest that builds it).
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the build reads; .dockerignore keeps everything else out of the
# context (target/, the data directory, .git).
COPY Cargo.toml Cargo.lock ./
COPY proto proto
COPY src src
COPY crates crates
# --locked: exactly the dependency versions in Cargo.lock. The data
# directory is made here, owned by the runtime user, because the runtime
# image has no shell to make it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin attestd \
 && install -D -m 0755 target/release/attestd /out/bin/attestd \
 && install -d -m 0700 -o 65532 -g 65532 /out/lib/attestd

# Runtime stage. The ":nonroot" variant's user is 65532:65532; it is named
# by number below so that Kubernetes' runAsNonRoot can check it.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="attestd" \
      org.opencontainers.image.description="Attestation verifier and system of record for a medical-device fleet" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/bin/attestd /usr/local/bin/attestd
# Copies the directory attestd (mode 0700, owned by 65532) into /var/lib.
COPY --from=build --chown=65532:65532 /out/lib/ /var/lib/
USER 65532:65532
# The only place attestd writes: the sled database and the audit key. The
# root filesystem can be read-only (docker run --read-only).
VOLUME ["/var/lib/attestd"]
# gRPC (listen) and Prometheus metrics (metrics_listen), as in
# deploy/attestd.example.toml.
EXPOSE 50051 9464
# SIGTERM: attestd stops accepting connections, drains the calls in flight
# and makes the last writes durable. Give it the stop budget the systemd
# unit and the Helm chart give it: docker stop --time 40.
STOPSIGNAL SIGTERM
# attestd health asks grpc.health.v1.Health/Check on 127.0.0.1:50051 and
# gives up after 3 s. For a TLS listener or another port set
# ATTESTD_HEALTH_ADDR, ATTESTD_HEALTH_CA_FILE, ATTESTD_HEALTH_SERVER_NAME.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/attestd", "health"]
ENTRYPOINT ["/usr/local/bin/attestd"]
# The configuration is mounted at /etc/attestd/attestd.toml; it must set
# data_dir = "/var/lib/attestd".
CMD ["serve", "--config", "/etc/attestd/attestd.toml"]
