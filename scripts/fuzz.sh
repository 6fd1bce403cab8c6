#!/usr/bin/env bash
# Run sluice's cargo-fuzz targets for a bounded time each.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Defaults: 60 seconds, every target (classify, wire_parse, tcp_segment in
# dataplane/netstack/fuzz; http_server in dataplane/http/fuzz; tls_server
# in dataplane/tls/fuzz; h2_frames in dataplane/h2/fuzz; hpack_decode in
# dataplane/h2codec/fuzz).
# Non-interactive; exits non-zero if any target finds a crash (the input is
# saved under CRATE/fuzz/artifacts/TARGET/). Installs cargo-fuzz if missing.
#
# Toolchain: cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address).
# With a nightly toolchain installed it runs `cargo +nightly fuzz`. Otherwise
# it falls back to stable with RUSTC_BOOTSTRAP=1, which works only for a
# release build without debug assertions (`-O`): cargo-fuzz's default build
# adds -Cdebug-assertions, and with that rustc 1.95 stable still refuses -Z.
#
# FUZZ_TOOLCHAIN=stable forces the fallback (to check it); =nightly requires nightly.
#
# Corpus: libFuzzer writes new inputs to fuzz/corpus/TARGET (git-ignored) and
# reads the committed seeds in fuzz/seeds (netstack: every frame of
# tests/fixtures/*.pcap, plus tcpseg-* op scripts for tcp_segment; http:
# request pipelines in the harness's layout; h2codec: the RFC 7541 C.4 and
# C.6 header blocks in the harness's layout).
set -euo pipefail

SECS=${1:-60}
shift || true
case "$SECS" in
    '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac
TARGETS=("$@")
if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(classify wire_parse tcp_segment http_server http_client tls_server h2_frames hpack_decode)
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# The fuzz crate (its own workspace) that holds TARGET.
fuzz_dir() {
    case "$1" in
        http_server | http_client) echo "$ROOT/dataplane/http/fuzz" ;;
        tls_server) echo "$ROOT/dataplane/tls/fuzz" ;;
        h2_frames) echo "$ROOT/dataplane/h2/fuzz" ;;
        hpack_decode) echo "$ROOT/dataplane/h2codec/fuzz" ;;
        *) echo "$ROOT/dataplane/netstack/fuzz" ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

TOOLCHAIN=()
BUILD_FLAGS=()
WANT=${FUZZ_TOOLCHAIN:-auto}
if [ "$WANT" != stable ] && command -v rustup >/dev/null 2>&1 &&
    rustup run nightly rustc --version >/dev/null 2>&1; then
    TOOLCHAIN=(+nightly)
    echo "fuzz: using $(rustup run nightly rustc --version)"
elif [ "$WANT" != stable ] && rustc --version | grep -q -- '-nightly'; then
    echo "fuzz: using $(rustc --version)"
elif [ "$WANT" = nightly ]; then
    echo "fuzz: FUZZ_TOOLCHAIN=nightly but no nightly toolchain is installed" >&2
    exit 2
else
    export RUSTC_BOOTSTRAP=1
    BUILD_FLAGS=(-O)
    echo "fuzz: no nightly toolchain; $(rustc --version) with RUSTC_BOOTSTRAP=1, -O"
fi

passed=0
failed=0
for t in "${TARGETS[@]}"; do
    FUZZ_DIR=$(fuzz_dir "$t")
    cd "$FUZZ_DIR"
    mkdir -p "corpus/$t"
    echo "fuzz: $t for ${SECS}s"
    if cargo "${TOOLCHAIN[@]}" fuzz run "${BUILD_FLAGS[@]}" "$t" "corpus/$t" seeds -- \
        -max_total_time="$SECS" -timeout=10 -print_final_stats=1; then
        passed=$((passed + 1))
    else
        echo "fuzz: $t FAILED (see $FUZZ_DIR/artifacts/$t/)" >&2
        failed=$((failed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
