#!/usr/bin/env python3
"""./run demo: the test guest, live, on our backend.

Starts build/bin/vgpu-display on a socket, boots the test guest under QEMU 10 (TCG) with
vhost-user-gpu-pci connected to it, runs an endless animation in the guest (page flips of a moving
bar), and writes a QMP screendump every few seconds to the PNG path it prints. The guest console
is shown here. Ctrl-C (or SIGTERM) stops QEMU and the backend and exits 0.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from qmp import Qmp, QmpError  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default=os.path.join(ROOT, "build", "bin", "vgpu-display"))
    parser.add_argument("--cache", default=os.environ.get("VGPU_GUEST_CACHE", os.path.join(ROOT, "build", "guest")))
    parser.add_argument("--out", help="directory for the screenshots (default: a new one under /tmp)")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between screenshots")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: until Ctrl-C)")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="vgpu-demo-")
    out = args.out or work
    os.makedirs(out, exist_ok=True)
    socket_path = os.path.join(work, "vgpu.sock")
    control_path = os.path.join(work, "control.sock")
    export_path = os.path.join(work, "export.sock")
    qmp_path = os.path.join(work, "qmp.sock")
    latest = os.path.join(out, "screen.png")

    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    backend_log = open(os.path.join(work, "backend.log"), "wb")
    backend = subprocess.Popen([args.backend, "--socket-path", socket_path, "--control", control_path,
                                "--export", export_path], stderr=backend_log,
                               start_new_session=True)
    while not os.path.exists(socket_path):
        if backend.poll() is not None:
            sys.exit(f"demo: the backend exited ({backend.returncode}); see {backend_log.name}")
        time.sleep(0.02)
    console_path = os.path.join(work, "console.log")
    console = open(console_path, "wb")
    qemu = subprocess.Popen([os.path.join(HERE, "boot.sh"), "--test", "animate:0", "--timeout", "86400",
                             "--qmp", qmp_path, "--cache", args.cache, "--",
                             "-chardev", f"socket,id=vgpu,path={socket_path}", "-device", "vhost-user-gpu-pci,chardev=vgpu"],
                            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True)
    print(f"demo: guest booting on vgpu-display ({socket_path})")
    print(f"demo: a screenshot every {args.every:g} s goes to {latest} (numbered copies beside it)")
    print(f"demo: guest console in {console_path}, backend log in {backend_log.name}; Ctrl-C stops")
    ctl = os.path.join(os.path.dirname(args.backend), "vgpu-ctl")
    print(f"demo: control socket {control_path}; try, from another shell:")
    print(f"        {ctl} --control {control_path} stats")
    print(f"        {ctl} --control {control_path} screendump 0 /tmp/vgpu-screen.png")
    print(f"        {ctl} --control {control_path} crc 0 --follow")
    view = os.path.join(os.path.dirname(args.backend), "vgpu-view")
    print(f"demo: a window on the guest's screen (needs a display: X11, Wayland or Xvfb):")
    print(f"        {view} --export {export_path}")
    print(f"        {ctl} watch 0 --export {export_path}")
    sys.stdout.flush()

    qmp = None
    shots = 0
    started = time.monotonic()
    next_shot = started + args.every
    shown = 0
    status = 0
    try:
        while not stopping:
            if qemu.poll() is not None:
                print(f"demo: QEMU exited ({qemu.returncode})")
                status = 1
                break
            if backend.poll() is not None:
                print(f"demo: the backend exited ({backend.returncode})")
                status = 1
                break
            with open(console_path, "rb") as f:
                f.seek(shown)
                text = f.read()
                shown += len(text)
                if text:
                    sys.stdout.write(text.decode(errors="replace"))
                    sys.stdout.flush()
            now = time.monotonic()
            if now >= next_shot:
                next_shot = now + args.every
                try:
                    if qmp is None:
                        qmp = Qmp(qmp_path)
                    numbered = os.path.join(out, f"screen-{shots:04d}.png")
                    qmp.screendump(numbered, fmt="png")
                    shutil.copyfile(numbered, latest)
                    shots += 1
                    print(f"demo: screenshot {shots} -> {latest}")
                except (QmpError, OSError) as error:
                    print(f"demo: screendump failed: {error}")
                    qmp = None
            if args.seconds and now - started >= args.seconds:
                break
            time.sleep(0.2)
    finally:
        try:
            if qmp is not None:
                qmp.execute("quit")
        except (QmpError, OSError):
            pass
        for proc in (qemu, backend):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        print(f"demo: stopped after {shots} screenshots; the last is {latest}")
    return status


if __name__ == "__main__":
    sys.exit(main())
