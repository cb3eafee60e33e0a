#!/usr/bin/env python3
"""End-to-end tests: a real QEMU 10 and a real Linux guest (Debian's 6.1 kernel, guest/) with our
backend as its virtio-gpu device. Each guest step puts a documented pattern on screen; the host
checks QMP screendumps pixel for pixel (guest/guest_test.py). Standard library unittest.

Environment: VGPU_BACKEND (the vgpu-display binary), VGPU_GUEST_CACHE (the built guest).
Usage: e2e_test.py [unittest arguments, e.g. E2E.test_reboot]
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUEST = os.path.join(ROOT, "guest")
BACKEND = os.environ.get("VGPU_BACKEND", os.path.join(ROOT, "build", "bin", "vgpu-display"))
CACHE = os.environ.get("VGPU_GUEST_CACHE", os.path.join(ROOT, "build", "guest"))
SUMMARY = re.compile(r"GUEST-TEST-SUMMARY ok=(\d) steps_passed=(\d+) steps_failed=(\d+) frames_ok=(\d+) frames_bad=(\d+)")


class Backend:
    """Our backend on a unix socket, its log in a file."""

    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="vgpu-e2e-")
        self.socket = os.path.join(self.dir, "vgpu.sock")
        self.log_path = os.path.join(self.dir, "backend.log")
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen([BACKEND, "--socket-path", self.socket, "--log-level", "debug", *extra],
                                     stdout=subprocess.DEVNULL, stderr=self.log_file)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("backend did not start:\n" + self.log())
            time.sleep(0.02)

    def device_args(self, device="vhost-user-gpu-pci"):
        return ["-chardev", f"socket,id=vgpu,path={self.socket}", "-device", f"{device},chardev=vgpu"]

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    return self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                    return None
            return self.proc.returncode
        finally:
            self.log_file.close()


def run_guest(steps, device_args, timeout=240, extra=()):
    """Boots the guest with `steps`; returns (summary match or None, console output)."""
    command = [sys.executable, os.path.join(GUEST, "guest_test.py"), "--test", steps, "--cache", CACHE,
               "--timeout", str(timeout), *extra, "--", *device_args]
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout + 60)
    output = proc.stdout.decode(errors="replace")
    return SUMMARY.search(output), output, proc.returncode


sys.path.insert(0, GUEST)
import pattern  # noqa: E402
from qmp import Qmp  # noqa: E402


def check_console(path, blocks, text):
    """Checks a screendump of the framebuffer console after the guest's `console` step: line 0
    holds full blocks (X) and spaces (_) as `blocks` says, line 1 holds `text` (every non-space
    cell has lit pixels, every space is dark), and the rest of the screen is dark. Returns a list
    of problems (empty when the console shows exactly that)."""
    width, height, data = pattern.read_ppm(path)

    def pixel(x, y):
        i = (y * width + x) * 3
        return (data[i] << 16) | (data[i + 1] << 8) | data[i + 2]

    # The cell size is the first block's extent: the font is the kernel's choice.
    cw = 0
    while cw < width and pixel(cw, 0):
        cw += 1
    ch = 0
    while ch < height and pixel(0, ch):
        ch += 1
    if not (4 <= cw <= 32 and 8 <= ch <= 64):
        return [f"no text cell at the top left (lit run {cw}x{ch})"]
    fg = pixel(0, 0)

    def cell(col, row):
        return [pixel(x, y) for y in range(row * ch, row * ch + ch) for x in range(col * cw, col * cw + cw)]

    problems = []
    for col, kind in enumerate(blocks):
        values = set(cell(col, 0))
        if kind == "X" and values != {fg}:
            problems.append(f"block cell {col} is not solid {fg:#08x}: {sorted(values)[:4]}")
        if kind == "_" and values != {0}:
            problems.append(f"space cell {col} in the block line is not dark")
    for col, char in enumerate(text):
        lit = any(cell(col, 1))
        if char == " " and lit:
            problems.append(f"text cell {col} (space) has lit pixels")
        if char != " " and not lit:
            problems.append(f"text cell {col} ({char!r}) is dark")
    # Everything right of the two lines, and below them, is dark.
    for y in range(0, 2 * ch):
        start = (len(blocks) if y < ch else len(text)) * cw
        if any(pixel(x, y) for x in range(start, width)):
            problems.append(f"row {y} has lit pixels right of the text")
            break
    for y in range(2 * ch, height):
        row = data[y * width * 3:(y + 1) * width * 3]
        if row.count(0) != len(row):
            problems.append(f"row {y} below the text is not dark")
            break
    return problems


class E2E(unittest.TestCase):
    def setUp(self):
        if not os.path.exists(os.path.join(CACHE, "guest.env")):
            self.fail(f"the test guest is not built in {CACHE}: run guest/build.sh (./run test does)")
        if not os.access(BACKEND, os.X_OK):
            self.fail(f"no backend binary at {BACKEND}")
        self.backend = Backend()

    def tearDown(self):
        alive = self.backend.alive()
        code = self.backend.stop()
        self.assertTrue(alive, "the backend died during the test:\n" + self.backend.log()[-4000:])
        self.assertEqual(code, 0, "the backend did not exit 0 on SIGTERM")

    def boot(self, steps, device="vhost-user-gpu-pci", expect_frames=None, extra=()):
        summary, output, rc = run_guest(steps, self.backend.device_args(device), extra=extra)
        context = f"\n--- guest ---\n{output[-6000:]}\n--- backend ---\n{self.backend.log()[-3000:]}"
        self.assertIsNotNone(summary, "no GUEST-TEST-SUMMARY" + context)
        ok, passed, failed, frames_ok, frames_bad = (int(g) for g in summary.groups())
        self.assertEqual(failed, 0, "a guest step failed" + context)
        self.assertEqual(frames_bad, 0, "a frame did not match its pattern" + context)
        if expect_frames is not None:
            self.assertGreaterEqual(frames_ok, expect_frames, "too few frames were checked" + context)
        self.assertEqual(ok, 1, "the guest run did not complete" + context)
        self.assertEqual(rc, 0, context)
        return output

    def test_drm_programs_show_pixel_exact_frames(self):
        """Dumb buffers, legacy and atomic modesetting, page flips with events, DIRTYFB and several
        framebuffers, one boot; every announced frame is checked pixel for pixel."""
        output = self.boot("pattern,flip,dirtyfb,atomic:3,multi", expect_frames=8)
        for name in ("pattern", "flip", "dirtyfb", "atomic", "multi"):
            self.assertIn(f"VGPU-TEST-END {name} rc=0", output)
        self.assertRegex(output, r"VGPU-GUEST-UP kernel=6\.1\.")
        log = self.backend.log()
        self.assertIn("SET_FEATURES 0x10170000002: ignoring bits 0x10000000000", log)
        self.assertIn("display: QEMU offers protocol features", log)

    def test_cursor_image_and_moves_reach_the_backend(self):
        """QEMU's screendump leaves the cursor out: check what the backend received and forwarded."""
        output = self.boot("cursor", expect_frames=1)
        moves = re.findall(r"VGPU-CURSOR move x=(\d+) y=(\d+)", output)
        self.assertGreaterEqual(len(moves), 3, output)
        log = self.backend.log()
        self.assertIn("cursor update: scanout 0", log)
        self.assertIn("hot 8,8", log)
        for x, y in moves:
            if (x, y) != ("0", "0"):
                self.assertRegex(log, rf"cursor (move on scanout 0 to|image on scanout 0 at) {x},{y}\b",
                                 f"cursor position {x},{y} never reached the backend")
        self.assertIn("cursor hidden on scanout 0", log)

    def test_mode_change_to_another_size(self):
        output = self.boot("pattern,pattern:1024x768,pattern", expect_frames=3)
        self.assertIn("VGPU-READY pattern 1024x768", output)
        self.assertIn("VGPU-READY pattern 1280x800", output)

    def test_guest_reboot_keeps_serving(self):
        output = self.boot("pattern,reboot,flip,pattern", expect_frames=3)
        self.assertIn("VGPU-GUEST-REBOOT", output)
        self.assertGreaterEqual(output.count("VGPU-GUEST-UP"), 2, output)

    def test_vhost_user_vga_primary_display(self):
        """libvirt's choice for a primary display."""
        self.boot("pattern,flip", device="vhost-user-vga", expect_frames=2)

    def test_console_shows_the_text_the_guest_printed(self):
        """The guest writes to its framebuffer console; QEMU's screendump shows exactly that."""
        workdir = tempfile.mkdtemp(prefix="vgpu-console-")
        qmp_path = os.path.join(workdir, "qmp.sock")
        command = [os.path.join(GUEST, "boot.sh"), "--test", "console", "--hold", "60", "--timeout", "120",
                   "--qmp", qmp_path, "--cache", CACHE, "--", *self.backend.device_args()]
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        ready = None
        lines = []
        problems = ["never checked"]
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                lines.append(line)
                ready = re.search(r"VGPU-CONSOLE-READY size=\S+ blocks=(\S+) text=(\S+)", line)
                if ready:
                    break
            self.assertIsNotNone(ready, "".join(lines)[-4000:])
            blocks, text = ready.group(1), ready.group(2).replace("_", " ")
            qmp = Qmp(qmp_path)
            deadline = time.monotonic() + 5
            shot = os.path.join(workdir, "console.ppm")
            while problems and time.monotonic() < deadline:
                qmp.screendump(shot)
                problems = check_console(shot, blocks, text)
                if problems:
                    time.sleep(0.2)
            qmp.close()
            proc.stdin.write(b"\n")
            proc.stdin.flush()
            rest = proc.stdout.read().decode(errors="replace")
        finally:
            if proc.poll() is None:
                proc.wait(60)
            proc.stdin.close()
            proc.stdout.close()
        self.assertEqual(problems, [], "the console screendump does not show the guest's text")
        self.assertIn("VGPU-TEST-END console rc=0", rest)
        self.assertEqual(proc.returncode, 0)

    def test_qemu_killed_mid_run_then_next_qemu_is_served(self):
        command = [sys.executable, os.path.join(GUEST, "guest_test.py"), "--test", "animate:60", "--no-verify",
                   "--cache", CACHE, "--timeout", "120", "--", *self.backend.device_args()]
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        seen = []
        deadline = time.monotonic() + 120
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace")
                seen.append(line)
                if "VGPU-READY animate" in line or "VGPU-TEST-BEGIN animate" in line:
                    time.sleep(1.0)  # mid-animation: frames and fences in flight
                    break
                if time.monotonic() > deadline:
                    break
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        self.assertTrue(any("VGPU-TEST-BEGIN animate" in line for line in seen), "".join(seen)[-4000:])
        # The next QEMU, same backend process.
        self.boot("pattern", expect_frames=1)
        self.assertGreaterEqual(self.backend.log().count("frontend connected"), 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
