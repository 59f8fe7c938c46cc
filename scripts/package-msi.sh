#!/usr/bin/env bash
# Compiles the Windows installer definition packaging/windows/livemirror.wxs
# with Debian's wixl (packages wixl and msitools) into target/wix/.
#
#   scripts/package-msi.sh [PATH/TO/livemirror.exe]
#
# On Linux no Windows binary can be built here, so without an argument the
# Linux release binary (target/release/livemirror) STANDS IN as the payload
# only to prove that the definition compiles: the resulting .msi is NOT an
# installable Windows package. For a real one, build on Windows
# (cargo build --release) and pass target\release\livemirror.exe, or compile
# the same .wxs with the WiX v3 toolset, from packaging\windows (its source
# paths are relative to that folder):
#   candle -arch x64 -dVersion=0.1.0 -dBinary=..\..\target\release\livemirror.exe livemirror.wxs
#   light livemirror.wixobj -o livemirror.msi
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-target/release/livemirror}
[[ -f $binary ]] || {
    echo "no payload at $binary (build it first: cargo build --release -p livemirror)" >&2
    exit 1
}
version=$(cargo pkgid -p livemirror | sed 's/.*[#@]//')
out=target/wix/livemirror-$version-x86_64.msi
mkdir -p target/wix
# wixl resolves every Source path relative to the .wxs file's directory.
payload=$(realpath --relative-to=packaging/windows "$binary")
wixl -a x64 -D Version="$version" -D Binary="$payload" -o "$out" packaging/windows/livemirror.wxs
msiinfo suminfo "$out" >/dev/null # a well-formed database, or this fails
echo "$out"
