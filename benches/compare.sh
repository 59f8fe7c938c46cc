#!/usr/bin/env bash
# benches/compare.sh — livemirror clone beside the copy tools and QEMU's own
# mirror, on the same images, interleaved in one run, medians and ratios.
#
# Usage: benches/compare.sh [--size 2G] [--reps 3] [--dir DIR]
#            [--images "random sparse zeros"] [--fresh "random"]
#            [--tools "livemirror dd-fsync ..."] [--livemirror PATH] [--keep]
#
# Requirements (Debian package names): bash, coreutils, python3, time
# (GNU /usr/bin/time for peak RSS), qemu-utils (qemu-img,
# qemu-storage-daemon), libnbd-bin (nbdcopy), cargo (unless --livemirror).
#
# Images (in DIR, which must be on the filesystem under test):
#   random  SIZE bytes from /dev/urandom
#   sparse  a hole of SIZE with 25% data in scattered 1 MiB extents
#   zeros   SIZE zero bytes, written (allocated, not sparse)
#
# Every tool copies every image REPS times; within a repetition the tools run
# one after the other in a rotating order, so slow phases of a shared machine
# hit them alike. Each target is checked with `qemu-img compare` and its
# allocated size recorded; peak RSS comes from `/usr/bin/time -v`.
#
# Memory regimes. On VMs whose host takes back memory the guest frees (free
# page reporting), writing into the page cache costs several times more when
# the pages come from memory the host has reclaimed ("fresh") than when they
# were freed a moment ago and are still backed ("recycled"):
#   recycled  the source is read into the cache, then a ballast file of SIZE
#             is written through the page cache and deleted right before
#             the run, so the run's page-cache writes reuse just-freed pages;
#   fresh     the source is read into the cache, then we sleep FRESH_WAIT
#             seconds (default 8; the kernel reports free pages after ~2 s),
#             so every free page has gone back to the host.
# Recycled runs on every image; fresh on the images named by --fresh.
#
# Tools (a "durable" copy each: everything ends with the data flushed):
#   livemirror     livemirror clone SRC DST (release build; its default
#                  target cache, writebehind)
#   livemirror-nv  livemirror clone --no-verify SRC DST: the copy alone, as
#                  the peers make it (plain `clone` of an image nobody shares
#                  reads both files once more to prove them identical,
#                  unless it could hold a lease on the source: see README)
#   livemirror-bufN  the same with --buf-size N (not run unless named in
#                  --tools, e.g. livemirror-buf64M: 16 operations of 4 MiB)
#   livemirror-direct, livemirror-writeback, livemirror-writebehind
#                  the same with that --target-cache (not run unless named)
#   dd-fsync       dd bs=1M conv=fsync
#   dd-direct      dd bs=1M oflag=direct conv=fsync
#   cp             cp --sparse=always, then sync DST
#   qemu-img       qemu-img convert -O raw -W -m 16 -t writeback (the default
#                  cache mode of convert is "unsafe", which never flushes)
#   qemu-img-none  qemu-img convert -O raw -W -m 16 -t none
#   nbdcopy        nbdcopy --flush
#   qsd-buffered   QEMU's mirror in qemu-storage-daemon, cache.direct=off
#   qsd-direct     the same with cache.direct=on (aio=native)
# The QEMU mirror rows time blockdev-mirror → COMPLETED (and report Ready).

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SIZE=2G
REPS=3
DIR=${TMPDIR:-/var/tmp}/livemirror-bench
IMAGES="random sparse zeros"
FRESH="random"
FRESH_WAIT=${FRESH_WAIT:-8}
ALL_TOOLS="livemirror nbdcopy qemu-img-none qemu-img qsd-direct qsd-buffered dd-direct dd-fsync cp"
TOOLS=$ALL_TOOLS
LM=""
KEEP=0

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --size) SIZE=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --images) IMAGES=$2; shift 2 ;;
        --fresh) FRESH=$2; shift 2 ;;
        --tools) TOOLS=$2; shift 2 ;;
        --livemirror) LM=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option $1" >&2; usage 2 ;;
    esac
done

need() { command -v "$1" >/dev/null || { echo "compare.sh: needs $1 (package $2)" >&2; exit 1; }; }
need python3 python3
need qemu-img qemu-utils
need qemu-storage-daemon qemu-utils
need nbdcopy libnbd-bin
[[ -x /usr/bin/time ]] || { echo "compare.sh: needs GNU time at /usr/bin/time (package time)" >&2; exit 1; }

if [[ -z $LM ]]; then
    need cargo cargo
    echo "building livemirror (release)…" >&2
    cargo build --release --quiet -p livemirror --manifest-path "$REPO/Cargo.toml"
    LM=$REPO/target/release/livemirror
fi

