#!/usr/bin/env bash
# benches/reflink.sh — livemirror clone between two files of one filesystem
# that shares extents (XFS, btrfs), beside `cp --reflink=always` and
# `qemu-img convert -C` (copy offloading), interleaved in one run, medians.
#
# Usage: benches/reflink.sh [--size 2G] [--reps 3] [--livemirror PATH]
#
# Needs root (loop devices, mount) and the Debian packages xfsprogs,
# btrfs-progs, qemu-utils, util-linux, python3. Each filesystem lives on a
# loop device over a file in /dev/shm, so the disk under it is memory and
# what is timed is the filesystem's work. Every target is checked with
# `cmp` and its shared extents counted with filefrag.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SIZE=2G
REPS=3
LM=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --size) SIZE=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --livemirror) LM=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
[[ $(id -u) -eq 0 ]] || { echo "reflink.sh: needs root (loop devices, mount)" >&2; exit 1; }
for t in mkfs.xfs mkfs.btrfs qemu-img filefrag losetup python3; do
    command -v "$t" >/dev/null || { echo "reflink.sh: needs $t" >&2; exit 1; }
done
if [[ -z $LM ]]; then
    echo "building livemirror (release)…" >&2
    cargo build --release --quiet -p livemirror --manifest-path "$REPO/Cargo.toml"
    LM=$REPO/target/release/livemirror
fi

BYTES=$(python3 -c "import sys; s=sys.argv[1].upper(); m={'K':10,'M':20,'G':30}; print(int(float(s[:-1])*(1<<m[s[-1]])) if s[-1] in m else int(s))" "$SIZE")
WORK=$(mktemp -d /dev/shm/lm-reflink.XXXXXX)
MNT=$WORK/mnt
mkdir -p "$MNT"
LOOP=""
cleanup() {
    mountpoint -q "$MNT" && umount "$MNT"
    [[ -n $LOOP ]] && losetup -d "$LOOP"
    rm -rf "$WORK"
}
trap cleanup EXIT

now() { date +%s.%N; }

run_tool() {
    local tool=$1 src=$MNT/src.img dst=$MNT/dst.img t0 t1
    rm -f "$dst"
    sync
    t0=$(now)
    case $tool in
        livemirror) "$LM" clone "$src" "$dst" 2> "$WORK/lm.log" ;;
        cp-reflink) cp --reflink=always "$src" "$dst" && sync "$dst" ;;
        qemu-img-C) qemu-img convert -C -O raw "$src" "$dst" && sync "$dst" ;;
    esac
    t1=$(now)
    cmp -s "$src" "$dst" || { echo "reflink.sh: $tool's copy differs" >&2; exit 1; }
    local shared
    shared=$(filefrag -v "$dst" | grep -c shared || true)
    echo "$(python3 -c "print(f'{$t1 - $t0:.4f}')") $shared"
}

echo "| filesystem | tool | median s | × cp --reflink | shared extents |"
echo "|---|---|---:|---:|---:|"
for fs in xfs btrfs; do
    rm -f "$WORK/disk"
    truncate -s $(( BYTES * 3 )) "$WORK/disk"
    LOOP=$(losetup -f --show "$WORK/disk")
    case $fs in
        xfs) mkfs.xfs -q -f -m reflink=1 "$LOOP" ;;
        btrfs) mkfs.btrfs -q -f "$LOOP" ;;
    esac
    mount -o noatime "$LOOP" "$MNT"
    head -c "$BYTES" /dev/urandom > "$MNT/src.img"
    sync
    declare -A times=() shared=()
    tools=(livemirror cp-reflink qemu-img-C)
    for ((r = 0; r < REPS; r++)); do
        for ((i = 0; i < ${#tools[@]}; i++)); do
            tool=${tools[(i + r) % ${#tools[@]}]}
            read -r secs ext < <(run_tool "$tool")
            times[$tool]+="$secs "
            shared[$tool]=$ext
        done
    done
    median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.4f}')" $1; }
    base=$(median "${times[cp-reflink]}")
    for tool in "${tools[@]}"; do
        m=$(median "${times[$tool]}")
        echo "| $fs | $tool | $m | $(python3 -c "print(f'{$m / $base:.2f}')") | ${shared[$tool]} |"
    done
    umount "$MNT"
    losetup -d "$LOOP"
    LOOP=""
done
echo
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, kernel $(uname -r), image $SIZE of random data, $REPS reps interleaved; the filesystems on loop devices over /dev/shm"
