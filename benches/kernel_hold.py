#!/usr/bin/env python3
"""The hold of a real Complete, for benches/kernel_hold.sh: how long a
`livemirror clone --tracking kernel` of a mounted ext4 source holds the
source's writers (`held_ms` of its COMPLETED event) with a given amount
dirty at the moment of Complete, while fio writes to that filesystem.

Each repetition:
  1. starts fio's writer (4 KiB random O_DIRECT writes, psync, queue depth
     1) on --fio-file and `livemirror clone DEV DST --no-complete
     --tracking kernel --control unix:SOCK --json`;
  2. waits for READY and lets the job keep up with the writer for --settle
     seconds;
  3. pauses the job, overwrites --dirty bytes of --burst-file (laid out
     before, so nothing is allocated) with new data, O_DIRECT, and waits
     until the job's `query` shows them dirty (the kernel's bitmap is
     drained every 50 ms, paused or not); fio keeps writing meanwhile;
  4. sends `complete` at once: the job copies what is dirty while writers
     flow, freezes the filesystem, copies what is left, flushes the target
     and thaws;
  5. reads `held_ms` from COMPLETED (the socket's and the --json stream's
     must agree), stops fio, and checks that the target is a clean
     filesystem (`fsck.ext4 -n -f`): a benchmark of a wrong copy is
     worthless, so a dirty one fails the run.

Prints one line per repetition and a summary line of `key=value` fields.
python3 standard library only.
"""

import argparse
import json
import mmap
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

MIB = 1 << 20
# Longer than the job's drain interval (kernel_feed::POLL, 50 ms).
DRAINED = 0.06


class Control:
    """The job's control socket: one request, one reply; events pushed."""

    def __init__(self, path, proc, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self.sock.connect(path)
                break
            except (ConnectionRefusedError, FileNotFoundError):
                self.sock.close()
                if proc.poll() is not None:
                    raise RuntimeError(f"livemirror exited with {proc.returncode} before its socket")
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self.file = self.sock.makefile("r")
        self.cond = threading.Condition()
        self.replies = []
        self.events = []
        self.closed = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.file:
            v = json.loads(line)
            with self.cond:
                if "event" in v:
                    v["_at"] = time.monotonic()
                    self.events.append(v)
                else:
                    self.replies.append(v)
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def ask(self, verb, timeout=30, **arguments):
        req = {"execute": verb}
        if arguments:
            req["arguments"] = arguments
        with self.cond:
            n = len(self.replies)
        self.sock.sendall((json.dumps(req) + "\n").encode())
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.replies) > n or self.closed, timeout):
                raise TimeoutError(f"no reply to {verb}")
            if len(self.replies) <= n:
                raise ConnectionError(f"the socket closed before the reply to {verb}")
            reply = self.replies[n]
        if "error" in reply:
            raise RuntimeError(f"{verb}: {reply['error']}")
        return reply["return"]

    def event(self, names, timeout):
        """The first event named one of `names` (seen at any time)."""
        with self.cond:
            found = lambda: next((e for e in self.events if e["event"] in names), None)  # noqa: E731
            if not self.cond.wait_for(lambda: found() or self.closed, timeout):
                raise TimeoutError(f"no {names} in {timeout} s")
            return found()

    def seen(self, name):
        with self.cond:
            return [e for e in self.events if e["event"] == name]


def overwrite(path, data):
    """Writes `data` over the start of `path` with O_DIRECT, then fsyncs
    (the data is on the device when the write returns; fsync also commits
    the inode's new times, as a real writer's would)."""
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        buf = mmap.mmap(-1, len(data))  # page-aligned, as O_DIRECT needs
        buf[:] = data
        done = 0
        view = memoryview(buf)
        while done < len(data):
            done += os.pwrite(fd, view[done:done + 4 * MIB], done)
        view.release()
        buf.close()
        os.fsync(fd)
    finally:
        os.close(fd)