BYTES=$(python3 -c "import sys; s=sys.argv[1].upper(); m={'K':10,'M':20,'G':30,'T':40}; print(int(float(s[:-1])*(1<<m[s[-1]])) if s[-1] in m else int(s))" "$SIZE")
(( BYTES % (1 << 20) == 0 )) || { echo "compare.sh: --size must be a whole number of MiB" >&2; exit 2; }
MIB=$(( BYTES >> 20 ))

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
DST=$DIR/target.img
TIMEF=$DIR/time.txt
LOG=$DIR/tool.log
CSV=$DIR/results.csv
cleanup() {
    rm -f "$DST" "$DIR/ballast" "$TIMEF" "$LOG" "$DIR/qmp.sock"
    if (( ! KEEP )); then rm -f "$DIR"/{random,sparse,zeros}.img; fi
}
trap cleanup EXIT

describe_machine() {
    echo "## Machine"
    echo
    echo "* $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, load before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "* kernel $(uname -r); $DIR on $(df -T "$DIR" | awk 'NR==2 {print $2 " (" $1 ")"}')"
    echo "* $("$LM" --version), $(qemu-img --version | head -1), $(nbdcopy --version | head -1), $(dd --version | head -1)"
    echo "* image size $SIZE, $REPS repetitions, medians; fresh wait ${FRESH_WAIT}s"
    echo
}

make_images() {
    for image in $IMAGES; do
        local f=$DIR/$image.img
        if [[ -f $f && $(stat -c %s "$f") == "$BYTES" ]]; then continue; fi
        rm -f "$f"
        echo "making $image image ($SIZE)…" >&2
        case $image in
            random) head -c "$BYTES" /dev/urandom > "$f" ;;
            zeros) dd if=/dev/zero of="$f" bs=1M count="$MIB" conv=fsync status=none ;;
            sparse) python3 - "$f" "$MIB" <<'EOF'
import os, random, sys
path, mib = sys.argv[1], int(sys.argv[2])
random.seed(25)  # the same layout every run
with open(path, "wb") as f:
    f.truncate(mib << 20)
    for i in sorted(random.sample(range(mib), max(1, mib // 4))):
        os.pwrite(f.fileno(), os.urandom(1 << 20), i << 20)
    os.fsync(f.fileno())
EOF
            ;;
            *) echo "unknown image $image" >&2; exit 2 ;;
        esac
    done
}

# Puts the page cache in the wanted state, right before a run.
prepare() {
    local src=$1 regime=$2
    cat "$src" > /dev/null
    case $regime in
        recycled)
            head -c "$BYTES" /dev/zero > "$DIR/ballast"
            rm -f "$DIR/ballast"
            ;;
        fresh) sleep "$FRESH_WAIT" ;;
    esac
}

# Runs one tool on SRC → $DST; prints "seconds ready_seconds" ("-" when the
# tool has no Ready), leaves /usr/bin/time's report in $TIMEF and the tool's
# stderr in $LOG.
run_tool() {
    local tool=$1 src=$2 t0 t1 out
    local timed=(/usr/bin/time -v -o "$TIMEF")
    case $tool in
        qsd-*) truncate -s "$BYTES" "$DST" ;;
    esac
    t0=$(date +%s.%N)
    case $tool in
        livemirror) "${timed[@]}" "$LM" clone "$src" "$DST" > /dev/null ;;
        livemirror-nv) "${timed[@]}" "$LM" clone --no-verify "$src" "$DST" > /dev/null ;;
        livemirror-buf*) "${timed[@]}" "$LM" clone --buf-size "${tool#livemirror-buf}" "$src" "$DST" > /dev/null ;;
        livemirror-direct|livemirror-writeback|livemirror-writebehind)
            "${timed[@]}" "$LM" clone --target-cache "${tool#livemirror-}" "$src" "$DST" > /dev/null ;;
        dd-fsync) "${timed[@]}" dd if="$src" of="$DST" bs=1M conv=fsync status=none ;;
        dd-direct) "${timed[@]}" dd if="$src" of="$DST" bs=1M oflag=direct conv=fsync status=none ;;
        cp) "${timed[@]}" sh -c 'cp --sparse=always "$1" "$2" && sync "$2"' _ "$src" "$DST" ;;
        qemu-img) "${timed[@]}" qemu-img convert -O raw -W -m 16 -t writeback "$src" "$DST" ;;
        qemu-img-none) "${timed[@]}" qemu-img convert -O raw -W -m 16 -t none "$src" "$DST" ;;
        nbdcopy) "${timed[@]}" nbdcopy --flush "$src" "$DST" ;;
        qsd-buffered|qsd-direct)
            local direct=off
            [[ $tool == qsd-direct ]] && direct=on
            out=$(python3 "$HERE/qsd_mirror.py" "$src" "$DST" --direct "$direct" \
                --socket "$DIR/qmp.sock" --time-output "$TIMEF")
            # Timed inside, from blockdev-mirror: daemon start-up excluded.
            echo "${out#*complete=} $(sed 's/ready=\([0-9.]*\).*/\1/' <<< "$out")"
            return
            ;;
        *) echo "unknown tool $tool" >&2; exit 2 ;;
    esac
    t1=$(date +%s.%N)
    echo "$(python3 -c "print(f'{$t1 - $t0:.3f}')") -"
}

