#!/usr/bin/env python3
"""One live-mirror run: a paced writer on an NBD export of the source while a
mirror job copies it, for livemirror (`livemirror serve`) or QEMU's mirror
(qemu-storage-daemon).

Phases, each timed by the writer's completions:
  before  the export alone, no mirror: the writer's unloaded IOPS;
  during  from the mirror's start to Ready (the bulk copy);
  after   Ready for --after seconds (the mirror keeps up with new writes).
Then the writer stops, the job is completed, and the target must be
identical to the source (`qemu-img compare`).

With --complete-latency it measures Complete instead (see
complete_latency_main): how long the writer's requests take from the
`complete` command until the job reports it completed, with --dirty bytes
left to copy at --speed.

Prints one line of `key=value` fields. python3 standard library only.
"""

import argparse
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qsd_mirror import Qmp  # noqa: E402  (same directory)

WRITE_SIZE = 64 * 1024


class NbdClient:
    """Just enough NBD (fixed newstyle, NBD_OPT_GO, simple replies) to write."""

    def __init__(self, path, name=b""):
        # The socket file may be a stale one the new server is about to
        # replace: retry until it accepts.
        deadline = time.monotonic() + 30
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(path)
                break
            except (ConnectionRefusedError, FileNotFoundError):
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        if self._recv(16) != b"NBDMAGICIHAVEOPT":
            raise ConnectionError("not an NBD newstyle server")
        self._recv(2)  # server handshake flags
        self.sock.sendall(struct.pack(">I", 1 | 2))  # FIXED_NEWSTYLE | NO_ZEROES
        data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
        self.sock.sendall(b"IHAVEOPT" + struct.pack(">II", 7, len(data)) + data)  # NBD_OPT_GO
        self.size = None
        while True:
            _magic, _opt, rtype, rlen = struct.unpack(">QIII", self._recv(20))
            payload = self._recv(rlen)
            if rtype == 1:  # NBD_REP_ACK
                break
            if rtype == 3 and struct.unpack(">H", payload[:2])[0] == 0:  # NBD_INFO_EXPORT
                self.size = struct.unpack(">Q", payload[2:10])[0]
            elif rtype & (1 << 31):
                raise ConnectionError(f"NBD_OPT_GO refused: {rtype:#x} {payload!r}")
        self.cookie = 0

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("NBD server closed the connection")
            buf += chunk
        return bytes(buf)

    def write(self, offset, data):
        self.cookie += 1
        self.sock.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 1, self.cookie, offset, len(data)) + data)
        magic, error, cookie = struct.unpack(">IIQ", self._recv(16))
        if magic != 0x67446698 or cookie != self.cookie or error:
            raise IOError(f"NBD write at {offset} failed: error {error}")

    def close(self):
        try:
            self.sock.sendall(struct.pack(">IHHQQI", 0x25609513, 0, 2, 0, 0, 0))  # NBD_CMD_DISC
        finally:
            self.sock.close()


class Writer(threading.Thread):
    """Random 64 KiB writes at a fixed rate, one at a time. If it falls behind
    it does not burst to catch up. Every write is logged as (start, end,
    offset, pattern offset), in order, so its latency is known and its data
    can be replayed onto a copy of the original image."""

    def __init__(self, path, name, rate):
        super().__init__(daemon=True)
        self.client = NbdClient(path, name)
        self.rate = rate
        self.log = []
        self.stop = threading.Event()
        self.error = None
        self.pattern = os.urandom(1 << 20)
        self._burst = None  # (first offset, count) asked by burst()
        self._burst_done = threading.Event()

    def run(self):
        rng = random.Random(5)
        slots = self.client.size // WRITE_SIZE
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                if self._burst:
                    first, count = self._burst
                    for i in range(count):
                        self._write(first + i * WRITE_SIZE, rng.randrange(len(self.pattern) - WRITE_SIZE))
                    self._burst = None
                    self._burst_done.set()
                    next_at = time.monotonic()
                now = time.monotonic()
                if next_at > now:
                    time.sleep(min(next_at - now, 0.01))  # stays responsive to burst()
                    continue
                next_at = max(next_at + interval, time.monotonic() - interval)
                at = rng.randrange(len(self.pattern) - WRITE_SIZE)
                self._write(rng.randrange(slots) * WRITE_SIZE, at)
        except Exception as e:  # reported by the caller
            self.error = e
        finally:
            self.client.close()

    def _write(self, offset, at):
        start = time.monotonic()
        self.client.write(offset, self.pattern[at:at + WRITE_SIZE])
        self.log.append((start, time.monotonic(), offset, at))

    def burst(self, first, count):
        """Writes `count` consecutive blocks from `first` as fast as the export
        takes them, in the writer's own order, and returns when they are done."""
        self._burst_done.clear()
        self._burst = (first, count)
        while not self._burst_done.wait(0.1):
            if self.error or not self.is_alive():
                raise self.error or RuntimeError("the writer stopped")

    def replay(self, path):
        """Applies every write, in order, to the image at `path`."""
        with open(path, "r+b") as f:
            for _start, _end, offset, at in self.log:
                f.seek(offset)
                f.write(self.pattern[at:at + WRITE_SIZE])

    def finish(self):
        self.stop.set()
        self.join()
        if self.error:
            raise self.error

    def first_done(self):
        return self.log[0][1] if self.log else 0

    def iops(self, start, end):
        n = sum(1 for _s, t, *_ in self.log if start <= t < end)
        return n / (end - start) if end > start else float("nan")


