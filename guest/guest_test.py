#!/usr/bin/env python3
"""Boots the test guest, checks every frame it announces, and reports.

    guest_test.py --test STEPS [--args A] [--hold S] [--timeout S] [--keep DIR] [--no-verify]
                  [--cache DIR] [-- QEMU_ARGS...]

Runs guest/boot.sh with a QMP socket and the guest console on a pipe. On each
"VGPU-READY <name> <W>x<H> variant=<V>" line it takes a QMP screendump and compares it with the
documented pattern (guest/pattern.py), retrying for up to 5 s because the device shows the frame
a moment after the guest's ioctl returns; then it writes a newline to the console, which ends
the guest's hold at once. The guest console is echoed to stdout, with "HOST-CHECK" lines for the
frames, and the last line is
    GUEST-TEST-SUMMARY ok=0|1 steps_passed=N steps_failed=N frames_ok=N frames_bad=N qemu_rc=N
The exit code is 0 only when every step passed, every frame matched, the guest reached
VGPU-ALL-DONE and QEMU exited 0. QEMU_ARGS default to boot.sh's (-device virtio-gpu-pci).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, HERE)
import pattern  # noqa: E402
from qmp import Qmp, QmpError  # noqa: E402

READY = re.compile(r"VGPU-READY (\S+) (\d+)x(\d+) variant=(\d+)")
TEST_END = re.compile(r"VGPU-TEST-END (\S+) rc=(\d+)")
SCREENDUMP_RETRY_SECONDS = 5.0


def check_frame(qmp, path, width, height, variant):
    """Screendumps until the frame matches or time is up; returns (ok, message)."""
    deadline = time.monotonic() + SCREENDUMP_RETRY_SECONDS
    while True:
        try:
            qmp.screendump(path)
            ok, message = pattern.compare(path, variant, (width, height))
        except (QmpError, ValueError, OSError) as error:
            ok, message = False, f"screendump failed: {error}"
        if ok or time.monotonic() > deadline:
            return ok, message
        time.sleep(0.2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", required=True)
    parser.add_argument("--args")
    parser.add_argument("--hold", default="60", help="guest hold per frame (the host releases it sooner)")
    parser.add_argument("--timeout", default="300")
    parser.add_argument("--cache")
    parser.add_argument("--keep", help="keep the screendumps in this directory")
    parser.add_argument("--blob", action="store_true", help="the patched virtio_gpu module (force_blob=1)")
    parser.add_argument("--no-verify", action="store_true", help="release frames without checking them")
    parser.add_argument("qemu_args", nargs="*")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="vgpu-guest-")
    qmp_path = os.path.join(workdir, "qmp.sock")
    command = [os.path.join(HERE, "boot.sh"), "--test", args.test, "--hold", args.hold, "--timeout", args.timeout,
               "--qmp", qmp_path]
    if args.args:
        command += ["--args", args.args]
    if args.cache:
        command += ["--cache", args.cache]
    if args.blob:
        command += ["--blob"]
    if args.qemu_args:
        command += ["--"] + args.qemu_args

    steps_passed = steps_failed = frames_ok = frames_bad = 0
    all_done = False
    qmp = None
    start = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\r\n")
            print(line, flush=True)
            if "VGPU-ALL-DONE" in line:
                all_done = True
            end = TEST_END.search(line)
            if end:
                if end.group(2) == "0":
                    steps_passed += 1
                else:
                    steps_failed += 1
            ready = READY.search(line)
            if not ready:
                continue
            if not args.no_verify:
                frame = frames_ok + frames_bad
                path = os.path.join(workdir, f"frame-{frame:03d}-{ready.group(1)}.ppm")
                try:
                    qmp = qmp or Qmp(qmp_path)
                    ok, message = check_frame(qmp, path, int(ready.group(2)), int(ready.group(3)),
                                              int(ready.group(4)))
                except (QmpError, OSError) as error:
                    ok, message = False, f"no QMP connection: {error}"
                frames_ok += ok
                frames_bad += not ok
                print(f"HOST-CHECK frame={frame} {ready.group(1)} {'OK' if ok else 'MISMATCH'} {message}", flush=True)
            try:
                proc.stdin.write(b"\n")
                proc.stdin.flush()
            except BrokenPipeError:
                pass
    finally:
        if qmp is not None:
            qmp.close()
        if proc.poll() is None and sys.exc_info()[0] is not None:
            proc.terminate()  # boot.sh runs QEMU under timeout(1), which passes SIGTERM on
    qemu_rc = proc.wait()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        for name in os.listdir(workdir):
            if name.endswith(".ppm"):
                shutil.copy(os.path.join(workdir, name), args.keep)
    shutil.rmtree(workdir, ignore_errors=True)
    ok = all_done and steps_failed == 0 and frames_bad == 0 and qemu_rc == 0
    print(f"GUEST-TEST-SUMMARY ok={int(ok)} steps_passed={steps_passed} steps_failed={steps_failed} "
          f"frames_ok={frames_ok} frames_bad={frames_bad} qemu_rc={qemu_rc} seconds={time.monotonic() - start:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
