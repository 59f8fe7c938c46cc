#!/usr/bin/env bash
# Cross-builds livemirror.exe for 64-bit Windows and checks the Windows code
# on Linux, as far as Linux can:
#
#   scripts/build-windows.sh        # prints the path of the release .exe
#
# 1. clippy for x86_64-pc-windows-gnu (-D warnings): every cfg(windows) line
#    compiles and lints;
# 2. livemirror-core's unit tests, built for Windows, run under Wine (files:
#    positional I/O, zeroing, identity, errno mapping, the whole engine);
# 3. a release build linked by MinGW-w64, the payload of the .msi
#    (scripts/package-msi.sh) and of tests/tests/windows.rs (under Wine).
# Disks, volumes, named pipes and the window are not exercised here: Wine
# has no physical drives and no display (see the README, "What is tested
# where").
#
# Needs the rustup target x86_64-pc-windows-gnu (added if missing) and
# Debian's gcc-mingw-w64-x86-64 and wine64. The Wine prefix lives in
# target/wine (WINEPREFIX overrides).
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2

export WINEPREFIX=${WINEPREFIX:-$PWD/target/wine} WINEDEBUG=-all
wine=$(command -v wine64 || echo /usr/lib/wine/wine64)
[[ -x $wine ]] || { echo "wine64 is missing (apt-get install wine64)" >&2; exit 1; }
if [[ ! -f $WINEPREFIX/system.reg ]]; then
    "$wine" wineboot --init >&2 2>/dev/null
fi
# Rust's std draws random numbers from ProcessPrng in bcryptprimitives.dll
# (Windows 10 and later); Wine 8 (Debian 12) lacks that DLL. A stand-in
# built from scripts/wine/bcryptprimitives.c goes into the Wine prefix only,
# never into a package.
shim=$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll
if [[ ! -f $shim ]]; then
    x86_64-w64-mingw32-gcc -shared -O2 -o "$shim" \
        scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -lbcrypt
fi

cargo clippy -p livemirror-core --all-targets --target "$target" -- -D warnings >&2
cargo clippy -p livemirror --bins --target "$target" -- -D warnings >&2
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=$wine \
    cargo test -p livemirror-core --lib --target "$target" >&2
cargo build --release -p livemirror --target "$target" >&2
echo "${CARGO_TARGET_DIR:-target}/$target/release/livemirror.exe"