def wait_for(*paths, timeout=30):
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(p) for p in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{paths} did not appear")
        time.sleep(0.02)


def spawn(cmd):
    """Starts a tool with its output on stderr: stdout is this script's result."""
    return subprocess.Popen(cmd, stdout=sys.stderr)


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def baseline(start_export, sock, name, args):
    """The writer's IOPS on the export with no mirror running."""
    proc = start_export()
    try:
        wait_for(sock)
        w = Writer(sock, name, args.rate)
        w.start()
        time.sleep(args.before)
        w.finish()
        return w.iops(w.first_done(), time.monotonic())
    finally:
        stop(proc)
        for p in (sock,):
            if os.path.exists(p):
                os.unlink(p)


def serve_command(args, nbd, ctl):
    """`livemirror serve` mirroring the source while exporting it."""
    # "switch" starts in background mode; run_livemirror switches it.
    mode = "background" if args.copy_mode == "switch" else args.copy_mode
    return ([args.livemirror, "serve", args.source, "--mirror-to", args.target,
             "--nbd", f"unix:{nbd}", "--control", f"unix:{ctl}", "--copy-mode", mode]
            + (["--target-cache", args.target_cache] if args.target_cache else []))


def qsd_command(args, nbd, qmp_sock, throttled=False):
    """qemu-storage-daemon with the source exported over NBD (export name
    `src`) and the target as node `tgt`; the mirror starts over QMP. The
    target file is made (sparse, the source's size) first. `throttled` puts
    a throttle filter (group `tg`, no limit until one is set) between the
    mirror and the target file."""
    subprocess.run(["truncate", "-s", str(os.path.getsize(args.source)), args.target], check=True)
    direct = "on" if args.qsd_direct else "off"
    aio = ",aio=native" if args.qsd_direct else ""
    target = f"{args.target},cache.direct={direct}{aio},discard=unmap,detect-zeroes=unmap"
    if throttled:
        nodes = ["--object", "throttle-group,id=tg",
                 "--blockdev", f"driver=file,node-name=tgt-file,filename={target}",
                 "--blockdev", "driver=throttle,node-name=tgt,throttle-group=tg,file=tgt-file"]
    else:
        nodes = ["--blockdev", f"driver=file,node-name=tgt,filename={target}"]
    return [
        "qemu-storage-daemon",
        "--blockdev", f"driver=file,node-name=src,filename={args.source},cache.direct={direct}{aio}",
        *nodes,
        "--nbd-server", f"addr.type=unix,addr.path={nbd}",
        "--export", "type=nbd,id=exp,node-name=src,name=src,writable=on",
        "--chardev", f"socket,id=qmp,path={qmp_sock},server=on,wait=off",
        "--monitor", "chardev=qmp"]


def start_mirror(qmp, args):
    qmp.execute("blockdev-mirror", **{"job-id": "m", "device": "src", "target": "tgt",
                                      "sync": "full", "copy-mode": args.copy_mode})


def run_livemirror(args):
    nbd, ctl = f"{args.dir}/nbd.sock", f"{args.dir}/control.sock"
    before = baseline(lambda: spawn([args.livemirror, "serve", args.source, "--nbd", f"unix:{nbd}"]),
                      nbd, b"", args)
    proc = spawn(serve_command(args, nbd, ctl))
    try:
        start = time.monotonic()  # the job starts with the process
        wait_for(nbd, ctl)
        control = Qmp(ctl, timeout=10, greeting=False)
        if args.copy_mode == "switch":
            control.execute("set-copy-mode", **{"copy-mode": "write-blocking"})
        w = Writer(nbd, b"", args.rate)
        w.start()
        ev = control.wait_event("READY", "FAILED", "CANCELLED")
        if ev["event"] != "READY":
            raise RuntimeError(f"livemirror ended before ready: {ev}")
        ready = time.monotonic()
        time.sleep(args.after)
        w.finish()
        control.execute("complete")
        ev = control.wait_event("COMPLETED", "FAILED", "CANCELLED")
        if ev["event"] != "COMPLETED":
            raise RuntimeError(f"livemirror did not complete: {ev}")
    finally:
        stop(proc)
    return before, w, start, ready


