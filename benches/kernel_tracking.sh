#!/usr/bin/env bash
# benches/kernel_tracking.sh — what the kernel write tracker costs a writer:
# fio's 4 KiB O_DIRECT random writes (psync, queue depth 1) into a file on an
# ext4 filesystem mounted from a loop device, with tracking off and on,
# interleaved in one run (the order alternates per repetition); "kept" is
# on/off, and the last line the median of the repetitions' ratios. With
# bpftool installed it also turns on kernel.bpf_stats_enabled for the run
# (restored after) and reports what the program itself cost: completions
# it ran for and nanoseconds per run, which is the overhead a ratio on
# these shared VMs can only blur.
#
# Last, one fio run of the same writer during which the tracker does a
# Complete's hold once a second (freeze every filesystem of the device,
# barrier, drain, thaw: no copy) and reports how long writers were held.
#
# The loop device's file is in --dir, /dev/shm by default: in memory, so
# the disk below adds no noise and the tracker's cost per write is as large
# a share as it can be (a worst case; on a real disk it is smaller still).
#
# Usage (as root): benches/kernel_tracking.sh [--reps 3] [--runtime 10]
#            [--size 512M] [--dir /dev/shm]
#
# Requirements (Debian package names): fio, util-linux, e2fsprogs, mount,
# clang + libbpf-dev (to build the tracker), cargo; bpftool (optional).

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
REPS=3
RUNTIME=10
SIZE=512M
DIR=
while [[ $# -gt 0 ]]; do
    case $1 in
        --reps) REPS=$2; shift 2 ;;
        --runtime) RUNTIME=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v fio >/dev/null || { echo "fio is needed: apt-get install fio" >&2; exit 2; }

(cd "$REPO" && cargo build --release -q -p livemirror-core --example kernel_track)
HOLDER=$REPO/target/release/examples/kernel_track

WORK=$(mktemp -d "${DIR:-/dev/shm}/kernel-tracking.XXXXXX")
LOOP=
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
cleanup() {
    sysctl -q kernel.bpf_stats_enabled="$STATS_WAS" || true
    umount "$WORK/mnt" 2>/dev/null || true
    [[ -n $LOOP ]] && losetup -d "$LOOP" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

truncate -s "$SIZE" "$WORK/disk.img"
LOOP=$(losetup --find --show "$WORK/disk.img")
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$LOOP"
mkdir "$WORK/mnt"
mount -o noatime "$LOOP" "$WORK/mnt"
# The file fio writes, laid out once so each run overwrites in place.
fio --name=prep --filename="$WORK/mnt/data" --size=256M --rw=write --bs=1M \
    --direct=1 --output=/dev/null

iops() {
    fio --name=w --filename="$WORK/mnt/data" --size=256M --rw=randwrite --bs=4k \
        --direct=1 --ioengine=psync --time_based --runtime="$RUNTIME" \
        --randseed=$1 --output-format=json |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["iops"]))'
}

tracked() {
    coproc TRACK { "$HOLDER" "$LOOP"; }
    read -r line <&"${TRACK[0]}"
    [[ $line == attached ]] || { echo "tracker: $line" >&2; exit 1; }
    iops "$1"
    if command -v bpftool >/dev/null; then
        bpftool prog show name on_rq_complete --json >"$WORK/prog.json"
    fi
    exec {TRACK[1]}>&-
    read -r line <&"${TRACK[0]}" # "drained N chunks"
    wait "$TRACK_PID"
}

command -v bpftool >/dev/null && sysctl -q kernel.bpf_stats_enabled=1
echo "rep  off_iops  on_iops  kept  bpf_runs  ns_per_run"
ratios=()
for rep in $(seq 1 "$REPS"); do
    if ((rep % 2)); then
        off=$(iops "$rep"); on=$(tracked "$rep")
    else
        on=$(tracked "$rep"); off=$(iops "$rep")
    fi
    ratio=$(python3 -c "print(f'{$on/$off:.3f}')")
    ratios+=("$ratio")
    cost=-
    if [[ -s $WORK/prog.json ]]; then
        cost=$(python3 -c 'import json,sys; p=json.load(open(sys.argv[1])); p=p[0] if isinstance(p,list) else p; n=p.get("run_cnt",0); print(n, round(p.get("run_time_ns",0)/n) if n else "-")' "$WORK/prog.json")
        rm "$WORK/prog.json"
    fi
    echo "$rep  $off  $on  $ratio  $cost"
done
python3 -c "import statistics,sys; print('median kept', statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}"

coproc TRACK { "$HOLDER" "$LOOP" --freeze-every 1000; }
read -r line <&"${TRACK[0]}"
[[ $line == attached ]] || { echo "tracker: $line" >&2; exit 1; }
frozen_iops=$(iops 0)
exec {TRACK[1]}>&-
read -r line <&"${TRACK[0]}"
wait "$TRACK_PID"
echo "with a freeze every second: $frozen_iops IOPS; $line"
