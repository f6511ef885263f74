#!/usr/bin/env bash
# The test command: installs what the tests need (scripts/setup.sh, cached),
# starts a real Kafka-protocol broker (Nisshi 0.8.1) and PostgreSQL
# (scripts/services.sh), runs the whole workspace test suite with
# cargo-nextest, and stops the servers.
# Extra arguments go to `cargo nextest run`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
trap 'scripts/services.sh stop' EXIT
eval "$(scripts/services.sh start)"

cargo nextest run --workspace --no-fail-fast "$@"
