#!/usr/bin/env bash
# Builds the Debian package: a release build of the app, then cargo-deb with
# the metadata in app/Cargo.toml ([package.metadata.deb]). Prints the path of
# the .deb on its last line.
#
# Needs cargo-deb (`cargo install cargo-deb --locked`); dpkg-shlibdeps (package
# dpkg-dev) fills in the libc dependency.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deb >/dev/null || {
    echo "cargo-deb is missing: cargo install cargo-deb --locked" >&2
    exit 1
}
# --strip: lintian rejects unstripped binaries; line tables are for local
# debugging, not for the package.
cargo deb -p livemirror --strip "$@" | tail -n 1
