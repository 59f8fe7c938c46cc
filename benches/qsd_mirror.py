#!/usr/bin/env python3
"""QEMU's own mirror job in qemu-storage-daemon, timed over QMP.

Starts qemu-storage-daemon (under `/usr/bin/time -v` when --time-output is
given, so its peak RSS can be reported) with the source and target as `file`
nodes, runs `blockdev-mirror sync=full`, completes it on BLOCK_JOB_READY and
prints one line: `ready=SECONDS complete=SECONDS`, both counted from the
blockdev-mirror command (daemon start-up is not counted, as livemirror's
process start is negligible). QEMU flushes the target before it reports
ready, so both figures include durability.

The target node gets detect-zeroes=unmap and discard=unmap: without them
QEMU writes every zero it reads as data, and the comparison would be unfair
to it on zero-filled images.

Used by compare.sh and live.sh; python3 standard library only.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import time


class Qmp:
    """A minimal QMP client: JSON lines over a unix socket. livemirror's
    control socket speaks the same shape without the greeting and the
    capabilities negotiation (greeting=False)."""

    def __init__(self, path, timeout, greeting=True):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.file = self.sock.makefile("rw", encoding="utf-8")
        self.events = []
        if greeting:
            self.read()
            self.execute("qmp_capabilities")

    def read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("qemu-storage-daemon closed the QMP socket")
        return json.loads(line)

    def execute(self, verb, **arguments):
        msg = {"execute": verb}
        if arguments:
            msg["arguments"] = arguments
        self.file.write(json.dumps(msg) + "\n")
        self.file.flush()
        while True:
            reply = self.read()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise RuntimeError(f"{verb}: {reply['error']}")
            else:
                return reply.get("return")

    def wait_event(self, *names):
        while True:
            ev = self.events.pop(0) if self.events else self.read()
            if ev.get("event") in names:
                return ev


def node(name, path, direct, extra=""):
    opts = f"driver=file,node-name={name},filename={path},cache.direct={direct}"
    if direct == "on":
        opts += ",aio=native"
    return opts + extra


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source")
    p.add_argument("target", help="must exist, same size as the source")
    p.add_argument("--direct", choices=["on", "off"], default="off")
    p.add_argument("--socket", required=True, help="QMP unix socket path to create")
    p.add_argument("--time-output", help="run the daemon under /usr/bin/time -v -o FILE")
    p.add_argument("--no-complete", action="store_true",
                   help="print ready= and wait for a line on stdin before completing")
    p.add_argument("--copy-mode", choices=["background", "write-blocking"], default="background")
    p.add_argument("--export", help="also export the source node over NBD at this unix socket")
    args = p.parse_args()

    cmd = ["qemu-storage-daemon",
           "--blockdev", node("src", args.source, args.direct),
           "--blockdev", node("tgt", args.target, args.direct,
                              ",discard=unmap,detect-zeroes=unmap"),
           "--chardev", f"socket,id=qmp,path={args.socket},server=on,wait=off",
           "--monitor", "chardev=qmp"]
    if args.export:
        cmd += ["--nbd-server", f"addr.type=unix,addr.path={args.export}",
                "--export", "type=nbd,id=exp,node-name=src,writable=on"]
    if args.time_output:
        cmd = ["/usr/bin/time", "-v", "-o", args.time_output] + cmd
    daemon = subprocess.Popen(cmd)
    try:
        qmp = Qmp(args.socket, timeout=10)
        start = time.monotonic()
        qmp.execute("blockdev-mirror", **{"job-id": "m", "device": "src", "target": "tgt",
                                          "sync": "full", "copy-mode": args.copy_mode})
        ev = qmp.wait_event("BLOCK_JOB_READY", "BLOCK_JOB_COMPLETED")
        if ev["event"] != "BLOCK_JOB_READY":
            raise RuntimeError(f"mirror ended before ready: {ev}")
        ready = time.monotonic() - start
        if args.no_complete:
            print(f"ready={ready:.3f}", flush=True)
            sys.stdin.readline()
        qmp.execute("block-job-complete", device="m")
        ev = qmp.wait_event("BLOCK_JOB_COMPLETED")
        if "error" in ev.get("data", {}):
            raise RuntimeError(f"mirror failed: {ev['data']['error']}")
        done = time.monotonic() - start
        print(f"ready={ready:.3f} complete={done:.3f}", flush=True)
        qmp.execute("quit")
    finally:
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        if os.path.exists(args.socket):
            os.unlink(args.socket)
    return 0


if __name__ == "__main__":
    sys.exit(main())
