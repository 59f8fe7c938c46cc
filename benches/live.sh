#!/usr/bin/env bash
# benches/live.sh — a live mirror under a paced writer: livemirror serve beside
# QEMU's mirror in qemu-storage-daemon, same image, same writer, one run.
#
# Usage: benches/live.sh [--size 2G] [--reps 1] [--rate 1000] [--before 5]
#            [--after 5] [--dir DIR] [--livemirror PATH] [--keep]
#            [--target-caches "default direct writeback writebehind"]
#
# Requirements (Debian package names): bash, coreutils, python3, qemu-utils
# (qemu-img, qemu-storage-daemon), cargo (unless --livemirror).
#
# The writer (benches/live.py) is a small NBD client writing random 64 KiB
# blocks at --rate per second, one at a time, to the source's NBD export. For
# each tool and copy mode it reports the time from the mirror's start to
# Ready and the writer's IOPS: before (export alone), during the bulk copy,
# and for --after seconds after Ready; "kept" is during/before. The target is
# checked with qemu-img compare after Complete (the writer stops first).
#
# --target-caches runs livemirror once per `serve --target-cache` value
# named ("default": serve's own choice; the default list is just that).
#
# livemirror rows need `livemirror serve SRC --mirror-to DST --nbd unix:PATH
# --control unix:PATH [--copy-mode M]` (DESIGN §6); with a binary that has no
# `serve` yet they are skipped with a notice.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SIZE=2G
REPS=1
RATE=1000
BEFORE=5
AFTER=5
DIR=${TMPDIR:-/var/tmp}/livemirror-live
LM=""
KEEP=0
CACHES=default

usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --size) SIZE=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --before) BEFORE=$2; shift 2 ;;
        --after) AFTER=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --livemirror) LM=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --target-caches) CACHES=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option $1" >&2; usage 2 ;;
    esac
done

for t in python3 qemu-img qemu-storage-daemon; do
    command -v "$t" >/dev/null || { echo "live.sh: needs $t" >&2; exit 1; }
done
if [[ -z $LM ]]; then
    cargo build --release --quiet -p livemirror --manifest-path "$REPO/Cargo.toml"
    LM=$REPO/target/release/livemirror
fi

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
SRC=$DIR/source.img
DST=$DIR/target.img
trap 'rm -f "$DST" "$DIR"/*.sock; (( KEEP )) || rm -f "$SRC"' EXIT
[[ -f $SRC ]] || { echo "making the source image ($SIZE)…" >&2; qemu-img create -q -f raw "$SRC" "$SIZE";
                   python3 -c "
import os, sys
with open(sys.argv[1], 'r+b') as f:
    size = os.fstat(f.fileno()).st_size
    for off in range(0, size, 1 << 24):
        f.write(os.urandom(min(1 << 24, size - off)))
" "$SRC"; }

runs=()
if "$LM" serve --help >/dev/null 2>&1; then
    for cache in $CACHES; do
        tool=livemirror
        [[ $cache == default ]] || tool=livemirror/$cache
        runs+=("$tool background" "$tool write-blocking")
    done
else
    echo "live.sh: $LM has no 'serve' subcommand yet: livemirror rows skipped" >&2
fi
runs+=("qsd background" "qsd write-blocking" "qsd-direct background" "qsd-direct write-blocking")

RESULTS=$DIR/live.txt
: > "$RESULTS"
for (( rep = 1; rep <= REPS; rep++ )); do
    for run in "${runs[@]}"; do
        read -r tool mode <<< "$run"
        extra=()
        [[ $tool == qsd-direct ]] && extra=(--qsd-direct)
        [[ $tool == livemirror/* ]] && extra=(--target-cache "${tool#livemirror/}")
        line=$(python3 "$HERE/live.py" "${tool%%[-/]*}" "$SRC" "$DST" --dir "$DIR" \
            --livemirror "$LM" --copy-mode "$mode" --rate "$RATE" --before "$BEFORE" \
            --after "$AFTER" "${extra[@]}")
        echo "$tool $mode rep $rep: $line" >&2
        echo "tool=$tool mode=$mode $line" >> "$RESULTS"
    done
done

python3 - "$RESULTS" "$RATE" "$SIZE" <<'EOF'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    kv = dict(f.split("=", 1) for f in line.split())
    rows[(kv["tool"], kv["mode"])].append(kv)
print(f"\n### live: {sys.argv[3]} source, writer {sys.argv[2]} × 64 KiB random writes/s (medians)\n")
print("| tool | copy mode | to Ready s | writer IOPS before | during bulk copy | after Ready | kept during | identical |")
print("|---|---|---:|---:|---:|---:|---:|---|")
for (tool, mode), kvs in rows.items():
    m = lambda k: statistics.median(float(kv[k]) for kv in kvs)
    same = "yes" if all(kv["identical"] == "yes" for kv in kvs) else "**NO**"
    print(f"| {tool} | {mode} | {m('ready'):.2f} | {m('before'):.0f} | {m('during'):.0f} | {m('after'):.0f} | {100 * m('kept'):.0f}% | {same} |")
EOF
