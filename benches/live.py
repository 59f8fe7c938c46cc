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
    """Random 64 KiB writes at a fixed rate, one at a time; records when each
    completed. If it falls behind it does not burst to catch up."""

    def __init__(self, path, name, rate):
        super().__init__(daemon=True)
        self.client = NbdClient(path, name)
        self.rate = rate
        self.done = []
        self.stop = threading.Event()
        self.error = None
        self.pattern = os.urandom(1 << 20)

    def run(self):
        rng = random.Random(5)
        slots = self.client.size // WRITE_SIZE
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if next_at > now:
                    time.sleep(next_at - now)
                next_at = max(next_at + interval, time.monotonic() - interval)
                at = rng.randrange(len(self.pattern) - WRITE_SIZE)
                self.client.write(rng.randrange(slots) * WRITE_SIZE, self.pattern[at:at + WRITE_SIZE])
                self.done.append(time.monotonic())
        except Exception as e:  # reported by the caller
            self.error = e
        finally:
            self.client.close()

    def finish(self):
        self.stop.set()
        self.join()
        if self.error:
            raise self.error

    def iops(self, start, end):
        n = sum(1 for t in self.done if start <= t < end)
        return n / (end - start) if end > start else float("nan")


def wait_for(*paths, timeout=30):
    deadline = time.monotonic() + timeout
    while not all(os.path.exists(p) for p in paths):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{paths} did not appear")
        time.sleep(0.02)


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
        return w.iops(w.done[0] if w.done else 0, time.monotonic())
    finally:
        stop(proc)
        for p in (sock,):
            if os.path.exists(p):
                os.unlink(p)


def run_livemirror(args):
    nbd, ctl = f"{args.dir}/nbd.sock", f"{args.dir}/control.sock"
    before = baseline(lambda: subprocess.Popen([args.livemirror, "serve", args.source, "--nbd", f"unix:{nbd}"]),
                      nbd, b"", args)
    proc = subprocess.Popen([args.livemirror, "serve", args.source, "--mirror-to", args.target,
                             "--nbd", f"unix:{nbd}", "--control", f"unix:{ctl}",
                             "--copy-mode", args.copy_mode]
                            + (["--target-cache", args.target_cache] if args.target_cache else []))
    try:
        start = time.monotonic()  # the job starts with the process
        wait_for(nbd, ctl)
        control = Qmp(ctl, timeout=10, greeting=False)
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
    subprocess.run(["truncate", "-s", str(os.path.getsize(args.source)), args.target], check=True)
    direct = "on" if args.qsd_direct else "off"
    aio = ",aio=native" if args.qsd_direct else ""
    proc = subprocess.Popen([
        "qemu-storage-daemon",
        "--blockdev", f"driver=file,node-name=src,filename={args.source},cache.direct={direct}{aio}",
        "--blockdev", f"driver=file,node-name=tgt,filename={args.target},cache.direct={direct}{aio}"
                      ",discard=unmap,detect-zeroes=unmap",
        "--nbd-server", f"addr.type=unix,addr.path={nbd}",
        "--export", "type=nbd,id=exp,node-name=src,name=src,writable=on",
        "--chardev", f"socket,id=qmp,path={qmp_sock},server=on,wait=off",
        "--monitor", "chardev=qmp"])
    try:
        qmp = Qmp(qmp_sock, timeout=10)
        wait_for(nbd)
        w = Writer(nbd, b"src", args.rate)
        w.start()
        time.sleep(args.before)
        before = w.iops(w.done[0] if w.done else 0, time.monotonic())
        start = time.monotonic()
        qmp.execute("blockdev-mirror", **{"job-id": "m", "device": "src", "target": "tgt",
                                          "sync": "full", "copy-mode": args.copy_mode})
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


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tool", choices=["livemirror", "qsd"])
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("--dir", required=True, help="where the sockets go")
    p.add_argument("--livemirror", default="livemirror")
    p.add_argument("--copy-mode", choices=["background", "write-blocking"], default="background")
    p.add_argument("--target-cache", help="livemirror's --target-cache (default: serve's own)")
    p.add_argument("--qsd-direct", action="store_true", help="cache.direct=on for QEMU's nodes")
    p.add_argument("--rate", type=float, default=1000, help="writes per second (64 KiB each)")
    p.add_argument("--before", type=float, default=5)
    p.add_argument("--after", type=float, default=5)
    args = p.parse_args()
    if os.path.exists(args.target):
        os.unlink(args.target)
    before, w, start, ready = (run_livemirror if args.tool == "livemirror" else run_qsd)(args)
    during = w.iops(start, ready)
    after = w.iops(ready, ready + args.after)
    same = subprocess.run(["qemu-img", "compare", "-q", "-f", "raw", "-F", "raw",
                           args.source, args.target]).returncode == 0
    print(f"ready={ready - start:.2f} before={before:.0f} during={during:.0f} after={after:.0f} "
          f"kept={during / before if before else float('nan'):.2f} identical={'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
