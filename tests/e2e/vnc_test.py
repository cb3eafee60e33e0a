#!/usr/bin/env python3
"""vgpu-vnc end to end (docs/vnc.md): a real QEMU 10 and the test guest on our backend, vgpu-vnc on
the backend's export socket, and real clients: libvncclient (tests/tools/vnc-probe) forcing raw
and zrle, and the browser view in headless Chromium (Debian's chromium, driven by playwright-core
from web/node_modules). Keys and clicks go to the guest through QEMU's QMP (virtio-keyboard-pci
and virtio-tablet-pci), and the guest echoes the input events it reads (drmtest input).

Environment: VGPU_BACKEND, VGPU_GUEST_CACHE (as e2e_test.py), VGPU_VNC (default: beside the
backend), VGPU_VNC_PROBE, VGPU_ARTIFACTS (where screenshots are kept).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from e2e_test import BACKEND, CACHE, ROOT, Backend, GuestConsole, LineReader, pattern  # noqa: E402

VNC = os.environ.get("VGPU_VNC") or os.path.join(os.path.dirname(BACKEND), "vgpu-vnc")
PROBE = os.environ.get("VGPU_VNC_PROBE") or os.path.join(ROOT, "build", "release", "tests", "vnc-probe")
ARTIFACTS = os.environ.get("VGPU_ARTIFACTS") or tempfile.mkdtemp(prefix="vgpu-vnc-artifacts-")
BROWSER_SCRIPT = os.path.join(ROOT, "tests", "browser", "view_page.mjs")
INPUT_DEVICES = ["-device", "virtio-keyboard-pci", "-device", "virtio-tablet-pci"]

# linux/input-event-codes.h
KEY_LEFTSHIFT, KEY_1, KEY_H, KEY_I, KEY_O, KEY_K, BTN_LEFT = 42, 2, 35, 23, 24, 37, 272
ABS_X, ABS_Y = 0, 1


def abs_value(position, size):
    """QMP's absolute axis for a pixel, as vgpu-vnc computes it (0 .. 0x7fff, rounded)."""
    return min(0x7FFF, (position * 0x7FFF + (size - 1) // 2) // (size - 1))


class Process:
    """A child with its stdout read by line; stderr to a file."""

    def __init__(self, command, workdir, name):
        self.log_path = os.path.join(workdir, f"{name}.log")
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log_file)
        self.out = LineReader(self.proc.stdout)

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.log_file):
            try:
                stream.close()
            except BrokenPipeError:
                pass
        return self.proc.returncode


