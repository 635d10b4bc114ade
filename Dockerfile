# authgate container image.
#
#   docker build -t authgate:0.1.0 .
#   docker run --read-only -v authgate-state:/var/lib/authgate \
#     -v "$PWD/authgate.yaml:/etc/authgate/config/authgate.yaml:ro" -p 4180:4180 -p 9191:9191 authgate:0.1.0
#
# The final image is distroless (glibc, CA certificates, no shell), runs as
# uid 65532 and writes only to /var/lib/authgate (the embedded session
# store), so it runs with a read-only root filesystem. No HEALTHCHECK: the
# Helm chart probes /healthz and /readyz.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for b in policy session decision; do echo 'fn main() {}' > "benches/$b.rs"; done \
    && cargo fetch --locked
COPY src ./src
COPY benches ./benches
# The link layout (build.rs): 64 KiB segments, and (opted in here) the code
# order of bench/symbol-order.txt when this image's toolchain is the one
# that wrote it.
COPY build.rs ./
COPY bench/symbol-order.txt ./bench/
RUN AUTHGATE_CODE_LAYOUT=1 cargo build --release --locked --bin authgate \
    && mkdir -p /out/state \
    && cp target/release/authgate /out/authgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/authgate /usr/local/bin/authgate
# The embedded store's directory, owned by the runtime user.
COPY --from=build --chown=65532:65532 /out/state /var/lib/authgate
VOLUME ["/var/lib/authgate"]
USER 65532:65532
EXPOSE 4180 9191
ENV AUTHGATE_CONFIG=/etc/authgate/config/authgate.yaml
ENTRYPOINT ["/usr/local/bin/authgate"]
CMD ["serve"]
