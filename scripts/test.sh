#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs every
# test of the workspace, including the root-only namespace tests, and a
# bounded fuzzing pass. Must run as root (the tests attach XDP programs and
# create network namespaces); fails loudly otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

require_root
log "installing dependencies (only what is missing)"
scripts/install-deps.sh

log "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building every binary (the end-to-end tests run them)"
cargo build --workspace --bins --locked

log "tests"
# Root tests create their own uniquely named namespaces; one test thread per
# binary keeps two XDP-heavy tests from fighting over the two CPUs.
cargo test --workspace --locked -- --test-threads=1

log "fuzzing (bounded)"
scripts/fuzz.sh "${SLUICE_FUZZ_SECONDS:-30}"

log "all tests passed"
