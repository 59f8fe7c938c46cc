#!/usr/bin/env bash
# benches/nbd.sh — livemirror clone onto an NBD export beside nbdcopy, the
# same copy by libnbd's own tool, interleaved in one run, medians and ratio.
#
# Usage: benches/nbd.sh [--size 1G] [--reps 3] [--dir DIR] [--livemirror PATH]
#
# Requirements (Debian package names): bash, coreutils, python3, nbdkit,
# libnbd-bin (nbdcopy), cargo (unless --livemirror).
#
# The source is SIZE random bytes (read into the page cache first); each run
# gets a fresh `nbdkit memory SIZE` on a unix socket as its target, so both
# tools write into the same kind of empty, multi-connection export:
#   livemirror  livemirror clone SRC nbd+unix:///?socket=… (exit 0 = identical)
#   nbdcopy     nbdcopy --flush SRC nbd+unix:///?socket=…
# Every target is read back with nbdcopy and compared with the source.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SIZE=1G
REPS=3
DIR=${TMPDIR:-/var/tmp}/livemirror-nbd-bench
LIVEMIRROR=

while [ $# -gt 0 ]; do
    case $1 in
        --size) SIZE=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --dir) DIR=$2; shift 2 ;;
        --livemirror) LIVEMIRROR=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

if [ -z "$LIVEMIRROR" ]; then
    (cd "$REPO" && cargo build --release -q -p livemirror)
    LIVEMIRROR=$REPO/target/release/livemirror
fi
for tool in nbdkit nbdcopy python3; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done

mkdir -p "$DIR"
SRC=$DIR/src.img
BYTES=$(numfmt --from=iec "$SIZE")
if [ ! -f "$SRC" ] || [ "$(stat -c %s "$SRC")" != "$BYTES" ]; then
    head -c "$BYTES" /dev/urandom > "$SRC"
fi
cat "$SRC" > /dev/null

SOCK=$DIR/target.sock
URI="nbd+unix:///?socket=$SOCK"
RESULTS=$DIR/results.txt
: > "$RESULTS"

# One timed copy by $1 onto a fresh memory export, then the check.
run() {
    local tool=$1 pid start end
    rm -f "$SOCK"
    nbdkit -f -U "$SOCK" memory "$BYTES" &
    pid=$!
    while [ ! -S "$SOCK" ]; do sleep 0.05; done
    start=$(date +%s.%N)
    case $tool in
        livemirror) "$LIVEMIRROR" clone "$SRC" "$URI" 2>/dev/null ;;
        nbdcopy) nbdcopy --flush "$SRC" "$URI" ;;
    esac
    end=$(date +%s.%N)
    nbdcopy "$URI" - | cmp - "$SRC"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    echo "$tool $start $end" >> "$RESULTS"
}

for rep in $(seq 1 "$REPS"); do
    # Rotate the order so slow phases of a shared machine hit both alike.
    if [ $((rep % 2)) -eq 1 ]; then order="livemirror nbdcopy"; else order="nbdcopy livemirror"; fi
    for tool in $order; do run "$tool"; done
done

python3 - "$RESULTS" "$BYTES" <<'EOF'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    tool, start, end = line.split()
    times.setdefault(tool, []).append(float(end) - float(start))
size = int(sys.argv[2])
med = {t: statistics.median(v) for t, v in times.items()}
for tool, m in med.items():
    print(f"{tool:11} median {m:6.2f} s  {size / m / 2**20:7.0f} MiB/s  runs {' '.join(f'{x:.2f}' for x in times[tool])}")
print(f"ratio livemirror/nbdcopy (time): {med['livemirror'] / med['nbdcopy']:.2f}")
EOF
