#!/usr/bin/env bash
# Regenerates screenshots/*.png from the real release binary, in a virtual
# X display (Xvfb), at 1280x800 and (suffix -800x600) at 800x600: setup.png
# (Setup with a typed source and a new target),
# running.png (the demo mid-copy), prompt.png (the demo's bad sector asking
# Retry/Ignore/Stop), ready.png (in sync, still mirroring writes), done.png
# (Complete pressed: the verification and its map),
# setup-larger.png / setup-smaller.png (a GPT source and a target of
# another size: how it compares, the grow option), flashing.png /
# flashed.png (a .zst OS image written from the window: mid-way, and done).
#
# Needs: xvfb, xdotool, imagemagick (`import`), gdisk (`sgdisk`), zstd. Run from anywhere:
#   scripts/screenshots.sh
# PROFILE=debug uses the debug build instead (no release build on a busy
# machine; the screens are the same, only slower to draw).
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
    cargo build --release -p livemirror
    DEMO_LEAD=0
else
    cargo build -p livemirror
    # The debug build takes seconds to generate the demo's image.
    DEMO_LEAD=8
fi
BIN=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE/livemirror
OUT=$PWD/screenshots
mkdir -p "$OUT"

DISPLAY_NUM=${DISPLAY_NUM:-:99}
WORK=$(mktemp -d)
Xvfb "$DISPLAY_NUM" -screen 0 1280x800x24 >"$WORK/xvfb.log" 2>&1 &
XVFB=$!
APP=""
cleanup() {
    [ -n "$APP" ] && kill "$APP" 2>/dev/null || true
    kill "$XVFB" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
export DISPLAY=$DISPLAY_NUM
# A fresh home: default settings, a known window size, nothing of the user's.
export HOME=$WORK/home XDG_CONFIG_HOME=$WORK/home/.config
mkdir -p "$XDG_CONFIG_HOME/livemirror"
sleep 1

# size W H: the window size the next shots open with.
size() {
    W=$1 H=$2
    echo "{\"window_size\": [$W, $H]}" >"$XDG_CONFIG_HOME/livemirror/settings.json"
}

# shot NAME SECONDS ARGS...: runs the binary, waits, captures its window.
# With CLICK_COMPLETE set, presses the action bar's first button (bottom
# left: Complete while running, Start on Setup) after the wait, and
# captures DONE_WAIT seconds later.
shot() {
    local name=$1 wait=$2
    shift 2
    if [ "$1" = demo ]; then
        wait=$((wait + DEMO_LEAD))
    fi
    "$BIN" "$@" >"$WORK/$name.log" 2>&1 &
    APP=$!
    sleep "$wait"
    local win
    win=$(xdotool search --name '^livemirror$' | head -1 || true)
    if [ -n "${CLICK_COMPLETE:-}" ]; then
        xdotool mousemove --window "$win" 70 $((H - 27)) click 1
        sleep "$DONE_WAIT"
    fi
    import -window "${win:-root}" "$OUT/$name.png"
    kill "$APP" 2>/dev/null || true
    wait "$APP" 2>/dev/null || true
    APP=""
    echo "wrote screenshots/$name.png"
}

truncate -s 512M "$WORK/vm-disk.img"
# Targets of another size for a GPT source (sgdisk, package gdisk).
truncate -s 256M "$WORK/parted.img"
sgdisk -o --new=1:0:+64M --new=2:0:+128M "$WORK/parted.img" >/dev/null
truncate -s 512M "$WORK/larger.img"
truncate -s 224M "$WORK/smaller.img"

# At 1280x800 (the whole virtual screen) and at 800x600 (suffix -800x600).
for geometry in "1280 800 " "800 600 -800x600"; do
    read -r w h suffix <<<"$geometry"
    size "$w" "$h"
    shot "setup$suffix" 3 --source "$WORK/vm-disk.img" --target "$WORK/vm-disk-copy.img"
    shot "running$suffix" 6 demo --speed 48M
    shot "ready$suffix" 10 demo --speed 0
    CLICK_COMPLETE=1 DONE_WAIT=6 shot "done$suffix" 10 demo --speed 0
done
size 1280 800
shot setup-larger 3 --source "$WORK/parted.img" --target "$WORK/larger.img"
shot setup-smaller 3 --source "$WORK/parted.img" --target "$WORK/smaller.img"
shot prompt 8 demo --speed 48M --bad-sector
# A compressed OS image (random data, so writing and checking it takes a
# few seconds): Start pressed, then captured while it writes, and done.
head -c 2G /dev/urandom | zstd -q -1 -T0 -o "$WORK/os.img.zst"
CLICK_COMPLETE=1 DONE_WAIT=1 shot flashing 3 --source "$WORK/os.img.zst" --target "$WORK/os-a.img"
CLICK_COMPLETE=1 DONE_WAIT=15 shot flashed 3 --source "$WORK/os.img.zst" --target "$WORK/os-b.img"