measure() {
    local tool=$1 image=$2 regime=$3 rep=$4 src=$DIR/$2.img secs ready rss alloc same
    rm -f "$DST"
    prepare "$src" "$regime"
    local out
    out=$(run_tool "$tool" "$src" 2> "$LOG") || {
        echo "compare.sh: $tool failed on $image:" >&2; cat "$LOG" >&2; exit 1; }
    read -r secs ready <<< "$out"
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$TIMEF")
    cpu=$(awk -F': ' '/(User|System) time \(seconds\)/ {t += $2; n++} END {if (n) print t; else print "-"}' "$TIMEF")
    alloc=$(( $(stat -c '%b * %B' "$DST") ))
    if qemu-img compare -q -f raw -F raw "$src" "$DST"; then same=yes; else same=NO; fi
    echo "$tool,$image,$regime,$rep,$secs,$ready,$rss,$alloc,$same,$cpu" >> "$CSV"
    printf '%-14s %-7s %-9s rep %d: %7.3f s  rss %6d KiB  alloc %6d MiB  identical %s\n' \
        "$tool" "$image" "$regime" "$rep" "$secs" "$rss" $(( alloc >> 20 )) "$same" >&2
    rm -f "$DST"
}

summarize() {
    python3 - "$CSV" "$BYTES" <<'EOF'
import csv, statistics, sys
from collections import defaultdict
path, size = sys.argv[1], int(sys.argv[2])
runs = defaultdict(list)
for r in csv.DictReader(open(path)):
    runs[(r["image"], r["regime"], r["tool"])].append(r)
groups = sorted({(i, g) for i, g, _ in runs}, key=lambda k: (["random", "sparse", "zeros"].index(k[0]), k[1]))
med = lambda rows, f: statistics.median(float(r[f]) for r in rows)
for image, regime in groups:
    tools = {t: rows for (i, g, t), rows in runs.items() if (i, g) == (image, regime)}
    base_tool = next((t for t in ("livemirror", "livemirror-nv") if t in tools), None)
    base = med(tools[base_tool], "seconds") if base_tool else None
    print(f"\n### {image}, {regime} memory\n")
    print("| tool | seconds | MB/s | × livemirror | CPU s/GiB | to Ready s | peak RSS MiB | target alloc MiB | identical |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for tool, rows in sorted(tools.items(), key=lambda kv: med(kv[1], "seconds")):
        s = med(rows, "seconds")
        ratio = f"{s / base:.2f}" if base else "-"
        ready = f"{med(rows, 'ready'):.2f}" if rows[0]["ready"] != "-" else "-"
        rss = max(int(r["rss_kib"]) for r in rows) / 1024
        alloc = max(int(r["alloc_bytes"]) for r in rows) / (1 << 20)
        same = "yes" if all(r["identical"] == "yes" for r in rows) else "**NO**"
        cpu = "-" if rows[0]["cpu_seconds"] == "-" else f"{med(rows, 'cpu_seconds') / (size / (1 << 30)):.2f}"
        print(f"| {tool} | {s:.2f} | {size / 1e6 / s:.0f} | {ratio} | {cpu} | {ready} | {rss:.0f} | {alloc:.1f} | {same} |")
EOF
}

make_images
echo "tool,image,regime,rep,seconds,ready,rss_kib,alloc_bytes,identical,cpu_seconds" > "$CSV"
read -r -a tools <<< "$TOOLS"
for (( rep = 1; rep <= REPS; rep++ )); do
    # Rotate the order each repetition so no tool always runs first.
    shift_by=$(( (rep - 1) % ${#tools[@]} ))
    order=("${tools[@]:shift_by}" "${tools[@]:0:shift_by}")
    for image in $IMAGES; do
        regimes=recycled
        [[ " $FRESH " == *" $image "* ]] && regimes="recycled fresh"
        for regime in $regimes; do
            for tool in "${order[@]}"; do
                measure "$tool" "$image" "$regime" "$rep"
            done
        done
    done
done

{
    echo "# livemirror clone vs peers — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    describe_machine
    summarize
} | tee "$DIR/summary.md"
echo >&2
echo "raw results: $CSV; table: $DIR/summary.md" >&2