def run_qsd(args):
    nbd, qmp_sock = f"{args.dir}/nbd.sock", f"{args.dir}/qmp.sock"
    proc = spawn(qsd_command(args, nbd, qmp_sock))
    try:
        qmp = Qmp(qmp_sock, timeout=10)
        wait_for(nbd)
        w = Writer(nbd, b"src", args.rate)
        w.start()
        time.sleep(args.before)
        before = w.iops(w.first_done(), time.monotonic())
        start = time.monotonic()
        start_mirror(qmp, args)
        qmp.wait_event("BLOCK_JOB_READY")
        ready = time.monotonic()
        time.sleep(args.after)
        w.finish()
        qmp.execute("block-job-complete", device="m")
        qmp.wait_event("BLOCK_JOB_COMPLETED")
        qmp.execute("quit")
    finally:
        stop(proc)
        for p in (nbd, qmp_sock):
            if os.path.exists(p):
                os.unlink(p)
    return before, w, start, ready


def live_main(args):
    before, w, start, ready = (run_livemirror if args.tool == "livemirror" else run_qsd)(args)
    during = w.iops(start, ready)
    after = w.iops(ready, ready + args.after)
    same = subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw",
                           args.source, args.target]).returncode == 0
    print(f"ready={ready - start:.2f} before={before:.0f} during={during:.0f} after={after:.0f} "
          f"kept={during / before if before else float('nan'):.2f} identical={'yes' if same else 'NO'}")
    return 0 if same else 1


# --complete-latency: the same few verbs on either tool's job.

class LivemirrorJob:
    """`livemirror serve --mirror-to` driven over its control socket."""

    export_name = b""

    def __init__(self, args):
        self.nbd, ctl = f"{args.dir}/nbd.sock", f"{args.dir}/control.sock"
        self.proc = spawn(serve_command(args, self.nbd, ctl))
        wait_for(self.nbd, ctl)
        self.control = Qmp(ctl, timeout=10, greeting=False)

    def wait_ready(self):
        ev = self.control.wait_event("READY", "FAILED", "CANCELLED")
        if ev["event"] != "READY":
            raise RuntimeError(f"livemirror ended before ready: {ev}")

    def set_speed(self, speed):
        self.control.execute("set-speed", speed=speed)

    def pause(self):
        self.control.execute("pause")  # answers once paused

    def resume(self):
        self.control.execute("resume")

    def remaining(self):
        """Bytes still to copy: dirty plus in flight."""
        q = self.control.execute("query")
        return q["dirty"] + q["in-flight"]

    def complete(self):
        self.control.execute("complete")

    def wait_completed(self):
        ev = self.control.wait_event("COMPLETED", "FAILED", "CANCELLED")
        if ev["event"] != "COMPLETED":
            raise RuntimeError(f"livemirror did not complete: {ev}")

    def close(self):
        stop(self.proc)


class QsdJob:
    """QEMU's mirror in qemu-storage-daemon, driven over QMP.

    QEMU's mirror does not apply its speed limit once the job is ready:
    mirror_run() sleeps for the rate limit only when the job is not ready
    (or is about to finish), and a ready job copies whatever is dirty at full
    speed. So the speed is also set on a throttle filter in front of the
    target, which limits the copy's writes the same way after Ready."""

    export_name = b"src"

    def __init__(self, args):
        self.nbd, self.qmp_sock = f"{args.dir}/nbd.sock", f"{args.dir}/qmp.sock"
        self.proc = spawn(qsd_command(args, self.nbd, self.qmp_sock, throttled=True))
        self.qmp = Qmp(self.qmp_sock, timeout=10)
        wait_for(self.nbd)
        start_mirror(self.qmp, args)

    def wait_ready(self):
        ev = self.qmp.wait_event("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED")
        if ev["event"] != "BLOCK_JOB_READY":
            raise RuntimeError(f"QEMU's mirror ended before ready: {ev}")

    def set_speed(self, speed):
        self.qmp.execute("block-job-set-speed", device="m", speed=speed)
        self.qmp.execute("qom-set", path="tg", property="limits", value={"bps-write": speed})

    def pause(self):
        # Takes effect at the job's next pause point, announced by an event.
        self.qmp.execute("block-job-pause", device="m")
        while self.qmp.wait_event("JOB_STATUS_CHANGE")["data"]["status"] != "standby":
            pass

    def resume(self):
        self.qmp.execute("block-job-resume", device="m")

    def remaining(self):
        """Bytes still to copy: len - offset (QEMU counts dirty plus in flight)."""
        job = next(j for j in self.qmp.execute("query-block-jobs") if j["device"] == "m")
        return job["len"] - job["offset"]

    def complete(self):
        self.qmp.execute("block-job-complete", device="m")

    def wait_completed(self):
        ev = self.qmp.wait_event("BLOCK_JOB_COMPLETED")
        if "error" in ev.get("data", {}):
            raise RuntimeError(f"QEMU's mirror failed: {ev['data']['error']}")

    def close(self):
        try:
            self.qmp.execute("quit")
        finally:
            stop(self.proc)
            for p in (self.nbd, self.qmp_sock):
                if os.path.exists(p):
                    os.unlink(p)


