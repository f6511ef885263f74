# syntax=docker/dockerfile:1
# (The line above selects BuildKit's Dockerfile frontend, which RUN --mount needs.)
# One multi-stage image for every service of the checkout system.
# Build:  docker build -t blazing-sun-checkout .
# The compose file picks the binary per service with `command:`.

# The toolchain the project is built and tested with.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka (bundled by rdkafka) builds with make + a C compiler; both are in the rust image.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --bin gateway --bin checkout --bin blazing_sun --bin stripe-emulator --bin checkout-stack \
 && mkdir -p /out \
 && cp target/release/gateway target/release/checkout target/release/blazing_sun \
       target/release/stripe-emulator target/release/checkout-stack /out/

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /app app \
 && mkdir -p /app/data && chown app /app/data
COPY --from=build /out/ /usr/local/bin/
USER app
WORKDIR /app
