#!/usr/bin/env bash
# End-to-end check of "disks without root" against a real udisksd:
#   livemirror clone /dev/loopA /dev/loopB, run as an unprivileged user who
#   gets EACCES on the loop devices, must
#   1. be refused with "not authorized" while polkit says no,
#   2. clone through udisks2's Block.OpenDevice once a polkit rule allows it
#      (judged by qemu-img compare),
#   3. explain udisks2 and pkexec when there is no system bus.
#
#   scripts/udisks-check.sh [PATH/TO/livemirror]     (default target/release/livemirror)
#
# Needs root and the packages udisks2, polkitd, dbus, udev, qemu-utils. Where
# no system bus, udevd, polkitd or udisksd runs (CI, containers), it starts
# them and stops them again; it never touches ones that were already running.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=$(realpath "${1:-target/release/livemirror}")
work=$(mktemp -d /tmp/livemirror-udisks.XXXXXX)
chmod 755 "$work"
user=livemirror-check
rule=/etc/polkit-1/rules.d/49-livemirror-check.rules
started=() loops=() own_bus='' own_udev=

cleanup() {
    rm -f "$rule"
    for l in "${loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
    for pid in "${started[@]}"; do kill "$pid" 2>/dev/null || true; done
    userdel "$user" 2>/dev/null || true
    [[ -z $own_bus ]] || rm -f /run/dbus/system_bus_socket
    # A stale /run/udev/control tells libudev users that udev runs.
    [[ -z $own_udev ]] || rm -rf /run/udev
    rm -rf "$work"
}
trap cleanup EXIT

owned() { busctl --system status "$1" >/dev/null 2>&1; }
start() { # start DAEMON ARGS... in the background, remembered for cleanup
    "$@" >>"$work/daemons.log" 2>&1 &
    started+=($!)
}
wait_for() { # wait_for DESCRIPTION COMMAND...: up to 10 s
    for _ in $(seq 50); do "${@:2}" && return 0; sleep 0.2; done
    echo "udisks-check: $1 did not come up; daemon log:" >&2
    cat "$work/daemons.log" >&2
    return 1
}

bus_up() { busctl --system list >/dev/null 2>&1; }
if ! bus_up; then
    mkdir -p /run/dbus
    rm -f /run/dbus/system_bus_socket
    dbus-daemon --system --nofork --nopidfile >>"$work/daemons.log" 2>&1 &
    started+=($!) own_bus=1
    wait_for "the system bus" bus_up
fi
# udisks2 only shows block devices that udev has processed.
udev_up() { udevadm control --ping --timeout=2 2>/dev/null; }
if ! udev_up; then
    [[ -e /run/udev ]] || own_udev=1
    start /lib/systemd/systemd-udevd
    wait_for udevd udev_up
fi
owned org.freedesktop.PolicyKit1 || start /usr/lib/polkit-1/polkitd --no-debug
owned org.freedesktop.UDisks2 || start /usr/libexec/udisks2/udisksd
wait_for polkitd owned org.freedesktop.PolicyKit1
wait_for udisksd owned org.freedesktop.UDisks2

truncate -s 16M "$work/a.img" "$work/b.img"
head -c 4M /dev/urandom | dd of="$work/a.img" bs=1M seek=3 conv=notrunc status=none
for img in a b; do loops+=("$(losetup --find --show "$work/$img.img")"); done
udevadm trigger --action=add "${loops[@]}"
udevadm settle --timeout=20
resolves() {
    busctl --system call org.freedesktop.UDisks2 /org/freedesktop/UDisks2/Manager \
        org.freedesktop.UDisks2.Manager ResolveDevice 'a{sv}a{sv}' 1 path s "$1" 0 | grep -q block_devices
}
wait_for "udisks2's view of ${loops[1]}" resolves "${loops[1]}"

id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
cp "$binary" "$work/livemirror"
chmod 755 "$work/livemirror"
as_user() { runuser -u "$user" -- env "$@" "$work/livemirror" clone "${loops[@]}"; }

echo "udisks-check: 1. polkit refuses (no agent, no rule)"
if as_user >"$work/out" 2>&1; then cat "$work/out"; echo "FAIL: cloned without authorization" >&2; exit 1; fi
grep -q "not authorized" "$work/out" || { cat "$work/out"; echo "FAIL: no 'not authorized' message" >&2; exit 1; }
cat "$work/out"

echo "udisks-check: 2. a polkit rule allows udisks2's open-device for $user"
cat >"$rule" <<RULE
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.freedesktop.udisks2.open-device") == 0 && subject.user == "$user")
        return polkit.Result.YES;
});
RULE
# polkitd picks the rule up from inotify; retry until it has.
wait_for "polkit's new rule" as_user LANG=C.UTF-8 >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
tail -n 1 "$work/out"
qemu-img compare -f raw -F raw "$work/a.img" "$work/b.img"

echo "udisks-check: 3. no system bus"
if as_user DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent >"$work/out" 2>&1; then
    echo "FAIL: opened a disk without root and without udisks2" >&2; exit 1
fi
grep -q "udisks2 is not available" "$work/out" && grep -q pkexec "$work/out" \
    || { cat "$work/out"; echo "FAIL: no udisks2/pkexec explanation" >&2; exit 1; }
cat "$work/out"
echo "udisks-check: passed"
