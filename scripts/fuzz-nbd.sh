#!/usr/bin/env bash
# Fuzzes the NBD server's request and option decoders for a bounded time.
#
#   scripts/fuzz-nbd.sh [SECONDS]     (default 60)
#
# Needs a nightly toolchain (`rustup toolchain install nightly`) and
# cargo-fuzz (`cargo install cargo-fuzz --locked`). Not part of CI: run it
# after touching core/src/nbd/{request,option}.rs. Crashes land in
# fuzz/artifacts/nbd_parse/; reproduce one with
#   cargo +nightly fuzz run nbd_parse fuzz/artifacts/nbd_parse/<file>
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || {
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 1
}
rustup run nightly true 2>/dev/null || {
    echo "a nightly toolchain is needed: rustup toolchain install nightly" >&2
    exit 1
}
# cargo-fuzz builds with debug assertions on, so arithmetic overflow is a
# crash too. -max_len covers the largest option we parse (4 KiB strings).
exec cargo +nightly fuzz run nbd_parse -- -max_total_time="$seconds" -max_len=4200
