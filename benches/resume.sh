#!/usr/bin/env bash
# benches/resume.sh — what keeping the job's state costs: livemirror clone
# with its state file (saved every 2 s: a target flush and a file write)
# beside the same clone with --no-state, on the same image, interleaved in
# one run; medians and the ratio (target: >= 98%).
#
# Usage: benches/resume.sh [--size 2G] [--reps 5] [--dir DIR] [--livemirror PATH]
#
# Requirements (Debian package names): bash, coreutils, python3, qemu-utils
# (qemu-img), cargo (unless --livemirror).
#
# The source is SIZE bytes from /dev/urandom, read into the page cache
# before every run (both variants read it from memory alike). Each run
# copies onto a new target; each ends with `livemirror clone`'s own final
# comparison (exit 0: identical), and `qemu-img compare` checks it again.
# Within a repetition the two variants run in alternating order.

set -euo pipefail

SIZE=2G
REPS=5
DIR=${TMPDIR:-/var/tmp}/livemirror-bench-resume
. "$(dirname "$0")/common.sh"
bench_options "$@"
mkdir -p "$DIR"
SRC=$DIR/src.img DST=$DIR/dst.img STATE=$DIR/state
trap 'rm -rf "$DIR"' EXIT
bytes=$(numfmt --from=iec "$SIZE")
head -c "$bytes" /dev/urandom > "$SRC"

run() { # variant -> seconds
    rm -f "$DST"; rm -rf "$STATE"
    cat "$SRC" > /dev/null
    sync
    local extra=()
    [ "$1" = no-state ] && extra=(--no-state)
    local t0 t1
    t0=$(date +%s.%N)
    LIVEMIRROR_STATE_DIR=$STATE "$LM" clone "$SRC" "$DST" "${extra[@]}" 2>/dev/null
    t1=$(date +%s.%N)
    qemu-img compare -q -f raw -F raw "$SRC" "$DST"
    python3 -c "print($t1 - $t0)"
}

results=()
for rep in $(seq 1 "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then order="state no-state"; else order="no-state state"; fi
    for v in $order; do
        s=$(run "$v")
        results+=("$v $s")
        echo "rep $rep $v ${s}s" >&2
    done
done

printf '%s\n' "${results[@]}" | python3 -c "
import sys, statistics
size = $bytes
runs = {}
for line in sys.stdin:
    v, s = line.split()
    runs.setdefault(v, []).append(float(s))
print(f'| variant | runs (s) | median (s) | MiB/s |')
print(f'|---|---|---|---|')
med = {}
for v in ('state', 'no-state'):
    m = statistics.median(runs[v])
    med[v] = m
    print(f'| {v} | ' + ' '.join(f'{x:.2f}' for x in runs[v]) + f' | {m:.2f} | {size / m / 2**20:.0f} |')
print()
print(f'throughput with the state file / without: {med[\"no-state\"] / med[\"state\"] * 100:.1f}%')
"