class VncE2E(unittest.TestCase):
    blob = False

    def setUp(self):
        for path, what in ((VNC, "vgpu-vnc"), (PROBE, "vnc-probe")):
            if not os.access(path, os.X_OK):
                self.fail(f"no {what} at {path!r}: build it (./run test does)")
        if not os.path.exists(os.path.join(CACHE, "guest.env")):
            self.fail(f"the test guest is not built in {CACHE}: run guest/build.sh (./run test does)")
        self.backend = Backend(*(["--blob"] if self.blob else []), export=True)
        self.workdir = tempfile.mkdtemp(prefix="vgpu-vnc-e2e-")
        self.qmp_path = os.path.join(self.workdir, "vnc-qmp.sock")
        self.children = []

    def tearDown(self):
        for child in reversed(self.children):
            child.close()
        alive = self.backend.alive()
        code = self.backend.stop()
        self.assertTrue(alive, "the backend died during the test:\n" + self.backend.log()[-4000:])
        self.assertEqual(code, 0, "the backend did not exit 0 on SIGTERM")

    def guest(self, steps, hold=90):
        guest = GuestConsole(steps, [*self.backend.device_args(), "-qmp", f"unix:{self.qmp_path},server=on,wait=off",
                                     *INPUT_DEVICES], hold=hold, timeout=240, blob=self.blob)
        self.addCleanup(guest.close)
        return guest

    def context(self, guest=None):
        parts = [f"\n--- {os.path.basename(c.log_path)} ---\n{c.log()[-3000:]}" for c in self.children]
        if guest:
            parts.append(f"\n--- guest ---\n{guest.output()[-4000:]}")
        parts.append(f"\n--- backend ---\n{self.backend.log()[-2000:]}")
        return "".join(parts)

    def start_vnc(self, *extra):
        """vgpu-vnc on free ports; returns (its process, the VNC address, the page's URL or None)."""
        vnc = Process([VNC, "--export", self.backend.export_path, "--listen", "127.0.0.1:0",
                       "--log-level", "debug", *extra], self.workdir, "vgpu-vnc")
        self.children.append(vnc)
        address = vnc.out.wait_for(r"^vnc (\S+)")
        self.assertIsNotNone(address, "vgpu-vnc did not start" + self.context())
        url = None
        if "--http" in extra:
            url = vnc.out.wait_for(r"^http (\S+)")
            self.assertIsNotNone(url, "vgpu-vnc served no page" + self.context())
        self.assertIsNotNone(vnc.out.wait_for(r"^ready$"), self.context())
        return vnc, address.group(1), url.group(1) if url else None

    def probe(self, address, encodings):
        probe = Process([PROBE, address, "--encodings", encodings], self.workdir, f"probe-{encodings}")
        self.children.append(probe)
        self.assertIsNotNone(probe.out.wait_for(r"^connected \d+ \d+"), "vnc-probe did not connect" + self.context())
        return probe

    def wait_for_pattern(self, probe, name, width, height, variant, timeout=15):
        """Frames from the client until one is the guest's pattern, pixel for pixel."""
        path = os.path.join(self.workdir, f"{name}.ppm")
        deadline = time.monotonic() + timeout
        message = "no frame"
        while time.monotonic() < deadline:
            probe.send(f"frame {path}")
            self.assertIsNotNone(probe.out.wait_for(r"^frame \d+ \d+"), "vnc-probe stopped" + self.context())
            ok, message = pattern.compare(path, variant, (width, height))
            if ok:
                return path
            time.sleep(0.2)
        self.fail(f"{name}: the client's frame is not the pattern: {message} ({path})" + self.context())

    def test_raw_and_zrle_clients_get_the_pattern_and_a_mode_change_as_a_resize(self):
        guest = self.guest("pattern,pattern:1024x768")
        ready = guest.wait_for(r"VGPU-READY pattern (\d+)x(\d+) variant=(\d+)")
        self.assertIsNotNone(ready, "no VGPU-READY" + self.context(guest))
        width, height, variant = (int(g) for g in ready.groups())
        vnc, address, _ = self.start_vnc()
        raw = self.probe(address, "raw")
        zrle = self.probe(address, "zrle")
        self.wait_for_pattern(raw, "raw", width, height, variant)
        self.wait_for_pattern(zrle, "zrle", width, height, variant)
        guest.release()
        second = guest.wait_for(r"VGPU-READY pattern (\d+)x(\d+) variant=(\d+)")
        self.assertIsNotNone(second, "no second VGPU-READY" + self.context(guest))
        w2, h2, v2 = (int(g) for g in second.groups())
        self.assertEqual((w2, h2), (1024, 768))
        for probe in (raw, zrle):
            self.assertIsNotNone(probe.out.wait_for(rf"^resize {w2} {h2}$", timeout=15),
                                 "the client saw no desktop resize to 1024x768" + self.context(guest))
        self.wait_for_pattern(zrle, "zrle-1024x768", w2, h2, v2)
        self.wait_for_pattern(raw, "raw-1024x768", w2, h2, v2)
        guest.release()
        self.assertEqual(guest.finish(), 0, "QEMU did not exit 0" + self.context(guest))
        self.assertEqual(vnc.close(), 0, "vgpu-vnc did not exit 0 on SIGTERM" + self.context())
        self.assertRegex(vnc.log(), r"stopping: 2 clients served, \d+ updates sent")

    def test_the_guest_cursor_reaches_a_client_as_a_cursor_shape_and_moves(self):
        guest = self.guest("pattern,cursor")
        self.assertIsNotNone(guest.wait_for(r"VGPU-READY pattern"), self.context(guest))
        vnc, address, _ = self.start_vnc()
        probe = self.probe(address, "raw")
        guest.release()
        # SETCURSOR2 names the hot spot 8,8: libvncserver's position is the hot spot's.
        moves = 0
        while True:
            line = guest.wait_for(r"VGPU-READY cursor .*cursor=(\d+),(\d+) step=(\d+)")
            self.assertIsNotNone(line, self.context(guest))
            x, y, step = (int(g) for g in line.groups())
            if step == 0:
                self.assertIsNotNone(probe.out.wait_for(r"^cursor 64 64 8 8$"),
                                     "no 64x64 cursor shape with hot spot 8,8" + self.context(guest))
            if step in (1, 2):
                self.assertIsNotNone(probe.out.wait_for(rf"^cursorpos {x + 8} {y + 8}$"),
                                     f"no cursor position {x + 8},{y + 8}" + self.context(guest))
                moves += 1
            guest.release()
            if step == 4:
                break
        self.assertEqual(moves, 2)
        self.assertEqual(guest.finish(), 0, self.context(guest))

    def wait_for_input(self, guest, expected):
        """The guest's echo of each expected (kind, code, value), in order per device: the keyboard
        and the tablet are two virtio devices with queues of their own, so the guest may read a
        click before a key sent ahead of it."""
        keyboard = [e for e in expected if e[0] == "key"]
        pointer = [e for e in expected if e[0] != "key"]
        while keyboard or pointer:
            match = guest.wait_for(r"VGPU-INPUT (key|btn|abs|rel) code=(\d+) value=(-?\d+) ")
            if match is None:
                self.fail(f"the guest never read {(keyboard or pointer)[0]}" + self.context(guest))
            event = (match.group(1), int(match.group(2)), int(match.group(3)))
            queue = keyboard if event[0] == "key" else pointer
            if queue and queue[0] == event:
                queue.pop(0)

    def test_keys_and_clicks_from_a_vnc_client_reach_the_guest(self):
        guest = self.guest("input,pattern")
        self.assertIsNotNone(guest.wait_for(r"VGPU-INPUT-READY"), "no input devices in the guest" + self.context(guest))
        ready = guest.wait_for(r"VGPU-READY pattern (\d+)x(\d+)")
        self.assertIsNotNone(ready, self.context(guest))
        width, height = int(ready.group(1)), int(ready.group(2))
        vnc, address, _ = self.start_vnc("--qmp", self.qmp_path)
        probe = self.probe(address, "raw")
        # "Hi!" as a VNC client types it: keysyms, with the shift key around the capitals.
        for keysym, down in ((0xFFE1, 1), (ord("H"), 1), (ord("H"), 0), (0xFFE1, 0), (ord("i"), 1), (ord("i"), 0),
                             (0xFFE1, 1), (ord("!"), 1), (ord("!"), 0), (0xFFE1, 0)):
            probe.send(f"key {keysym:#x} {down}")
        probe.send(f"pointer 100 50 1")
        probe.send(f"pointer 100 50 0")
        self.wait_for_input(guest, [
            ("key", KEY_LEFTSHIFT, 1), ("key", KEY_H, 1), ("key", KEY_H, 0), ("key", KEY_LEFTSHIFT, 0),
            ("key", KEY_I, 1), ("key", KEY_I, 0), ("key", KEY_LEFTSHIFT, 1), ("key", KEY_1, 1), ("key", KEY_1, 0),
            ("key", KEY_LEFTSHIFT, 0), ("abs", ABS_X, abs_value(100, width)), ("abs", ABS_Y, abs_value(50, height)),
            ("btn", BTN_LEFT, 1), ("btn", BTN_LEFT, 0)])
        guest.release()
        probe.send("quit")
        self.assertEqual(guest.finish(), 0, self.context(guest))
        self.assertEqual(vnc.close(), 0, self.context())
        self.assertRegex(vnc.log(), r"10 keys, 2 pointer events")

    def test_browser_view_in_chromium_shows_the_pattern_and_types_into_the_guest(self):
        if not shutil.which("node"):
            self.fail("no node: ./run test installs Node.js's packages with npm")
        if not os.path.exists(os.path.join(ROOT, "web", "node_modules", "playwright-core")):
            self.fail("no web/node_modules/playwright-core: ./run deps installs it (npm ci in web/)")
        if not os.access("/usr/bin/chromium", os.X_OK):
            self.fail("no /usr/bin/chromium: ./run deps installs Debian's chromium")
        guest = self.guest("input,pattern")
        self.assertIsNotNone(guest.wait_for(r"VGPU-INPUT-READY"), self.context(guest))
        ready = guest.wait_for(r"VGPU-READY pattern (\d+)x(\d+) variant=(\d+)")
        self.assertIsNotNone(ready, self.context(guest))
        width, height, variant = (int(g) for g in ready.groups())
        vnc, address, url = self.start_vnc("--qmp", self.qmp_path, "--http", "127.0.0.1:0")
        os.makedirs(ARTIFACTS, exist_ok=True)
        suffix = "-blob" if self.blob else ""
        canvas = os.path.join(ARTIFACTS, f"browser-canvas{suffix}.png")
        shot = os.path.join(ARTIFACTS, f"browser-view{suffix}.png")
        result = subprocess.run(["node", BROWSER_SCRIPT, url + "?scale=1", str(width), str(height), canvas, shot,
                                 "--type", "ok"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        output = result.stdout.decode(errors="replace")
        self.assertEqual(result.returncode, 0, f"the page did not show the guest: {output}" + self.context(guest))
        report = json.loads(output.strip().splitlines()[-1])
        print(f"browser view: {shot} ({report['seconds']} s)", file=sys.stderr)
        w, h, pixels = pattern.read_image(canvas)
        self.assertEqual((w, h), (width, height))
        # noVNC asks for JPEG quality 6: tight sends the bars losslessly and the gradients as JPEG.
        expected = b"".join(pattern.expected_rows(w, h, variant))
        diffs = [abs(a - b) for a, b in zip(pixels, expected)]
        mean = sum(diffs) / len(diffs)
        over = sum(1 for d in diffs if d > 16)
        self.assertLess(mean, 2.0, f"the canvas ({canvas}) is far from the pattern")
        self.assertLess(over, len(diffs) // 1000, f"the canvas ({canvas}): {over} channel values off by more than 16")
        self.wait_for_input(guest, [("key", KEY_O, 1), ("key", KEY_O, 0), ("key", KEY_K, 1), ("key", KEY_K, 0)])
        guest.release()
        self.assertEqual(guest.finish(), 0, self.context(guest))
        self.assertEqual(vnc.close(), 0, self.context())


class VncChecks(unittest.TestCase):
    """What vgpu-vnc refuses, with a backend and no guest: its command line, and hostile or
    foreign HTTP clients, after which it goes on serving."""

    def setUp(self):
        self.backend = Backend(export=True)
        self.workdir = tempfile.mkdtemp(prefix="vgpu-vnc-checks-")

    def tearDown(self):
        self.backend.stop()

    def run_vnc(self, *args):
        result = subprocess.run([VNC, "--export", self.backend.export_path, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, timeout=30)
        return result.returncode, result.stderr.decode().strip()

    def test_unsafe_or_wrong_command_lines_fail_with_one_line(self):
        password = os.path.join(self.workdir, "password")
        with open(password, "w") as f:
            f.write("secret\n")
        os.chmod(password, 0o644)
        cases = [
            (("--listen", "0.0.0.0:0"), 2, "is not loopback: it needs --password-file"),
            (("--listen", "0.0.0.0:0", "--password-file", password), 2, "readable by others"),
            (("--http", "0.0.0.0:0"), 2, "loopback only"),
            (("--listen", "example.org:5900"), 2, "not looked up"),
            (("--plane", "dmabuf"), 2, "--plane"),
            (("--output", "7"), 1, "refused it: output 7"),
        ]
        for args, code, text in cases:
            got, err = self.run_vnc(*args)
            self.assertEqual(got, code, f"{args}: {err}")
            self.assertIn(text, err, f"{args}")
            self.assertEqual(len(err.splitlines()), 1, f"{args}: more than one line: {err}")
        os.chmod(password, 0o600)
        got, err = self.run_vnc("--listen", "0.0.0.0:0", "--password-file", password)
        self.assertEqual(got, 2)
        self.assertIn("--tls-cert", err)
        got, err = subprocess.run([VNC, "--export", os.path.join(self.workdir, "none.sock")], stderr=subprocess.PIPE,
                                  timeout=30).returncode, ""
        self.assertEqual(got, 1)

    def test_foreign_pages_and_bad_requests_are_refused_and_it_goes_on_serving(self):
        import socket
        vnc = Process([VNC, "--export", self.backend.export_path, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                      self.workdir, "vgpu-vnc")
        try:
            self.assertIsNotNone(vnc.out.wait_for(r"^ready$"), vnc.log())
            url = next(l for l in vnc.out.lines if l.startswith("http "))[5:]
            host_port = url.split("/")[2]
            host, port = host_port.rsplit(":", 1)

            def ask(request):
                with socket.create_connection((host, int(port)), timeout=10) as s:
                    s.sendall(request.encode())
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
                return data.decode(errors="replace")

            upgrade = ("GET /websockify HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Origin: {origin}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            self.assertIn(" 403 ", ask(upgrade.format(host=host_port, origin="http://evil.example")).splitlines()[0])
            self.assertIn(" 403 ", ask(upgrade.format(host="evil.example:80", origin="http://evil.example:80")).splitlines()[0])
            self.assertIn(" 403 ", ask(f"GET / HTTP/1.1\r\nHost: rebound.example:{port}\r\n\r\n").splitlines()[0])
            self.assertIn(" 405 ", ask(f"POST / HTTP/1.1\r\nHost: {host_port}\r\n\r\n").splitlines()[0])
            self.assertIn(" 403 ", ask(f"GET /novnc/../../etc/passwd HTTP/1.1\r\nHost: {host_port}\r\n\r\n").splitlines()[0])
            self.assertIn(" 400 ", ask("NONSENSE\r\n\r\n").splitlines()[0])
            self.assertIn(" 404 ", ask(f"GET /nothing.js HTTP/1.1\r\nHost: {host_port}\r\n\r\n").splitlines()[0])
            # A client that sends half a request and stalls holds nothing up.
            with socket.create_connection((host, int(port)), timeout=10) as stalled:
                stalled.sendall(b"GET / HTTP/1.1\r\nHost: ")
                page = ask(f"GET / HTTP/1.1\r\nHost: {host_port}\r\n\r\n")
                module = ask(f"GET /novnc/core/rfb.js HTTP/1.1\r\nHost: {host_port}\r\n\r\n")
            self.assertIn(" 200 ", page.splitlines()[0])
            self.assertIn("import RFB from './novnc/core/rfb.js'", page)
            self.assertIn("Content-Type: text/javascript", module)
            # Our own page's upgrade is taken (libvncserver answers 101 and speaks RFB).
            with socket.create_connection((host, int(port)), timeout=10) as ws:
                ws.sendall(upgrade.format(host=host_port, origin=f"http://{host_port}").encode())
                self.assertIn(b" 101 ", ws.recv(4096).split(b"\r\n")[0])
            self.assertIsNone(vnc.proc.poll(), "vgpu-vnc died")
        finally:
            self.assertEqual(vnc.close(), 0, vnc.log())


class VncSlowReader(unittest.TestCase):
    """A browser that asks for a big file and never reads it holds nothing up."""

    def test_a_client_that_does_not_read_its_answer_does_not_stall_the_server(self):
        import socket
        workdir = tempfile.mkdtemp(prefix="vgpu-vnc-slow-")
        web = os.path.join(workdir, "web")
        os.makedirs(os.path.join(web, "novnc", "core"))
        for name, size in (("index.html", 100), ("novnc/core/rfb.js", 100), ("big.bin", 6 << 20)):
            with open(os.path.join(web, name), "wb") as f:
                f.write(b"x" * size)
        backend = Backend(export=True)
        vnc = Process([VNC, "--export", backend.export_path, "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
                       "--web", web], workdir, "vgpu-vnc")
        try:
            self.assertIsNotNone(vnc.out.wait_for(r"^ready$"), vnc.log())
            host_port = next(l for l in vnc.out.lines if l.startswith("http "))[5:].split("/")[2]
            host, port = host_port.rsplit(":", 1)
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect((host, int(port)))
            stalled.sendall(f"GET /big.bin HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode())
            time.sleep(0.5)
            # A blocking server would sit in send() for the stalled client now.
            with socket.create_connection((host, int(port)), timeout=3) as s:
                s.sendall(f"GET / HTTP/1.1\r\nHost: {host_port}\r\n\r\n".encode())
                answer = s.recv(4096)
            self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
            # The stalled client still gets its whole file once it reads.
            received = 0
            stalled.settimeout(10)
            while chunk := stalled.recv(1 << 16):
                received += len(chunk)
            stalled.close()
            self.assertGreater(received, 6 << 20)
        finally:
            self.assertEqual(vnc.close(), 0, vnc.log())
            backend.stop()


class VncAuth(unittest.TestCase):
    """Beyond loopback: VNC authentication and TLS for WebSocket clients."""

    def test_beyond_loopback_a_password_is_asked_and_websocket_clients_get_tls(self):
        import socket
        import ssl
        workdir = tempfile.mkdtemp(prefix="vgpu-vnc-auth-")
        backend = Backend(export=True)
        password = os.path.join(workdir, "password")
        with open(password, "w") as f:
            f.write("s3cret\n")
        os.chmod(password, 0o600)
        cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=localhost", "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
        vnc = Process([VNC, "--export", backend.export_path, "--listen", "0.0.0.0:0", "--password-file", password,
                       "--tls-cert", cert, "--tls-key", key], workdir, "vgpu-vnc")
        try:
            address = vnc.out.wait_for(r"^vnc 0\.0\.0\.0:(\d+)")
            self.assertIsNotNone(address, vnc.log())
            port = int(address.group(1))
            target = f"127.0.0.1:{port}"
            wrong = subprocess.run([PROBE, target, "--password", "guess"], input=b"quit\n", capture_output=True,
                                   timeout=30)
            self.assertNotEqual(wrong.returncode, 0, "a wrong password was let in")
            right = Process([PROBE, target, "--password", "s3cret"], workdir, "probe")
            self.assertIsNotNone(right.out.wait_for(r"^connected 640 480"), right.log() + vnc.log())
            right.send("quit")
            right.close()
            # A WebSocket client over TLS: libvncserver answers the upgrade inside TLS.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall((f"GET /websockify HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                                 f"Connection: Upgrade\r\nOrigin: https://127.0.0.1:{port}\r\n"
                                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
                    self.assertIn(b" 101 ", tls.recv(4096).split(b"\r\n")[0])
                    self.assertEqual(tls.version()[:3], "TLS")
            self.assertIsNone(vnc.proc.poll(), "vgpu-vnc died")
        finally:
            self.assertEqual(vnc.close(), 0, vnc.log())
            backend.stop()


class VncRestart(unittest.TestCase):
    """The backend goes away under vgpu-vnc and comes back on the same export socket."""

    def test_a_restarted_backend_is_leased_again_and_clients_stay(self):
        workdir = tempfile.mkdtemp(prefix="vgpu-vnc-restart-")
        export = os.path.join(workdir, "export.sock")
        first = Backend("--export", export)
        vnc = Process([VNC, "--export", export, "--listen", "127.0.0.1:0"], workdir, "vgpu-vnc")
        probe = None
        try:
            address = vnc.out.wait_for(r"^vnc (\S+)")
            self.assertIsNotNone(address, vnc.log())
            probe = Process([PROBE, address.group(1)], workdir, "probe")
            self.assertIsNotNone(probe.out.wait_for(r"^connected "), probe.log())
            first.stop()
            second = Backend("--export", export)
            try:
                deadline = time.monotonic() + 10
                while "leased output 0 again" not in vnc.log() and time.monotonic() < deadline:
                    time.sleep(0.1)
                self.assertIn("the backend closed the export socket", vnc.log())
                self.assertIn("leased output 0 again", vnc.log())
                probe.send("frame " + os.path.join(workdir, "f.ppm"))
                self.assertIsNotNone(probe.out.wait_for(r"^frame "), "the client lost its server: " + probe.log())
            finally:
                second.stop()
        finally:
            if probe:
                probe.close()
            self.assertEqual(vnc.close(), 0, vnc.log())


class VncE2EBlob(VncE2E):
    """The same with the guest's own virtio_gpu (force_blob=1) and --blob: blob resources."""
    blob = True


if __name__ == "__main__":
    unittest.main()
