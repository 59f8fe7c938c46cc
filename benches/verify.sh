#!/usr/bin/env bash
# benches/verify.sh — livemirror verify beside cmp and qemu-img compare on
# the same identical pair, cold (page cache dropped before every run) and
# warm (both files read into the cache first), interleaved in one run;
# medians and the ratio to the faster peer (target: <= 1.0). livemirror runs
# both ways: `verify` (the default: the media, direct I/O, never the page
# cache) and `verify --cached` (through the page cache, as cmp and qemu-img
# read).
#
# Usage: benches/verify.sh [--size 2G] [--reps 3] [--dir DIR] [--livemirror PATH]
#
# Requirements (Debian package names): bash, coreutils, diffutils (cmp),
# python3, qemu-utils (qemu-img), cargo (unless --livemirror); root for the
# cold runs (/proc/sys/vm/drop_caches).
#
# Every tool must say "identical" (exit 0) on every run, or the bench fails.
# Within a repetition the tools run in a rotating order.

set -euo pipefail

SIZE=2G
REPS=3
DIR=${TMPDIR:-/var/tmp}/livemirror-bench-verify
. "$(dirname "$0")/common.sh"
bench_options "$@"
mkdir -p "$DIR"
A=$DIR/a.img B=$DIR/b.img
trap 'rm -rf "$DIR"' EXIT
bytes=$(numfmt --from=iec "$SIZE")
head -c "$bytes" /dev/urandom > "$A"
cp "$A" "$B"
sync

tool() {
    case "$1" in
        livemirror) "$LM" verify "$A" "$B" > /dev/null 2>&1 ;;
        livemirror-cached) "$LM" verify --cached "$A" "$B" > /dev/null 2>&1 ;;
        cmp) cmp "$A" "$B" ;;
        qemu-img) qemu-img compare -q -f raw -F raw "$A" "$B" ;;
    esac
}

run() { # cache tool -> seconds
    if [ "$1" = cold ]; then
        sync
        echo 3 > /proc/sys/vm/drop_caches
    else
        cat "$A" "$B" > /dev/null
    fi
    local t0 t1
    t0=$(date +%s.%N)
    tool "$2" || { echo "$2 did not find the pair identical" >&2; exit 1; }
    t1=$(date +%s.%N)
    python3 -c "print($t1 - $t0)"
}

tools=(livemirror livemirror-cached cmp qemu-img)
results=()
for rep in $(seq 1 "$REPS"); do
    for cache in cold warm; do
        for i in 0 1 2 3; do
            t=${tools[$(((i + rep) % 4))]}
            s=$(run "$cache" "$t")
            results+=("$cache $t $s")
            echo "rep $rep $cache $t ${s}s" >&2
        done
    done
done

printf '%s\n' "${results[@]}" | python3 -c "
import sys, statistics
size = $bytes
runs = {}
for line in sys.stdin:
    c, t, s = line.split()
    runs.setdefault((c, t), []).append(float(s))
for cache in ('cold', 'warm'):
    print(f'{cache} cache, {size / 2**30:.1f} GiB pair:')
    print('| tool | runs (s) | median (s) | MiB/s |')
    print('|---|---|---|---|')
    med = {}
    for t in ('livemirror', 'livemirror-cached', 'cmp', 'qemu-img'):
        r = runs[(cache, t)]
        med[t] = statistics.median(r)
        print(f'| {t} | ' + ' '.join(f'{x:.2f}' for x in r) + f' | {med[t]:.2f} | {size / med[t] / 2**20:.0f} |')
    best = min(med['cmp'], med['qemu-img'])
    print(f'livemirror verify (media) / the faster peer: {med[\"livemirror\"] / best:.2f}x')
    print(f'livemirror verify --cached / the faster peer: {med[\"livemirror-cached\"] / best:.2f}x')
    print()
"
