#!/usr/bin/env bash
# benches/kernel_hold.sh — what kernel write tracking (issue #13) costs a
# writer on a mounted source, both figures from one run on one filesystem:
#
#  1. the writer's IOPS with tracking on and off: fio's 4 KiB O_DIRECT
#     random writes (psync, queue depth 1) into a file on an ext4
#     filesystem mounted from a loop device, with and without the tracker
#     (core/examples/kernel_track.rs) attached, interleaved (the order
#     alternates per repetition); "kept" is on/off, and the median of the
#     repetitions' ratios is the figure (as benches/kernel_tracking.sh);
#  2. the hold of a real Complete: `livemirror clone --tracking kernel` of
#     that loop device with the same fio writer running all the time, and
#     --dirty (64 MiB) of new data written just before Complete, so that
#     much is dirty at the moment of Complete (the bulk copied before the
#     freeze, while writers flow); `held_ms` of the COMPLETED event is how
#     long the filesystem was frozen. Every run's target must pass
#     `fsck.ext4 -n -f`. See benches/kernel_hold.py for the steps.
#
# The loop device's file is in --dir, /dev/shm by default: in memory, so
# the disk below adds no noise.
#
# Usage (as root): benches/kernel_hold.sh [--reps 5] [--iops-reps 6]
#            [--runtime 10] [--size 1G] [--dirty 64M] [--dir /dev/shm]
#            [--granularity SIZE (the job's; default livemirror's)]
#
# Requirements (Debian package names): fio, util-linux, e2fsprogs, mount,
# python3, clang + libbpf-dev (to build the tracker), cargo.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
REPS=5
IOPS_REPS=6
RUNTIME=10
SIZE=1G
DIRTY=64M
GRANULARITY=
DIR=
while [[ $# -gt 0 ]]; do
    case $1 in
        --reps) REPS=$2; shift 2 ;;
        --iops-reps) IOPS_REPS=$2; shift 2 ;;
        --runtime) RUNTIME=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --dirty) DIRTY=$2; shift 2 ;;
        --granularity) GRANULARITY=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
command -v fio >/dev/null || { echo "fio is needed: apt-get install fio" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "run as root (kernel tracking, loop devices, mount)" >&2; exit 2; }

(cd "$REPO" && cargo build --release -q -p livemirror &&
    cargo build --release -q -p livemirror-core --example kernel_track)
LIVEMIRROR=$REPO/target/release/livemirror
HOLDER=$REPO/target/release/examples/kernel_track
DIRTY_BYTES=$(numfmt --from=iec "$DIRTY")

WORK=$(mktemp -d "${DIR:-/dev/shm}/kernel-hold.XXXXXX")
LOOP=
cleanup() {
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
# The files fio and the burst before Complete write, laid out once so each
# run overwrites in place (no allocation).
fio --name=prep --filename="$WORK/mnt/data" --size=256M --rw=write --bs=1M \
    --direct=1 --output=/dev/null
fio --name=prep --filename="$WORK/mnt/burst" --size="$DIRTY_BYTES" --rw=write --bs=1M \
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
    exec {TRACK[1]}>&-
    read -r line <&"${TRACK[0]}" # "drained N chunks"
    wait "$TRACK_PID"
}

echo "== writer IOPS, tracking off / on ($IOPS_REPS x ${RUNTIME}s each, interleaved)"
echo "rep  off_iops  on_iops  kept"
ratios=()
for rep in $(seq 1 "$IOPS_REPS"); do
    if ((rep % 2)); then
        off=$(iops "$rep"); on=$(tracked "$rep")
    else
        on=$(tracked "$rep"); off=$(iops "$rep")
    fi
    ratio=$(python3 -c "print(f'{$on/$off:.3f}')")
    ratios+=("$ratio")
    echo "$rep  $off  $on  $ratio"
done
python3 -c "import statistics,sys; print(f'median kept {statistics.median(map(float, sys.argv[1:])):.3f}')" "${ratios[@]}"

echo "== Complete's hold: livemirror clone of $LOOP ($SIZE) under that writer, $DIRTY written just before Complete"
python3 "$HERE/kernel_hold.py" --livemirror "$LIVEMIRROR" --dev "$LOOP" --work "$WORK" \
    --fio-file "$WORK/mnt/data" --burst-file "$WORK/mnt/burst" --dirty "$DIRTY_BYTES" \
    --reps "$REPS" ${GRANULARITY:+--granularity "$GRANULARITY"}