def percentile(sorted_values, q):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, -(-len(sorted_values) * q // 100) - 1)]


def complete_latency_main(args):
    """Ready, then the speed limit; the writer's baseline; pause, a burst of
    fresh blocks so both tools start Complete with the same dirty amount;
    resume, Complete, and every write's latency until the job says it
    completed; the writer goes on for --after seconds. The target must then
    hold the original image plus every write, in order: the writes before
    the pivot were mirrored, the ones after it went to the target only
    (both tools switch the export's data to the target)."""
    reference = args.target + ".expected"
    subprocess.run(["cp", "--sparse=always", args.source, reference], check=True)
    job = (LivemirrorJob if args.tool == "livemirror" else QsdJob)(args)
    try:
        job.wait_ready()
        job.set_speed(args.speed)
        w = Writer(job.nbd, job.export_name, args.rate)
        w.start()
        time.sleep(args.before)
        paused_at = time.monotonic()
        job.pause()
        # Consecutive blocks: both tools merge them into the same copies.
        count = args.dirty // WRITE_SIZE
        first = (w.client.size // 4) // WRITE_SIZE * WRITE_SIZE
        w.burst(first, count)
        job.resume()
        time.sleep(0.1)  # each tool's progress counters are fresh again
        remaining = job.remaining()
        sent = time.monotonic()
        job.complete()
        job.wait_completed()
        completed = time.monotonic()
        time.sleep(args.after)  # these writes go to the target only
        w.finish()
    finally:
        job.close()
    before = sorted(e - s for s, e, *_ in w.log if s < paused_at)
    during = [(e - s, s) for s, e, *_ in w.log if e > sent and s < completed]
    lat = sorted(d for d, _ in during)
    longest, longest_at = max(during) if during else (float("nan"), sent)
    ms = 1000
    if args.log:
        with open(args.log, "w") as f:
            f.write("start_after_complete_s,latency_ms,offset\n")
            for s, e, offset, _ in w.log:
                f.write(f"{s - sent:.6f},{(e - s) * ms:.3f},{offset}\n")
    w.replay(reference)
    same = subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw",
                           reference, args.target]).returncode == 0
    os.unlink(reference)
    print(f"dirty={remaining / (1 << 20):.1f} complete={completed - sent:.2f} writes={len(lat)} "
          f"max={longest * ms:.1f} max_at={longest_at - sent:.2f} p50={percentile(lat, 50) * ms:.1f} "
          f"p99={percentile(lat, 99) * ms:.1f} before_p99={percentile(before, 99) * ms:.1f} "
          f"before_writes={len(before)} after_writes={sum(1 for s, *_ in w.log if s > completed)} "
          f"identical={'yes' if same else 'NO'}")
    return 0 if same else 1


def size(text):
    """A byte count with an optional K/M/G suffix (powers of 1024)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * units[text[-1].upper()] if text[-1:].upper() in units else int(text)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tool", choices=["livemirror", "qsd"])
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("--dir", required=True, help="where the sockets go")
    p.add_argument("--livemirror", default="livemirror")
    p.add_argument("--copy-mode", choices=["background", "write-blocking", "switch"],
                   default="background",
                   help="switch: livemirror starts in background mode and is switched to "
                        "write-blocking over its control socket at once (QEMU: write-blocking)")
    p.add_argument("--target-cache", help="livemirror's --target-cache (default: serve's own)")
    p.add_argument("--qsd-direct", action="store_true", help="cache.direct=on for QEMU's nodes")
    p.add_argument("--rate", type=float, default=1000, help="writes per second (64 KiB each)")
    p.add_argument("--before", type=float, default=5)
    p.add_argument("--after", type=float, default=5)
    p.add_argument("--complete-latency", action="store_true",
                   help="measure the writer's latency during Complete instead")
    p.add_argument("--speed", type=size, default="8M", help="the job's speed after Ready (bytes/s)")
    p.add_argument("--dirty", type=size, default="48M", help="fresh bytes written before Complete")
    p.add_argument("--log", help="--complete-latency: write every write's start and latency here (CSV)")
    args = p.parse_args()
    if os.path.exists(args.target):
        os.unlink(args.target)
    return (complete_latency_main if args.complete_latency else live_main)(args)


if __name__ == "__main__":
    sys.exit(main())
