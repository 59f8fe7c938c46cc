#!/usr/bin/env bash
# Compiles the Windows installer definition packaging/windows/livemirror.wxs
# with Debian's wixl (packages wixl and msitools) into target/wix/.
#
#   scripts/package-msi.sh [PATH/TO/livemirror.exe]
#
# The payload defaults to the .exe that scripts/build-windows.sh cross-builds
# (x86_64-pc-windows-gnu, release). On Windows, the same .wxs compiles with
# the WiX v3 toolset, from packaging\windows (its source paths are relative
# to that folder):
#   candle -arch x64 -dVersion=0.1.0 -dBinary=..\..\target\release\livemirror.exe livemirror.wxs
#   light livemirror.wixobj -o livemirror.msi
set -euo pipefail
cd "$(dirname "$0")/.."

binary=${1:-${CARGO_TARGET_DIR:-target}/x86_64-pc-windows-gnu/release/livemirror.exe}
[[ -f $binary ]] || {
    echo "no payload at $binary (build it first: scripts/build-windows.sh)" >&2
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
