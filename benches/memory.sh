#!/usr/bin/env bash
# benches/memory.sh — peak RSS of `livemirror clone` on a large sparse source
# must stay within buf_size + 64 MiB, however large the disk.
#
# Usage: benches/memory.sh [--size 64G] [--buf-size 16M] [--dir DIR] [--livemirror PATH]
#
# Requirements: bash, coreutils, python3, time (GNU /usr/bin/time), qemu-utils.
# The source is a sparse file of --size with one 1 MiB random extent every
# 256 MiB (so a 64G source holds 256 MiB of data); the target is created by
# clone. Exit status 1 when the bound is broken or the copy differs.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SIZE=64G
BUF=16M
DIR=${TMPDIR:-/var/tmp}/livemirror-memory
LM=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --size) SIZE=$2; shift 2 ;;
        --buf-size) BUF=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --livemirror) LM=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [[ -z $LM ]]; then
    cargo build --release --quiet -p livemirror --manifest-path "$REPO/Cargo.toml"
    LM=$REPO/target/release/livemirror
fi

mkdir -p "$DIR"
SRC=$DIR/sparse-source.img
DST=$DIR/sparse-target.img
TIMEF=$DIR/time.txt
trap 'rm -f "$SRC" "$DST" "$TIMEF"' EXIT
rm -f "$SRC" "$DST"
qemu-img create -q -f raw "$SRC" "$SIZE"
python3 - "$SRC" <<'EOF'
import os, sys
with open(sys.argv[1], "r+b") as f:
    size = os.fstat(f.fileno()).st_size
    for off in range(0, size, 256 << 20):
        os.pwrite(f.fileno(), os.urandom(1 << 20), off)
EOF

/usr/bin/time -v -o "$TIMEF" "$LM" clone --buf-size "$BUF" "$SRC" "$DST" > /dev/null 2>&1
rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TIMEF")
secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$TIMEF")
to_bytes() { python3 -c "import sys; s=sys.argv[1].upper(); m={'K':10,'M':20,'G':30,'T':40}; print(int(float(s[:-1])*(1<<m[s[-1]])) if s[-1] in m else int(s))" "$1"; }
limit_kib=$(( ($(to_bytes "$BUF") + (64 << 20)) / 1024 ))
same=NO
qemu-img compare -q -f raw -F raw "$SRC" "$DST" && same=yes
echo "source $SIZE sparse ($(( $(stat -c '%b * %B' "$SRC") >> 20 )) MiB data), buf-size $BUF: " \
     "peak RSS $(( rss_kib / 1024 )) MiB (limit $(( limit_kib / 1024 )) MiB), $secs, target $(( $(stat -c '%b * %B' "$DST") >> 20 )) MiB allocated, identical $same"
(( rss_kib <= limit_kib )) && [[ $same == yes ]]