def fio_writer(args, seed):
    return subprocess.Popen(
        ["fio", "--name=w", f"--filename={args.fio_file}", f"--size={args.fio_size}",
         "--rw=randwrite", "--bs=4k", "--direct=1", "--ioengine=psync", "--time_based",
         "--runtime=3600", f"--randseed={seed}", "--output-format=json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def fio_stop(fio):
    fio.send_signal(signal.SIGINT)  # fio reports what it did so far
    out, _ = fio.communicate(timeout=60)
    try:
        return round(json.loads(out[out.index("{"):])["jobs"][0]["write"]["iops"])
    except (ValueError, KeyError, IndexError):
        return None


def one_run(args, rep):
    sock = os.path.join(args.work, "control.sock")
    dst = os.path.join(args.work, "dst.img")
    for p in (dst, sock):
        if os.path.exists(p):
            os.remove(p)
    burst = os.urandom(args.dirty)  # new data each run, made before the clock runs
    fio = fio_writer(args, rep)
    err = open(os.path.join(args.work, f"clone{rep}.err"), "w")
    extra = ["--granularity", args.granularity] if args.granularity else []
    proc = subprocess.Popen(
        [args.livemirror, "clone", args.dev, dst, "--no-complete", "--tracking", "kernel",
         "--control", f"unix:{sock}", "--json", *extra],
        stdout=subprocess.PIPE, stderr=err, text=True)
    stream = []
    reader = threading.Thread(target=lambda: stream.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        ctl = Control(sock, proc)
        if not ctl.ask("query")["ready"]:
            ctl.event({"READY"}, 300)
        time.sleep(args.settle)  # the job keeps up with fio for a while
        before = ctl.ask("query")["dirty"]
        ctl.ask("pause")  # answered once no copy is in flight
        paused_at = time.monotonic()
        overwrite(args.burst_file, burst)
        written_at = time.monotonic()
        # The kernel's bitmap reaches the job's every 50 ms, paused or not:
        # once a drain has run after the burst was written (and the job,
        # copying nothing, shows it all), complete at once.
        while True:
            q = ctl.ask("query")
            since = time.monotonic() - written_at
            if (q["dirty"] >= args.dirty and since >= DRAINED) or since > 5:
                break
            time.sleep(0.002)
        dirty = q["dirty"]
        sent = time.monotonic()
        ctl.ask("complete")
        done = ctl.event({"COMPLETED", "FAILED", "CANCELLED"}, 300)
        if done["event"] != "COMPLETED":
            raise RuntimeError(f"the job ended with {done}")
        code = proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        iops = fio_stop(fio)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()
    held = done["data"]["held_ms"]
    json_done = [json.loads(line) for line in stream if '"COMPLETED"' in line]
    if code != 0 or held is None or not done["data"]["identical"]:
        raise RuntimeError(f"clone exited {code}, COMPLETED {done['data']}")
    if [e["data"]["held_ms"] for e in json_done] != [held]:
        raise RuntimeError(f"the --json stream's COMPLETED {json_done} is not the socket's {done}")
    fsck = subprocess.run(["fsck.ext4", "-n", "-f", dst], capture_output=True, text=True)
    if fsck.returncode != 0:
        raise RuntimeError(f"the target is not a clean filesystem:\n{fsck.stdout}{fsck.stderr}")
    return {
        "rep": rep,
        "dirty_before_mib": before / MIB,
        "burst_ms": (written_at - paused_at) * 1e3,
        "window_ms": (sent - paused_at) * 1e3,
        "dirty_mib": dirty / MIB,
        "complete_ms": (done["_at"] - sent) * 1e3,
        "held_ms": held,
        "rescans": len(ctl.seen("RESCANNING")),
        "complete_failed": len(ctl.seen("COMPLETE_FAILED")),
        "fio_iops": iops,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--livemirror", required=True)
    ap.add_argument("--dev", required=True, help="the loop device the filesystem is on")
    ap.add_argument("--work", required=True, help="where the target image and socket go")
    ap.add_argument("--fio-file", required=True)
    ap.add_argument("--fio-size", default="256M")
    ap.add_argument("--burst-file", required=True, help="at least --dirty bytes, laid out")
    ap.add_argument("--dirty", type=int, default=64 * MIB)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--settle", type=float, default=2.0)
    ap.add_argument("--granularity", help="the job's chunk size (default: livemirror's)")
    args = ap.parse_args()

    print("rep  dirty_before  burst_ms  window_ms  dirty_at_complete  complete_ms  held_ms  "
          "rescans  complete_failed  fio_iops  fsck")
    runs = []
    for rep in range(1, args.reps + 1):
        r = one_run(args, rep)
        runs.append(r)
        print(f"{rep}  {r['dirty_before_mib']:.1f}M  {r['burst_ms']:.0f}  {r['window_ms']:.0f}  "
              f"{r['dirty_mib']:.1f}M  {r['complete_ms']:.0f}  {r['held_ms']}  "
              f"{r['rescans']}  {r['complete_failed']}  {r['fio_iops']}  clean", flush=True)
    held = sorted(r["held_ms"] for r in runs)
    dirty = [r["dirty_mib"] for r in runs]
    print(f"held_ms_p50={statistics.median(held)} held_ms_max={held[-1]} "
          f"dirty_at_complete_mib_min={min(dirty):.1f} max={max(dirty):.1f} "
          f"complete_ms_p50={statistics.median(r['complete_ms'] for r in runs):.0f} "
          f"fio_iops_p50={statistics.median(r['fio_iops'] or 0 for r in runs)}")


if __name__ == "__main__":
    sys.exit(main())
