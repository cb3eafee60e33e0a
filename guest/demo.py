#!/usr/bin/env python3
"""./run demo: the test guest, live, on our backend.

Starts build/bin/vgpu-display on a socket, boots the test guest under QEMU 10 (TCG) with
vhost-user-gpu-pci connected to it (and a virtio keyboard and tablet), runs an endless animation in
the guest (page flips of a moving bar), starts vgpu-vnc on the backend's export socket with the
browser view, prints its URL (loopback) and a vgpu-view command line, and writes a QMP screendump
every few seconds to the PNG path it prints. Keys typed in the browser view reach the guest (it
echoes them on the console shown here). Ctrl-C (or SIGTERM) stops everything it started and
exits 0. Nothing needs a display or a browser.
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
    parser.add_argument("--vnc", default="127.0.0.1:5900", help="vgpu-vnc's VNC address (port 0: any free one)")
    parser.add_argument("--http", default="127.0.0.1:6080", help="the browser view's address (port 0: any free one)")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="vgpu-demo-")
    out = args.out or work
    os.makedirs(out, exist_ok=True)
    socket_path = os.path.join(work, "vgpu.sock")
    control_path = os.path.join(work, "control.sock")
    export_path = os.path.join(work, "export.sock")
    qmp_path = os.path.join(work, "qmp.sock")
    vnc_qmp_path = os.path.join(work, "vnc-qmp.sock")
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
    qemu = subprocess.Popen([os.path.join(HERE, "boot.sh"), "--test", "input,animate:0", "--timeout", "86400",
                             "--qmp", qmp_path, "--cache", args.cache, "--",
                             "-chardev", f"socket,id=vgpu,path={socket_path}", "-device", "vhost-user-gpu-pci,chardev=vgpu",
                             # vgpu-vnc's own QMP (QEMU serves one client per socket) and the
                             # devices its keys and clicks go to.
                             "-qmp", f"unix:{vnc_qmp_path},server=on,wait=off",
                             "-device", "virtio-keyboard-pci", "-device", "virtio-tablet-pci"],
                            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True)
    print(f"demo: guest booting on vgpu-display ({socket_path})")
    while not (os.path.exists(export_path) and os.path.exists(vnc_qmp_path)):
        if qemu.poll() is not None:
            sys.exit(f"demo: QEMU exited ({qemu.returncode}); see {console_path}")
        time.sleep(0.05)
    vnc_log = open(os.path.join(work, "vgpu-vnc.log"), "wb")
    vnc = subprocess.Popen([os.path.join(os.path.dirname(args.backend), "vgpu-vnc"), "--export", export_path,
                            "--listen", args.vnc, "--http", args.http, "--qmp", vnc_qmp_path],
                           stdout=subprocess.PIPE, stderr=vnc_log, start_new_session=True)
    vnc_address = url = None
    for raw in iter(vnc.stdout.readline, b""):
        line = raw.decode().strip()
        if line.startswith("vnc "):
            vnc_address = line[4:]
        elif line.startswith("http "):
            url = line[5:]
        elif line == "ready":
            break
    if url is None:
        vnc.wait()
        with open(vnc_log.name, errors="replace") as f:
            sys.exit(f"demo: vgpu-vnc did not start: {f.read().strip()}")
    print(f"demo: a screenshot every {args.every:g} s goes to {latest} (numbered copies beside it)")
    print(f"demo: guest console in {console_path}, backend log in {backend_log.name}; Ctrl-C stops")
    ctl = os.path.join(os.path.dirname(args.backend), "vgpu-ctl")
    print(f"demo: control socket {control_path}; try, from another shell:")
    print(f"        {ctl} --control {control_path} stats")
    print(f"        {ctl} --control {control_path} screendump 0 /tmp/vgpu-screen.png")
    print(f"        {ctl} --control {control_path} crc 0 --follow")
    print(f"demo: the guest in a browser (keyboard and mouse go to it): {url}")
    print(f"demo: VNC clients: {vnc_address} (vgpu-vnc's log in {vnc_log.name})")
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
        for proc in (vnc, qemu, backend):
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
