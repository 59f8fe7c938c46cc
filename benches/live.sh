#!/usr/bin/env bash
# benches/live.sh — a live mirror under a paced writer: livemirror serve beside
# QEMU's mirror in qemu-storage-daemon, same image, same writer, one run.
#
# Usage: benches/live.sh [--size 2G] [--reps 1] [--rate 1000] [--before 5]
#            [--after 5] [--dir DIR] [--livemirror PATH] [--keep]
#            [--target-caches "default direct writeback writebehind"]
#        benches/live.sh --complete-latency [--size 512M] [--rate 50]
#            [--speed 8M] [--dirty 48M] [--reps 3] [--old-livemirror PATH] …
#
# Requirements (Debian package names): bash, coreutils, python3, qemu-utils
# (qemu-img, qemu-storage-daemon), cargo (unless --livemirror).
#
# The writer (benches/live.py) is a small NBD client writing random 64 KiB
# blocks at --rate per second, one at a time, to the source's NBD export. For
# each tool and copy mode it reports the time from the mirror's start to
# Ready and the writer's IOPS: before (export alone), during the bulk copy,
# and for --after seconds after Ready; "kept" is during/before. livemirror
# also runs "switch": started in background mode and switched to
# write-blocking over its control socket at once (the target cache it was
# opened with is the background one). The target is
# checked with qemu-img compare after Complete (the writer stops first).
#
# --target-caches runs livemirror once per `serve --target-cache` value
# named ("default": serve's own choice; the default list is just that).
#
# --complete-latency measures Complete instead (background mode): after
# Ready the job's speed is set to --speed and the writer (--rate, default
# 50/s = 3.1 MiB/s, below the speed so the job converges) runs --before
# seconds as the baseline; then the job is paused, the writer writes --dirty
# bytes of consecutive fresh blocks, the job is resumed and `complete` /
# `block-job-complete` is sent with each tool reporting what is left to copy
# (livemirror: query dirty + in-flight; QEMU: query-block-jobs len - offset).
# Every write from the command until COMPLETED / BLOCK_JOB_COMPLETED counts.
# The writer goes on for --after seconds (its writes now go to the target
# only, for both tools), stops, and the target must equal the original
# image with every write replayed in order. --old-livemirror PATH adds a row for another
# livemirror binary (e.g. one built before a change).
#
# livemirror rows need `livemirror serve SRC --mirror-to DST --nbd unix:PATH
# --control unix:PATH [--copy-mode M]` (DESIGN §6); with a binary that has no
# `serve` yet they are skipped with a notice.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SIZE=""
REPS=1
RATE=""
BEFORE=5
AFTER=5
DIR=${TMPDIR:-/var/tmp}/livemirror-live
LM=""
KEEP=0
CACHES=default
COMPLETE=0
SPEED=8M
DIRTY=48M
OLD=""

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
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
        --complete-latency) COMPLETE=1; shift ;;
        --speed) SPEED=$2; shift 2 ;;
        --dirty) DIRTY=$2; shift 2 ;;
        --old-livemirror) OLD=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option $1" >&2; usage 2 ;;
    esac
done

if (( COMPLETE )); then
    : "${SIZE:=512M}" "${RATE:=50}"
else
    : "${SIZE:=2G}" "${RATE:=1000}"
fi

for t in python3 qemu-img qemu-storage-daemon; do
    command -v "$t" >/dev/null || { echo "live.sh: needs $t" >&2; exit 1; }
done
if [[ -z $LM ]]; then
    cargo build --release --quiet -p livemirror --manifest-path "$REPO/Cargo.toml"
    LM=$REPO/target/release/livemirror
fi

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
SRC=$DIR/source-$SIZE.img
DST=$DIR/target.img
trap 'rm -f "$DST" "$DST.expected" "$DIR"/*.sock; (( KEEP )) || rm -f "$SRC"' EXIT
[[ -f $SRC ]] || { echo "making the source image ($SIZE)…" >&2; qemu-img create -q -f raw "$SRC" "$SIZE";
                   python3 -c "
import os, sys
with open(sys.argv[1], 'r+b') as f:
    size = os.fstat(f.fileno()).st_size
    for off in range(0, size, 1 << 24):
        f.write(os.urandom(min(1 << 24, size - off)))
" "$SRC"; }

modes="background write-blocking switch"
(( COMPLETE )) && modes=background
runs=()
if "$LM" serve --help >/dev/null 2>&1; then
    for cache in $CACHES; do
        tool=livemirror
        [[ $cache == default ]] || tool=livemirror/$cache
        for mode in $modes; do runs+=("$tool $mode"); done
    done
else
    echo "live.sh: $LM has no 'serve' subcommand yet: livemirror rows skipped" >&2
fi
[[ -n $OLD ]] && runs+=("livemirror-old background")
for tool in qsd qsd-direct; do
    for mode in $modes; do [[ $mode == switch ]] || runs+=("$tool $mode"); done
done

RESULTS=$DIR/live.txt
: > "$RESULTS"
for (( rep = 1; rep <= REPS; rep++ )); do
    for run in "${runs[@]}"; do
        read -r tool mode <<< "$run"
        extra=()
        bin=$LM
        [[ $tool == qsd-direct ]] && extra=(--qsd-direct)
        [[ $tool == livemirror/* ]] && extra=(--target-cache "${tool#livemirror/}")
        [[ $tool == livemirror-old ]] && bin=$OLD
        (( COMPLETE )) && extra+=(--complete-latency --speed "$SPEED" --dirty "$DIRTY")
        line=$(python3 "$HERE/live.py" "${tool%%[-/]*}" "$SRC" "$DST" --dir "$DIR" \
            --livemirror "$bin" --copy-mode "$mode" --rate "$RATE" --before "$BEFORE" \
            --after "$AFTER" "${extra[@]}")
        echo "$tool $mode rep $rep: $line" >&2
        echo "tool=$tool mode=$mode $line" >> "$RESULTS"
    done
done

if (( COMPLETE )); then
    python3 - "$RESULTS" "$RATE" "$SIZE" "$SPEED" "$DIRTY" <<'EOF'
import statistics, sys
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    kv = dict(f.split("=", 1) for f in line.split())
    rows[kv["tool"]].append(kv)
rate, size, speed, dirty = sys.argv[2:6]
print(f"\n### Complete: {size} source, writer {rate} × 64 KiB random writes/s, "
      f"speed {speed}/s, {dirty} written fresh before Complete (medians of {max(map(len, rows.values()))})\n")
print("| tool | dirty at Complete MiB | complete → completed s | writes during | longest write ms "
      "| p50 ms | p99 ms | p99 before ms | identical |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
for tool, kvs in rows.items():
    m = lambda k: statistics.median(float(kv[k]) for kv in kvs)
    same = "yes" if all(kv["identical"] == "yes" for kv in kvs) else "**NO**"
    print(f"| {tool} | {m('dirty'):.1f} | {m('complete'):.2f} | {m('writes'):.0f} | {m('max'):.1f} "
          f"| {m('p50'):.1f} | {m('p99'):.1f} | {m('before_p99'):.1f} | {same} |")
EOF
    exit 0
fi

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
