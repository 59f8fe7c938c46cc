#!/usr/bin/env bash
# benches/formats.sh — livemirror's image formats beside the tools people
# use for the same job, interleaved in one run, medians and ratios:
#   qcow2   livemirror clone SRC new.qcow2    vs  qemu-img convert -O qcow2 SRC new.qcow2
#   xz      livemirror clone SRC.xz new.img   vs  xzcat -T0 SRC.xz | dd conv=sparse,fsync
#                                              and xzcat -T1 (the single-threaded decoder)
#   zstd    livemirror clone SRC.zst new.img  vs  zstdcat SRC.zst | dd conv=sparse,fsync
#                                              (zstd has one decoder: single-threaded)
#   nbd     livemirror clone SRC nbd+unix://  vs  nbdcopy --flush SRC nbd+unix://
#           (a fresh `nbdkit memory` export per run, multi-connection)
# livemirror also reads every target back to verify it (a hash of the
# decompressed stream against the target; qcow2 and nbd: a final compare
# pass), which the peers do not: its times include that. The rows
# livemirror-nv (qcow2, nbd) are the same clone with --no-verify: the
# same work as the peer's.
#
# Usage: benches/formats.sh [--size 1G] [--reps 3] [--dir DIR] [--livemirror PATH]
#                           [--cases "qcow2 xz zstd nbd"]
#
# Requirements (Debian package names): bash, coreutils, python3, qemu-utils,
# xz-utils, zstd, nbdkit, libnbd-bin, cargo (unless --livemirror).
#
# The source image is a disk-like mix: half random bytes, a quarter
# compressible text, a quarter zeroes, in 4 MiB pieces. Every target is
# compared with the source (cmp, or qemu-img compare for qcow2).

set -euo pipefail

SIZE=1G
REPS=3
DIR=${TMPDIR:-/var/tmp}/livemirror-formats-bench
CASES="qcow2 xz zstd nbd"
ARGS=()
while [ $# -gt 0 ]; do
    case $1 in
        --cases) CASES=$2; shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
. "$(dirname "$0")/common.sh"
bench_options "${ARGS[@]}"
for tool in qemu-img xz xzcat zstd zstdcat dd python3 nbdkit nbdcopy; do
    command -v "$tool" >/dev/null || { echo "$tool is missing" >&2; exit 1; }
done

mkdir -p "$DIR"
SRC=$DIR/src.img
BYTES=$(numfmt --from=iec "$SIZE")
if [ ! -f "$SRC" ] || [ "$(stat -c %s "$SRC")" != "$BYTES" ]; then
    python3 - "$SRC" "$BYTES" <<'EOF2'
