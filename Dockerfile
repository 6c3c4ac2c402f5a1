# syntax=docker/dockerfile:1
# The operator image: one static binary on distroless/static (CA certificates, /etc/nsswitch.conf,
# a nonroot user, nothing else). `cargo xtask test` builds the same binary the same way and checks
# that it is static and runs in an empty root, so this file cannot silently drift from what is tested.
# `cargo xtask image` reads this file's final stage and reproduces it without a Docker daemon (see
# xtask/src/image.rs): keep that stage to FROM, COPY --from, LABEL, USER, ENTRYPOINT and CMD.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# static-pie glibc binary: no loader and no shared libraries at run time. glibc >= 2.34 resolves
# names from /etc/hosts and DNS without loading NSS modules, which distroless/static provides for.
RUN RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --bin podcreds --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/podcreds /podcreds

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="podcreds" \
      org.opencontainers.image.description="Kubernetes operator that turns ServiceAccount tokens into short-lived AWS credentials in Secrets" \
      org.opencontainers.image.source="https://github.com/podcreds/podcreds" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /podcreds /podcreds
USER 65532:65532
ENTRYPOINT ["/podcreds"]
CMD ["run"]