import base64, os, sys
path, size = sys.argv[1], int(sys.argv[2])
piece = 4 << 20
with open(path, "wb") as f:
    for i in range(size // piece):
        kind = i % 4
        if kind in (0, 1):
            f.write(os.urandom(piece))
        elif kind == 2:
            f.write(base64.b64encode(os.urandom(piece * 3 // 4))[:piece])
        else:
            f.seek(piece, 1)
    f.truncate(size)
EOF2
    rm -f "$SRC.xz" "$SRC.zst"
fi
[ -f "$SRC.xz" ] || xz -T0 -k -c "$SRC" > "$SRC.xz"
[ -f "$SRC.zst" ] || zstd -q -T0 -k -c "$SRC" > "$SRC.zst"
cat "$SRC" "$SRC.xz" "$SRC.zst" > /dev/null

OUT=$DIR/out
SOCK=$DIR/target.sock
URI="nbd+unix:///?socket=$SOCK"
RESULTS=$DIR/results.txt
: > "$RESULTS"

# One timed run of case $1 by tool $2 into a fresh target, then the check.
run() {
    local case=$1 tool=$2 start end pid=
    rm -f "$OUT.img" "$OUT.qcow2" "$SOCK"
    # Recycled memory for every run, as compare.sh's default regime: a
    # ballast of the image's size written through the page cache and
    # deleted, so no run's page-cache writes land in memory the host has
    # taken back (which costs several times more on these VMs, and hit
    # whichever tool ran after a quiet moment).
    head -c "$BYTES" /dev/zero > "$DIR/ballast"
    rm -f "$DIR/ballast"
    if [ "$case" = nbd ]; then
        nbdkit -f -U "$SOCK" memory "$BYTES" &
        pid=$!
        while [ ! -S "$SOCK" ]; do sleep 0.05; done
    fi
    sync
    start=$(date +%s.%N)
    case $case/$tool in
        qcow2/livemirror) "$LM" clone "$SRC" "$OUT.qcow2" 2>/dev/null ;;
        # Exit 4: complete, but not verified (what --no-verify asks).
        qcow2/livemirror-nv) "$LM" clone --no-verify "$SRC" "$OUT.qcow2" 2>/dev/null || [ $? = 4 ] ;;
        qcow2/qemu-img) qemu-img convert -O qcow2 "$SRC" "$OUT.qcow2" && sync "$OUT.qcow2" ;;
        xz/livemirror) "$LM" clone "$SRC.xz" "$OUT.img" 2>/dev/null ;;
        xz/xzcat-T0) xzcat -T0 "$SRC.xz" | dd of="$OUT.img" bs=4M conv=sparse,fsync status=none ;;
        xz/xzcat-T1) xzcat -T1 "$SRC.xz" | dd of="$OUT.img" bs=4M conv=sparse,fsync status=none ;;
        zstd/livemirror) "$LM" clone "$SRC.zst" "$OUT.img" 2>/dev/null ;;
        zstd/zstdcat) zstdcat "$SRC.zst" | dd of="$OUT.img" bs=4M conv=sparse,fsync status=none ;;
        nbd/livemirror) "$LM" clone "$SRC" "$URI" 2>/dev/null ;;
        nbd/livemirror-nv) "$LM" clone --no-verify "$SRC" "$URI" 2>/dev/null || [ $? = 4 ] ;;
        nbd/nbdcopy) nbdcopy --flush "$SRC" "$URI" ;;
    esac
    end=$(date +%s.%N)
    case $case in
        qcow2) qemu-img compare -q -f raw -F qcow2 "$SRC" "$OUT.qcow2" ;;
        nbd)
            nbdcopy "$URI" - | cmp - "$SRC"
            kill "$pid"
            wait "$pid" 2>/dev/null || true
            ;;
        *) cmp "$SRC" "$OUT.img" ;;
    esac
    echo "$case $tool $start $end" >> "$RESULTS"
}

declare -A TOOLS=(
    [qcow2]="livemirror livemirror-nv qemu-img"
    [xz]="livemirror xzcat-T0 xzcat-T1"
    [zstd]="livemirror zstdcat"
    [nbd]="livemirror livemirror-nv nbdcopy"
)
for rep in $(seq 1 "$REPS"); do
    for c in $CASES; do
        read -r -a words <<< "$c ${TOOLS[$c]}"
        tools=("${words[@]:1}")
        # Rotate the order so slow phases of a shared machine hit all alike.
        if [ $((rep % 2)) -eq 0 ]; then
            mapfile -t tools < <(printf '%s\n' "${tools[@]}" | tac)
        fi
        for tool in "${tools[@]}"; do run "${words[0]}" "$tool"; done
    done
done

python3 - "$RESULTS" "$BYTES" <<'EOF2'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    case, tool, start, end = line.split()
    times.setdefault(case, {}).setdefault(tool, []).append(float(end) - float(start))
size = int(sys.argv[2])
for case, tools in times.items():
    med = {t: statistics.median(v) for t, v in tools.items()}
    for tool, m in med.items():
        runs = " ".join(f"{x:.2f}" for x in tools[tool])
        print(f"{case:5} {tool:11} median {m:6.2f} s  {size / m / 2**20:6.0f} MiB/s  runs {runs}")
    ours = [t for t in med if t.startswith("livemirror")]
    for tool, m in med.items():
        if not tool.startswith("livemirror"):
            for o in ours:
                print(f"{case:5} ratio {o}/{tool} (time): {med[o] / m:.2f}")
EOF2
