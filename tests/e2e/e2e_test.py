#!/usr/bin/env python3
"""End-to-end tests: a real QEMU 10 and a real Linux guest (Debian's 6.1 kernel, guest/) with our
backend as its virtio-gpu device. Each guest step puts a documented pattern on screen; the host
checks QMP screendumps pixel for pixel (guest/guest_test.py). Standard library unittest.

The tests of CRC capture and screendump also talk to the backend's control socket
(docs/control.md) and compute the expected CRCs on the host, independently of the backend: the
expected image from guest/pattern.py, its CRC with `vgpu-ctl crc-file` and with CRC-32C in
Python (crc32c() below).

Environment: VGPU_BACKEND (the vgpu-display binary), VGPU_GUEST_CACHE (the built guest), VGPU_CTL
(vgpu-ctl; default: next to the backend).
Usage: e2e_test.py [unittest arguments, e.g. E2E.test_reboot]
"""
import base64
import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUEST = os.path.join(ROOT, "guest")
BACKEND = os.environ.get("VGPU_BACKEND", os.path.join(ROOT, "build", "bin", "vgpu-display"))
CACHE = os.environ.get("VGPU_GUEST_CACHE", os.path.join(ROOT, "build", "guest"))
CTL = os.environ.get("VGPU_CTL") or os.path.join(os.path.dirname(BACKEND), "vgpu-ctl")
VIEW = os.environ.get("VGPU_VIEW") or os.path.join(os.path.dirname(BACKEND), "vgpu-view")
SUMMARY = re.compile(r"GUEST-TEST-SUMMARY ok=(\d) steps_passed=(\d+) steps_failed=(\d+) frames_ok=(\d+) frames_bad=(\d+)")


class ControlError(Exception):
    pass


class Control:
    """A client of the backend's control socket (docs/control.md): one JSON object per line.
    execute() sends {"execute", "arguments", "id"} and reads up to the reply with that id; the
    events read on the way are kept in `events`."""

    def __init__(self, path, timeout=30.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.file = self.sock.makefile("rwb")
        self.greeting = self._read()
        if "QMP" not in self.greeting:
            raise ControlError(f"not a greeting: {self.greeting}")
        self.events = []
        self.next_id = 1

    def _read(self):
        line = self.file.readline()
        if not line:
            raise ControlError("the control socket was closed")
        return json.loads(line)

    def execute(self, command, arguments=None):
        """Returns the reply's "return"; raises ControlError on an "error" reply."""
        request_id = self.next_id
        self.next_id += 1
        request = {"execute": command, "id": request_id}
        if arguments is not None:
            request["arguments"] = arguments
        self.file.write(json.dumps(request).encode() + b"\n")
        self.file.flush()
        while True:
            message = self._read()
            if "event" in message:
                self.events.append(message)
                continue
            if message.get("id") != request_id:
                raise ControlError(f"{command}: a reply for another request: {message}")
            if "error" in message:
                error = message["error"]
                raise ControlError(f"{command}: {error.get('class')}: {error.get('desc')}")
            return message["return"]

    def close(self):
        try:
            self.file.close()
        finally:
            self.sock.close()


class Backend:
    """Our backend on a unix socket, its log in a file; with control=True also its control socket."""

    def __init__(self, *extra, control=False, export=False):
        self.dir = tempfile.mkdtemp(prefix="vgpu-e2e-")
        self.socket = os.path.join(self.dir, "vgpu.sock")
        self.control_path = os.path.join(self.dir, "control.sock") if control else None
        self.export_path = os.path.join(self.dir, "export.sock") if export else None
        if export:
            extra = (*extra, "--export", self.export_path)
        self.log_path = os.path.join(self.dir, "backend.log")
        self.log_file = open(self.log_path, "wb")
        if control:
            extra = (*extra, "--control", self.control_path)
        self.proc = subprocess.Popen([BACKEND, "--socket-path", self.socket, "--log-level", "debug", *extra],
                                     stdout=subprocess.DEVNULL, stderr=self.log_file)
        deadline = time.monotonic() + 10
        while not all(os.path.exists(p) for p in (self.socket, self.control_path, self.export_path) if p):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("backend did not start:\n" + self.log())
            time.sleep(0.02)

    def control(self):
        """A new client of the control socket."""
        return Control(self.control_path)

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


# ---- CRC capture's checksum, computed on the host ------------------------------------------------

def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """Standard CRC-32C (Castagnoli, reflected, initial and final XOR 0xFFFFFFFF), table-driven."""
    return _crc32c_register(data, crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def _crc32c_register(data, crc=0):
    """The bare CRC-32C register update (no initial or final XOR)."""
    table = CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def xrgb_bytes(rgb):
    """RGB bytes as 0x00RRGGBB little-endian pixels: B, G, R, 0."""
    pixels = bytearray(len(rgb) // 3 * 4)
    pixels[0::4] = rgb[2::3]
    pixels[1::4] = rgb[1::3]
    pixels[2::4] = rgb[0::3]
    return bytes(pixels)


def image_crc(rgb, width):
    """CRC capture's value for an image given as RGB bytes: the CRC-32C of its pixels as 0x00RRGGBB
    little-endian, row after row (docs/control.md), i.e. crc32c(xrgb_bytes(rgb)). Computed row by
    row: the register update is linear, register(r, row) = register(r, zeros) ^ register(0, row),
    so a row that occurs again (most of the pattern's rows) costs 32 XORs instead of a table pass."""
    stride = width * 4
    pixels = xrgb_bytes(rgb)
    # The register after `stride` zero bytes, as the images of its 32 bits.
    columns = [_crc32c_register(bytes(stride), 1 << bit) for bit in range(32)]
    rows = {}
    crc = 0xFFFFFFFF
    for start in range(0, len(pixels), stride):
        row = pixels[start:start + stride]
        alone = rows.get(row)
        if alone is None:
            alone = rows[row] = _crc32c_register(row)
        shifted, bit = 0, 0
        while crc:
            if crc & 1:
                shifted ^= columns[bit]
            crc >>= 1
            bit += 1
        crc = shifted ^ alone
    return crc ^ 0xFFFFFFFF


def ctl_crc_file(path):
    """`vgpu-ctl crc-file PATH`: the CRC it prints (0x%08x)."""
    proc = subprocess.run([CTL, "crc-file", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    output = proc.stdout.decode(errors="replace")
    match = re.search(r"\b0x([0-9a-fA-F]{8})\b", output)
    if proc.returncode != 0 or not match:
        raise AssertionError(f"vgpu-ctl crc-file {path} failed (exit {proc.returncode}): {output}")
    return int(match.group(1), 16)


# ---- PNG, decoded with zlib: 8-bit RGB or RGBA, non-interlaced, filter types 0-4 ----------------

def _add_bytes(a, b):
    """Bytewise (a + b) mod 256 of two equally long byte strings, all at once (SWAR on big ints)."""
    n = len(a)
    x, y = int.from_bytes(a, "little"), int.from_bytes(b, "little")
    low, high = int.from_bytes(b"\x7f" * n, "little"), int.from_bytes(b"\x80" * n, "little")
    return (((x & low) + (y & low)) ^ ((x ^ y) & high)).to_bytes(n, "little")


def read_png(path):
    """Returns (width, height, rgb_bytes) of an 8-bit RGB or RGBA PNG (alpha dropped)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, header, idat = 8, None, []
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise ValueError(f"{path}: bad CRC in chunk {kind!r}")
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path}: no IHDR")
    width, height, depth, colour, _, _, interlace = header
    if depth != 8 or colour not in (2, 6) or interlace != 0:
        raise ValueError(f"{path}: depth {depth} colour type {colour} interlace {interlace} is not supported")
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    if len(raw) != height * (stride + 1):
        raise ValueError(f"{path}: {len(raw)} bytes of image data, expected {height * (stride + 1)}")
    rows, prior = [], bytes(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:  # Sub
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xFF
        elif kind == 2:  # Up
            line = bytearray(_add_bytes(line, prior))
        elif kind == 3:  # Average
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prior[x]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = prior[x]
                c = prior[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        elif kind != 0:
            raise ValueError(f"{path}: filter type {kind} in row {y}")
        prior = bytes(line)
        rows.append(prior)
    rgb = b"".join(rows)
    if bpp == 4:
        out = bytearray(width * height * 3)
        out[0::3], out[1::3], out[2::3] = rgb[0::4], rgb[1::4], rgb[2::4]
        rgb = bytes(out)
    return width, height, rgb


def first_difference(width, a, b):
    """Where two RGB images of the same width first differ, as text."""
    for i in range(0, min(len(a), len(b)), 3):
        if a[i:i + 3] != b[i:i + 3]:
            return f"first difference at ({i // 3 % width},{i // 3 // width}): #{a[i:i + 3].hex()} vs #{b[i:i + 3].hex()}"
    return f"lengths {len(a)} and {len(b)}"


class GuestConsole:
    """guest/boot.sh with the serial console on pipes and a QMP socket: the test waits for marker
    lines and releases each hold with a newline (guest/README.md, the hold protocol)."""

    def __init__(self, steps, device_args, hold=60, timeout=120, blob=False):
        self.workdir = tempfile.mkdtemp(prefix="vgpu-e2e-guest-")
        self.qmp_path = os.path.join(self.workdir, "qmp.sock")
        command = [os.path.join(GUEST, "boot.sh"), "--test", steps, "--hold", str(hold), "--timeout", str(timeout),
                   "--qmp", self.qmp_path, "--cache", CACHE, *(["--blob"] if blob else []), "--", *device_args]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines = []

    def wait_for(self, pattern):
        """Reads console lines up to one that matches; None at the end of the output."""
        regex = re.compile(pattern)
        while True:
            raw = self.proc.stdout.readline()
            if not raw:
                return None
            line = raw.decode(errors="replace")
            self.lines.append(line)
            match = regex.search(line)
            if match:
                return match

    def release(self):
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()

    def finish(self, timeout=60):
        """Reads the rest of the console and waits for QEMU; returns its exit code."""
        self.lines.append(self.proc.stdout.read().decode(errors="replace"))
        return self.proc.wait(timeout)

    def output(self):
        return "".join(self.lines)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


def with_control_socket(test):
    """Marks a test whose backend opens its control socket."""
    test.control_socket = True
    return test


def with_export_socket(test):
    """Marks a test whose backend opens its export socket (docs/export.md)."""
    test.export_socket = True
    return test


class Xvfb:
    """A private X server (Xvfb) on a display number it picks itself (-displayfd)."""

    def __init__(self, size="1920x1200x24"):
        if not shutil.which("Xvfb"):
            raise AssertionError("no Xvfb: install xvfb (./run test does)")
        read_end, write_end = os.pipe()
        self.proc = subprocess.Popen(["Xvfb", "-displayfd", str(write_end), "-screen", "0", size, "-nolisten", "tcp"],
                                     pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write_end)
        number = b""
        with os.fdopen(read_end, "rb") as f:
            number = f.readline().strip()
        if not number:
            self.close()
            raise AssertionError("Xvfb did not start")
        self.display = ":" + number.decode()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def read_xwd(path):
    """An xwd dump (X Window Dump, version 7, ZPixmap, 24 or 32 bits per pixel) as (w, h, RGB bytes)."""
    with open(path, "rb") as f:
        data = f.read()
    fields = struct.unpack(">25I", data[:100])
    header_size, version, pixmap_format, depth, width, height = fields[:6]
    byte_order, bits_per_pixel, bytes_per_line = fields[7], fields[11], fields[12]
    red_mask, green_mask, blue_mask, ncolors = fields[14], fields[15], fields[16], fields[19]
    if version != 7 or pixmap_format != 2 or bits_per_pixel not in (24, 32):
        raise ValueError(f"{path}: xwd version {version} format {pixmap_format} bpp {bits_per_pixel}")
    start = header_size + ncolors * 12
    step = bits_per_pixel // 8
    order = "<" if byte_order == 0 else ">"

    def shift(mask):
        return (mask & -mask).bit_length() - 1

    rs, gs, bs = shift(red_mask), shift(green_mask), shift(blue_mask)
    out = bytearray()
    for y in range(height):
        row = data[start + y * bytes_per_line:start + y * bytes_per_line + width * step]
        if step == 4:
            for (v,) in struct.iter_unpack(order + "I", row):
                out += bytes(((v >> rs) & 0xff, (v >> gs) & 0xff, (v >> bs) & 0xff))
        else:
            for x in range(width):
                v = int.from_bytes(row[x * 3:x * 3 + 3], "little" if byte_order == 0 else "big")
                out += bytes(((v >> rs) & 0xff, (v >> gs) & 0xff, (v >> bs) & 0xff))
    return width, height, bytes(out)


def write_png(path, w, h, rgb):
    """RGB bytes as an 8-bit PNG (zlib, filter 0 on every row)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)
    raw = b"".join(b"\0" + rgb[y * w * 3:(y + 1) * w * 3] for y in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


class LineReader:
    """A child's stdout read line by line on a thread, so that a test can wait for a line."""

    def __init__(self, stream):
        import queue
        import threading
        self.lines = []
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._thread.start()

    def _run(self, stream):
        for raw in iter(stream.readline, b""):
            self._queue.put(raw.decode(errors="replace").rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern, timeout=10.0):
        """The next line that matches (earlier ones are kept in .lines); None at EOF or timeout."""
        import queue
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if line is None:
                return None
            self.lines.append(line)
            match = regex.search(line)
            if match:
                return match

    def rest(self, timeout=10.0):
        """Every line until EOF."""
        while self.wait_for(r"(?!)", timeout) is not None:
            pass
        self._thread.join(timeout)
        return self.lines


def with_blob_backend_args(*args):
    """Marks a test whose backend gets these options too when it runs on the blob guest."""
    def mark(test):
        test.blob_backend_args = args
        return test
    return mark


def with_backend_args(*args):
    """Marks a test whose backend gets these options too."""
    def mark(test):
        test.backend_args = args
        return test
    return mark


# Four outputs of different sizes (issue 11): the backend's --outputs, QEMU's max_outputs=4.
FOUR_OUTPUTS = [(1280, 800), (1024, 768), (800, 600), (640, 480)]
FOUR_OUTPUT_ARGS = tuple(a for w, h in FOUR_OUTPUTS for a in ("--output", f"{w}x{h}"))
FOUR_HEADS_DEVICE = "vhost-user-gpu-pci,max_outputs=4,id=gpu"
OUTPUTS_MARKER = r"VGPU-OUTPUTS step=(\w+) n=(\d+) (.*)"


def parse_outputs_marker(match):
    """drmtest outputs' marker: (step, {output: (w, h, x, y, fb_w, fb_h, variant)})."""
    shown = {}
    for item in match.group(3).split():
        m = re.fullmatch(r"(\d+)=(\d+)x(\d+)@(\d+),(\d+)/(\d+)x(\d+):(\d+)", item)
        if not m:
            raise ValueError(f"bad VGPU-OUTPUTS item {item!r}")
        shown[int(m.group(1))] = tuple(int(g) for g in m.groups()[1:])
    if len(shown) != int(match.group(2)):
        raise ValueError(f"VGPU-OUTPUTS says n={match.group(2)} and lists {len(shown)}")
    return match.group(1), shown


def pattern_crop(fb_w, fb_h, variant, x, y, w, h):
    """The RGB bytes of the w x h rectangle at x, y of the fb_w x fb_h pattern frame."""
    rows = list(pattern.expected_rows(fb_w, fb_h, variant))[y:y + h]
    return b"".join(row[x * 3:(x + w) * 3] for row in rows)


def write_rgb_ppm(path, w, h, rgb):
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(rgb)


class E2E(unittest.TestCase):
    # E2EBlob runs the same tests with the guest's own virtio_gpu (force_blob=1) and --blob.
    blob = False

    def setUp(self):
        if not os.path.exists(os.path.join(CACHE, "guest.env")):
            self.fail(f"the test guest is not built in {CACHE}: run guest/build.sh (./run test does)")
        if not os.access(BACKEND, os.X_OK):
            self.fail(f"no backend binary at {BACKEND}")
        test = getattr(self, self._testMethodName)
        control = getattr(test, "control_socket", False)
        export = getattr(test, "export_socket", False)
        extra = [*(["--blob"] if self.blob else []), *getattr(test, "backend_args", ()),
                 *(getattr(test, "blob_backend_args", ()) if self.blob else ())]
        self.backend = Backend(*extra, control=control, export=export)

    def guest_console(self, steps, **kwargs):
        return GuestConsole(steps, self.backend.device_args(), blob=self.blob, **kwargs)

    def check_driver_mode(self, output):
        """The guest's driver used blobs exactly when this class asked for them (its debugfs)."""
        want = "VGPU-GUEST-BLOB yes module=patched" if self.blob else "VGPU-GUEST-BLOB no module=stock"
        self.assertIn(want, output, "the guest driver is not in the mode this test is for")

    def tearDown(self):
        alive = self.backend.alive()
        code = self.backend.stop()
        self.assertTrue(alive, "the backend died during the test:\n" + self.backend.log()[-4000:])
        self.assertEqual(code, 0, "the backend did not exit 0 on SIGTERM")

    def boot(self, steps, device="vhost-user-gpu-pci", expect_frames=None, extra=()):
        if self.blob:
            extra = (*extra, "--blob")
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
        self.check_driver_mode(output)
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
                   "--qmp", qmp_path, "--cache", CACHE, *(["--blob"] if self.blob else []),
                   "--", *self.backend.device_args()]
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
        self.check_driver_mode("".join(lines))
        self.assertEqual(proc.returncode, 0)

    def test_qemu_killed_mid_run_then_next_qemu_is_served(self):
        command = [sys.executable, os.path.join(GUEST, "guest_test.py"), "--test", "animate:60", "--no-verify",
                   "--cache", CACHE, "--timeout", "120", *(["--blob"] if self.blob else []),
                   "--", *self.backend.device_args()]
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


    # ---- the control socket: CRC capture, screendump, stats --------------------------------------

    def context(self, guest, *extra):
        """Failure context: the console's tail, the backend's log (and where it is kept), extras."""
        parts = [f"--- guest (files in {guest.workdir}) ---\n{guest.output()[-4000:]}",
                 f"--- backend ({self.backend.log_path}) ---\n{self.backend.log()[-4000:]}", *extra]
        return "\n" + "\n".join(parts)

    def ctl_available(self):
        """vgpu-ctl is part of the build: a missing binary fails the test, never skips a check."""
        if not os.access(CTL, os.X_OK):
            self.fail(f"no vgpu-ctl at {CTL}: build it (./run test does)")
        return True

    def wait_until_shown(self, control, guest, width, height, variant, timeout=5.0):
        """Waits until output 0 shows pattern `variant` at width x height (our screendump) and its
        frame counter has stopped moving; returns the counter. Until then the modeset's flush may
        still be on its way (the 6.1 driver does not wait for the host)."""
        shot = os.path.join(guest.workdir, "shown.ppm")
        deadline = time.monotonic() + timeout
        state = "never queried"
        while True:
            output = control.execute("query-outputs")[0]
            state = f"query-outputs: {output}"
            if output["enabled"] and (output["width"], output["height"]) == (width, height):
                control.execute("screendump", {"output": 0, "filename": shot})
                ok, message = pattern.compare(shot, variant, (width, height))
                state += f"; our screendump: {message}"
                if ok:
                    time.sleep(0.3)
                    again = control.execute("query-outputs")[0]["frames"]
                    if again == output["frames"]:
                        return again
            if time.monotonic() > deadline:
                self.fail(f"output 0 does not show variant {variant} at {width}x{height}: {state}" + self.context(guest))
            time.sleep(0.1)

    def wait_for_frames(self, control, at_least, timeout=5.0):
        """Polls query-outputs until output 0's frame counter reaches at_least; returns the last value."""
        deadline = time.monotonic() + timeout
        while True:
            frames = control.execute("query-outputs")[0]["frames"]
            if frames >= at_least or time.monotonic() > deadline:
                return frames
            time.sleep(0.05)

    def expected_crcs(self, workdir, width, height, variants, have_ctl):
        """The CRC of each pattern variant at width x height, computed on the host: the image from
        guest/pattern.py, its CRC from `vgpu-ctl crc-file` when it is there, else in Python; with
        vgpu-ctl, the Python value is compared with it on the first image."""
        expected, python_checked = {}, False
        for variant in variants:
            if variant in expected:
                continue
            path = os.path.join(workdir, f"expected-{width}x{height}-{variant}.ppm")
            pattern.write_ppm(path, width, height, variant)
            python_value = None
            if not have_ctl or not python_checked:
                _, _, rgb = pattern.read_ppm(path)
                python_value = image_crc(rgb, width)
            if have_ctl:
                expected[variant] = ctl_crc_file(path)
                if python_value is not None:
                    self.assertEqual(expected[variant], python_value,
                                     f"vgpu-ctl crc-file {path} gives {expected[variant]:#010x}, "
                                     f"the host's CRC-32C {python_value:#010x}")
                    python_checked = True
            else:
                expected[variant] = python_value
        return expected

    @with_control_socket
    def test_crc_log_matches_the_frames_the_guest_drew(self):
        """drmtest frames: N page flips, each one visible change. CRC capture gets exactly N
        entries with consecutive frame counters, and each CRC equals the CRC of the expected
        image, computed on the host from guest/pattern.py by vgpu-ctl crc-file and in Python."""
        count = 8
        self.assertEqual(crc32c(b"123456789"), 0xE3069283, "the host's CRC-32C is wrong")
        small = bytes(range(51)) * 3 + bytes(range(100, 151)) * 2 + bytes(range(51))  # 17x6, repeated rows
        self.assertEqual(image_crc(small, 17), crc32c(xrgb_bytes(small)), "the row-by-row image CRC is wrong")
        have_ctl = self.ctl_available()
        control = self.backend.control()
        control.execute("subscribe", {"events": ["CRC"]})
        drawn = [(i + 1) % 8 for i in range(count)]
        guest = self.guest_console(f"frames:{count}")
        # The expected CRCs take a few seconds: compute them while the guest boots, for the mode it
        # is likely to pick (QEMU's default EDID prefers 1280x800); again later if it picks another.
        pool = concurrent.futures.ThreadPoolExecutor(1)
        guessed = (1280, 800)
        early = pool.submit(self.expected_crcs, guest.workdir, *guessed, drawn, have_ctl)
        try:
            ready = guest.wait_for(r"VGPU-FRAMES-READY (\d+)x(\d+) n=(\d+)")
            self.assertIsNotNone(ready, "no VGPU-FRAMES-READY" + self.context(guest))
            width, height, n = (int(g) for g in ready.groups())
            self.assertEqual(n, count)
            first = self.wait_until_shown(control, guest, width, height, 0)
            self.assertEqual(control.execute("crc-start", {"output": 0}), {})
            self.assertTrue(control.execute("query-outputs")[0]["crc-capture"])
            guest.release()
            expected = early.result()
            if (width, height) != guessed:
                expected = self.expected_crcs(guest.workdir, width, height, drawn, have_ctl)
            done = guest.wait_for(r"VGPU-FRAMES-DONE n=(\d+) variants=([\d,]+)")
            self.assertIsNotNone(done, "no VGPU-FRAMES-DONE" + self.context(guest))
            variants = [int(v) for v in done.group(2).split(",")]
            self.assertEqual(variants, drawn)
            # The last flips' flushes may still be queued: the guest's flip events do not wait for them.
            frames = self.wait_for_frames(control, first + count)
            time.sleep(0.2)  # anything beyond N would show up now
            stopped = control.execute("crc-stop", {"output": 0})
            outputs = control.execute("query-outputs")
            guest.release()
            rc = guest.finish()
        finally:
            pool.shutdown()
            guest.close()
            control.close()

        entries = stopped["entries"]
        got = [(e["frame"], e["crc"]) for e in entries]
        want = [(first + 1 + i, expected[v]) for i, v in enumerate(variants)]
        evidence = (f"--- CRC entries (frame, crc) ---\n{[(f, f'{c:#010x}') for f, c in got]}\n"
                    f"--- expected (counter {first} before the capture, {frames} after) ---\n"
                    f"{[(f, f'{c:#010x}') for f, c in want]}\nvariants {variants}\nlines:\n{stopped['lines']}")
        self.assertEqual(rc, 0, "QEMU did not exit 0" + self.context(guest, evidence))
        self.assertIn("VGPU-TEST-END frames rc=0", guest.output())
        self.check_driver_mode(guest.output())
        self.assertEqual(stopped["overflow"], 0, evidence)
        self.assertEqual(len(entries), count,
                         f"{len(entries)} CRC entries for {count} flips" + self.context(guest, evidence))
        for previous, entry in zip(entries, entries[1:]):
            self.assertEqual(entry["frame"], previous["frame"] + 1, "frame counters are not contiguous\n" + evidence)
        self.assertEqual(got, want, "the CRCs are not those of the frames the guest drew" + self.context(guest, evidence))
        # The DRM text form, in the entries and in "lines"; the CRC events carry the same entries.
        for e in entries:
            self.assertEqual(e["line"], f"0x{e['frame']:08x} 0x{e['crc']:08x}")
        self.assertEqual(stopped["lines"], "".join(e["line"] + "\n" for e in entries))
        events = [(m["data"]["frame"], m["data"]["crc"]) for m in control.events
                  if m["event"] == "CRC" and m["data"]["output"] == 0]
        self.assertEqual(events, got, "the CRC events differ from the entries")
        self.assertFalse(outputs[0]["crc-capture"], "capture still on after crc-stop")
        shutil.rmtree(guest.workdir, ignore_errors=True)  # kept when the test fails

    @with_control_socket
    def test_our_screendump_equals_qemus(self):
        """Our screendump (PPM, PNG, and PPM returned inline as base64) of the guest's pattern frame
        is pixel for pixel QEMU's QMP screendump of the same frame."""
        have_ctl = self.ctl_available()
        control = self.backend.control()
        guest = self.guest_console("pattern")
        qmp = None
        try:
            ready = guest.wait_for(r"VGPU-READY pattern (\d+)x(\d+) variant=(\d+)")
            self.assertIsNotNone(ready, "no VGPU-READY" + self.context(guest))
            width, height, variant = (int(g) for g in ready.groups())
            qmp = Qmp(guest.qmp_path)
            qemu_ppm = os.path.join(guest.workdir, "qemu.ppm")
            ours_ppm = os.path.join(guest.workdir, "ours.ppm")
            ours_png = os.path.join(guest.workdir, "ours.png")
            inline_ppm = os.path.join(guest.workdir, "inline.ppm")
            deadline = time.monotonic() + 5
            while True:
                qmp.screendump(qemu_ppm)
                ppm_reply = control.execute("screendump", {"output": 0, "filename": ours_ppm})
                shown, message = pattern.compare(qemu_ppm, variant, (width, height))
                if shown and pattern.read_ppm(ours_ppm) == pattern.read_ppm(qemu_ppm):
                    break
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            png_reply = control.execute("screendump", {"output": 0, "filename": ours_png})
            inline_reply = control.execute("screendump", {"output": 0, "format": "ppm"})
            guest.release()
            rc = guest.finish()
        finally:
            if qmp:
                qmp.close()
            guest.close()
            control.close()
        self.assertTrue(shown, f"QEMU's screendump does not show the pattern: {message}" + self.context(guest))
        self.assertEqual(ppm_reply, {"filename": ours_ppm, "width": width, "height": height, "format": "ppm"})
        self.assertEqual(png_reply, {"filename": ours_png, "width": width, "height": height, "format": "png"})
        self.assertEqual((inline_reply["width"], inline_reply["height"], inline_reply["format"]), (width, height, "ppm"))
        with open(inline_ppm, "wb") as f:
            f.write(base64.b64decode(inline_reply["data"]))

        qw, qh, qemu_rgb = pattern.read_ppm(qemu_ppm)
        self.assertEqual((qw, qh), (width, height))
        for name, (w, h, rgb) in (("PPM", pattern.read_ppm(ours_ppm)), ("PNG", read_png(ours_png)),
                                   ("inline PPM", pattern.read_ppm(inline_ppm))):
            self.assertEqual((w, h), (qw, qh), f"our {name} screendump is {w}x{h}, QEMU's {qw}x{qh}")
            self.assertTrue(rgb == qemu_rgb, f"our {name} screendump differs from QEMU's: "
                            + first_difference(width, rgb, qemu_rgb))
        if have_ctl:
            value = image_crc(qemu_rgb, width)
            self.assertEqual(ctl_crc_file(qemu_ppm), value, "vgpu-ctl crc-file of QEMU's PPM")
            self.assertEqual(ctl_crc_file(ours_png), value, "vgpu-ctl crc-file of our PNG")
        self.assertEqual(rc, 0, "QEMU did not exit 0" + self.context(guest))
        self.assertIn("VGPU-TEST-END pattern rc=0", guest.output())
        self.check_driver_mode(guest.output())
        shutil.rmtree(guest.workdir, ignore_errors=True)  # kept when the test fails

    # ---- the export socket: vgpu-ctl watch and vgpu-view (docs/export.md) ----------------------

    @with_control_socket
    @with_export_socket
    def test_vgpu_ctl_watch_accounts_for_every_flip(self):
        """vgpu-ctl watch on the export socket while the guest page-flips: the first record is
        the lease's whole-output flip of the current frame, generations increase, and the records'
        covers add up to every flip the output counted."""
        count = 16
        self.ctl_available()
        control = self.backend.control()
        guest = self.guest_console(f"frames:{count}")
        watch = reader = None
        try:
            ready = guest.wait_for(r"VGPU-FRAMES-READY (\d+)x(\d+) n=(\d+)")
            self.assertIsNotNone(ready, "no VGPU-FRAMES-READY" + self.context(guest))
            width, height, _ = (int(g) for g in ready.groups())
            first = self.wait_until_shown(control, guest, width, height, 0)
            watch = subprocess.Popen([CTL, "watch", "0", "--export", self.backend.export_path],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            reader = LineReader(watch.stdout)
            self.assertIsNotNone(reader.wait_for(r"^flip "), "vgpu-ctl watch printed no flip" + self.context(guest))
            guest.release()
            done = guest.wait_for(r"VGPU-FRAMES-DONE n=(\d+)")
            self.assertIsNotNone(done, "no VGPU-FRAMES-DONE" + self.context(guest))
            frames = self.wait_for_frames(control, first + count)
            time.sleep(0.3)
            leases = control.execute("lease-list")
            watch.send_signal(signal.SIGINT)
            lines = reader.rest()
            watch_rc = watch.wait(10)
            watch_err = watch.stderr.read().decode(errors="replace")
            frames = control.execute("query-outputs")[0]["frames"]
            guest.release()
            rc = guest.finish()
        finally:
            if watch:
                if watch.poll() is None:
                    watch.kill()
                    watch.wait()
                watch.stdout.close()
                watch.stderr.close()
            guest.close()
            control.close()
        evidence = "\n--- vgpu-ctl watch ---\n" + "\n".join(lines) + "\n" + watch_err
        self.assertEqual(watch_rc, 0, "vgpu-ctl watch did not exit 0 on SIGINT" + evidence)
        self.assertEqual(len(leases), 1)
        self.assertEqual(leases[0]["consumer"], "vgpu-ctl")
        self.assertEqual(lines[0], f"mode {width}x{height}", evidence)
        flips = [tuple(int(v) for v in m.groups()) for m in
                 (re.match(r"flip generation=(\d+) covers=(\d+) buffer=(\d+) damage=", l) for l in lines) if m]
        self.assertEqual(flips[0][0], first, "the lease's first flip is not the frame shown" + evidence)
        generations = [g for g, _, _ in flips]
        self.assertEqual(generations, sorted(set(generations)), "generations do not increase" + evidence)
        self.assertEqual(sum(c for _, c, _ in flips[1:]), generations[-1] - first, "covers do not add up" + evidence)
        self.assertEqual(generations[-1], frames, "the last record is not the output's last frame" + evidence)
        self.assertGreaterEqual(frames - first, count, evidence)
        self.assertEqual(rc, 0, "QEMU did not exit 0" + self.context(guest))
        shutil.rmtree(guest.workdir, ignore_errors=True)

    @with_control_socket
    @with_export_socket
    @with_blob_backend_args("--export-guest-memory")
    def test_vgpu_view_under_xvfb_shows_the_guest_pattern(self):
        """vgpu-view in an X server (Xvfb), at scale 1: a screenshot of its window (xwd) is the
        guest's pattern pixel for pixel, with no pixels over the socket (the buffers are mapped)
        and nothing copied by the backend: a 2D guest's resource is shared as it is, and on the
        blob guest vgpu-view leases the guest-memory plane (--export-guest-memory)."""
        if not os.access(VIEW, os.X_OK):
            self.fail(f"no vgpu-view at {VIEW}: build it (./run test does)")
        if not shutil.which("xwd"):
            self.fail("no xwd: install x11-apps (./run test does)")
        control = self.backend.control()
        guest = self.guest_console("pattern")
        xvfb = Xvfb()
        view = reader = None
        shot = None
        try:
            ready = guest.wait_for(r"VGPU-READY pattern (\d+)x(\d+) variant=(\d+)")
            self.assertIsNotNone(ready, "no VGPU-READY" + self.context(guest))
            width, height, variant = (int(g) for g in ready.groups())
            self.wait_until_shown(control, guest, width, height, variant)
            env = dict(os.environ, DISPLAY=xvfb.display, SDL_VIDEODRIVER="x11")
            plane = ["--plane", "guest-memory"] if self.blob else []
            view = subprocess.Popen([VIEW, "--export", self.backend.export_path, "--scale", "1",
                                     "--renderer", "software", "--print-frames", *plane],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            reader = LineReader(view.stdout)
            window = reader.wait_for(r"^window (0x[0-9a-f]+)")
            self.assertIsNotNone(window, "vgpu-view opened no X11 window: " + "\n".join(reader.lines))
            self.assertIsNotNone(reader.wait_for(r"^shown generation=(\d+)"), "vgpu-view showed no frame")
            expected = pattern_crop(width, height, variant, 0, 0, width, height)
            xwd_path = os.path.join(guest.workdir, "view.xwd")
            deadline = time.monotonic() + 10
            while True:
                subprocess.run(["xwd", "-display", xvfb.display, "-id", window.group(1), "-silent", "-out", xwd_path],
                               check=True, timeout=30)
                shot = read_xwd(xwd_path)
                if shot[:2] == (width, height) and shot[2] == expected or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            stats = control.execute("query-stats")["export"]
            view.terminate()
            view.wait(10)
            guest.release()
            rc = guest.finish()
        finally:
            if view:
                if view.poll() is None:
                    view.kill()
                    view.wait()
                view.stdout.close()
                view.stderr.close()
            xvfb.close()
            guest.close()
            control.close()
        sw, sh, rgb = shot
        png = os.path.join(guest.workdir, "vgpu-view.png")
        write_png(png, sw, sh, rgb)
        print(f"vgpu-view screenshot: {png}", file=sys.stderr)
        self.assertEqual((sw, sh), (width, height), f"the window is {sw}x{sh} ({png})")
        self.assertTrue(rgb == expected, f"vgpu-view's window ({png}) is not the pattern: "
                        + first_difference(width, rgb, expected))
        self.assertGreaterEqual(stats["buffers-sent"], 1)
        self.assertEqual(stats["bytes-copied"], 0, stats)
        self.assertEqual(rc, 0, "QEMU did not exit 0" + self.context(guest))
        shutil.rmtree(guest.workdir, ignore_errors=True)

    @with_control_socket
    def test_stats_and_outputs_after_page_flips(self):
        """After drmtest flip: query-stats counts the flushes and their latencies, query-outputs
        shows output 0 at the guest's mode with the frames and flips it saw."""
        flips = 30
        control = self.backend.control()
        guest = self.guest_console(f"flip:{flips}")
        try:
            ready = guest.wait_for(r"VGPU-READY flip (\d+)x(\d+) variant=(\d+) flips=(\d+)")
            self.assertIsNotNone(ready, "no VGPU-READY" + self.context(guest))
            width, height = int(ready.group(1)), int(ready.group(2))
            # The modeset and every flip reach the output, the last ones maybe a moment later.
            self.wait_for_frames(control, flips + 1)
            time.sleep(0.2)
            stats = control.execute("query-stats")
            outputs = control.execute("query-outputs")
            guest.release()
            rc = guest.finish()
        finally:
            guest.close()
            control.close()
        evidence = f"query-stats: {json.dumps(stats)}\nquery-outputs: {json.dumps(outputs)}"
        self.assertEqual(rc, 0, "QEMU did not exit 0" + self.context(guest, evidence))
        self.assertIn("VGPU-TEST-END flip rc=0", guest.output())
        self.check_driver_mode(guest.output())

        self.assertGreaterEqual(stats["flushes"], flips + 1, evidence)
        self.assertGreaterEqual(stats["flips"], flips, evidence)
        blob = stats["blob"]
        if self.blob:
            # Zero copy: the guest's transfers are answered without copying, the flushes read
            # its pages in place, and the views were mapped, not gathered.
            self.assertEqual(stats["transfers"], 0, evidence)
            self.assertEqual(stats["bytes-copied"], 0, evidence)
            self.assertGreaterEqual(blob["flushes"], flips + 1, evidence)
            self.assertGreaterEqual(blob["created"], 2, evidence)
            self.assertEqual(blob["views"]["gathered"], 0, evidence)
            self.assertGreater(blob["views"]["span"] + blob["views"]["mapped"], 0, evidence)
            self.assertGreater(stats["display"]["qemu"]["update-bytes"], 0, evidence)
        else:
            self.assertGreaterEqual(stats["transfers"], flips + 1, evidence)
            self.assertGreater(stats["bytes-copied"], 0, evidence)
            self.assertEqual(blob["created"], 0, evidence)
        latency = stats["flip-latency-us"]
        self.assertGreater(latency["count"], 0, evidence)
        self.assertLessEqual(latency["count"], stats["flushes"], evidence)
        self.assertEqual(sum(b["count"] for b in latency["buckets"]), latency["count"], evidence)
        self.assertEqual(latency["buckets"][-1]["le"], "inf", evidence)
        bounds = [b["le"] for b in latency["buckets"][:-1]]
        self.assertEqual(bounds, sorted(bounds), evidence)
        self.assertGreaterEqual(latency["sum"], 0, evidence)
        self.assertEqual(stats["crc-entries"], 0, evidence)

        self.assertEqual(len(outputs), 1, evidence)
        out = outputs[0]
        self.assertEqual(out["output"], 0, evidence)
        self.assertTrue(out["enabled"], evidence)
        self.assertEqual((out["width"], out["height"]), (width, height), evidence)
        self.assertGreaterEqual(out["frames"], flips + 1, evidence)
        self.assertGreaterEqual(out["flips"], flips, evidence)
        self.assertIsInstance(out["resource"], int, evidence)
        self.assertEqual(out["format"], "B8G8R8X8", evidence)
        self.assertFalse(out["crc-capture"], evidence)
        shutil.rmtree(guest.workdir, ignore_errors=True)

    # ---- several outputs (issue 11) ----------------------------------------------------------------

    @staticmethod
    def connectors(guest):
        """drmtest outputs' VGPU-CONNECTOR lines so far, in order (one run lists each connector
        once): [(connected, preferred (w, h) or None)]."""
        found = re.findall(r"VGPU-CONNECTOR index=\d+ id=\d+ connected=(\d) modes=\d+ preferred=(\d+x\d+|none)",
                           guest.output())
        return [(c == "1", None if p == "none" else tuple(int(v) for v in p.split("x"))) for c, p in found]

    def next_outputs(self, guest, step):
        """Waits for drmtest outputs' next marker, which must be `step`; returns what it shows."""
        match = guest.wait_for(OUTPUTS_MARKER)
        self.assertIsNotNone(match, f"no VGPU-OUTPUTS step={step}" + self.context(guest))
        got, shown = parse_outputs_marker(match)
        self.assertEqual(got, step, self.context(guest))
        return shown

    def check_heads(self, control, qmp, guest, shown, tag):
        """Every output in `shown` (parse_outputs_marker) shows its picture, pixel for pixel, both
        in QMP's screendump of that head and in ours; retried for 5 s (the driver does not wait
        for the host's flush)."""
        for output, (w, h, x, y, fb_w, fb_h, variant) in sorted(shown.items()):
            want = pattern_crop(fb_w, fb_h, variant, x, y, w, h)
            qemu_ppm = os.path.join(guest.workdir, f"{tag}-qemu-head{output}.ppm")
            ours_ppm = os.path.join(guest.workdir, f"{tag}-ours-{output}.ppm")
            deadline = time.monotonic() + 5
            while True:
                qmp.screendump(qemu_ppm, device="gpu", head=output)
                control.execute("screendump", {"output": output, "filename": ours_ppm})
                qemu, ours = pattern.read_ppm(qemu_ppm), pattern.read_ppm(ours_ppm)
                if qemu == ours == (w, h, want):
                    break
                if time.monotonic() > deadline:
                    problems = []
                    for name, (gw, gh, rgb) in (("QEMU's head", qemu), ("our screendump", ours)):
                        if (gw, gh) != (w, h):
                            problems.append(f"{name} is {gw}x{gh}, not {w}x{h}")
                        elif rgb != want:
                            problems.append(f"{name}: " + first_difference(w, rgb, want))
                    self.fail(f"{tag}: output {output} does not show {w}x{h} at {x},{y} of the {fb_w}x{fb_h} "
                              f"variant {variant} frame: " + "; ".join(problems) + self.context(guest))
                time.sleep(0.2)

    def expected_crc(self, guest, shown, output):
        w, h, x, y, fb_w, fb_h, variant = shown[output]
        path = os.path.join(guest.workdir, f"expected-{output}-{fb_w}x{fb_h}-{variant}-{x},{y}.ppm")
        write_rgb_ppm(path, w, h, pattern_crop(fb_w, fb_h, variant, x, y, w, h))
        return ctl_crc_file(path)

    def read_crcs(self, control, output, want, stop=False):
        """CRC entries of `output` since the last read: waits (5 s) for the first, then a moment
        for any still on its way; each must be `want` (every flush on the output showed that
        frame). With stop, capture ends with the last read."""
        deadline = time.monotonic() + 5
        entries = []
        while not entries and time.monotonic() < deadline:
            entries += control.execute("crc-read", {"output": output})["entries"]
            if not entries:
                time.sleep(0.1)
        time.sleep(0.3)
        entries += control.execute("crc-stop" if stop else "crc-read", {"output": output})["entries"]
        crcs = [e["crc"] for e in entries]
        self.assertTrue(crcs, f"no CRC entry on output {output}")
        self.assertEqual(crcs, [want] * len(crcs), f"output {output}: CRCs {[hex(c) for c in crcs]}, "
                         f"expected {want:#010x} for every flush")
        return entries

    @with_control_socket
    @with_backend_args("--outputs-from", "backend", *FOUR_OUTPUT_ARGS)
    def test_four_outputs_from_the_backend_all_lit_through_qemu(self):
        """--outputs-from backend with four --outputs and QEMU's max_outputs=4: the guest sees four
        connected connectors, each with its output's size as preferred mode; drmtest outputs lights
        them with one framebuffer each, then spreads one framebuffer over outputs 0 and 1 (different
        source rectangles), then goes back. At each step every head is checked pixel for pixel in
        QMP's screendump (device gpu, head N) and in ours; CRC capture runs on outputs 0 and 1 at
        once and gets the CRC of exactly what each showed."""
        self.ctl_available()
        control = self.backend.control()
        guest = GuestConsole("outputs:4", self.backend.device_args(FOUR_HEADS_DEVICE), blob=self.blob)
        qmp = None
        try:
            shown = self.next_outputs(guest, "separate")
            self.assertEqual(self.connectors(guest), [(True, size) for size in FOUR_OUTPUTS],
                             "every connector connected with its output's size preferred" + self.context(guest))
            self.assertEqual([shown[i][:2] for i in range(4)], FOUR_OUTPUTS)
            qmp = Qmp(guest.qmp_path)
            self.check_heads(control, qmp, guest, shown, "separate")
            for output in (0, 1):
                self.assertEqual(control.execute("crc-start", {"output": output}), {})
            guest.release()

            spread = self.next_outputs(guest, "spread")
            # One framebuffer, two different source rectangles.
            self.assertEqual(spread[0][4:], spread[1][4:])
            self.assertNotEqual(spread[0][2:4], spread[1][2:4])
            self.check_heads(control, qmp, guest, spread, "spread")
            spread_crcs = [self.read_crcs(control, i, self.expected_crc(guest, spread, i)) for i in (0, 1)]
            outputs = control.execute("query-outputs")
            guest.release()

            back = self.next_outputs(guest, "back")
            self.assertEqual(back, shown)
            self.check_heads(control, qmp, guest, back, "back")
            back_crcs = [self.read_crcs(control, i, self.expected_crc(guest, back, i), stop=True) for i in (0, 1)]
            self.assertEqual([o["crc-capture"] for o in control.execute("query-outputs")], [False] * 4)
            stats = control.execute("query-stats")
            guest.release()
            rc = guest.finish()
        finally:
            if qmp:
                qmp.close()
            guest.close()
            control.close()
        self.assertEqual(rc, 0, "QEMU did not exit 0" + self.context(guest))
        self.assertIn("VGPU-TEST-END outputs rc=0", guest.output())
        self.check_driver_mode(guest.output())
        # Outputs 0 and 1 showed the same resource at different places; 2 and 3 were untouched.
        self.assertEqual(outputs[0]["resource"], outputs[1]["resource"], outputs)
        self.assertEqual([(o["x"], o["y"]) for o in outputs[:2]], [spread[0][2:4], spread[1][2:4]], outputs)
        self.assertEqual(len({o["resource"] for o in outputs}), 3, outputs)
        # Each output's frame counter is its own, one entry per visible change, nothing skipped.
        for output in (0, 1):
            frames = [e["frame"] for e in spread_crcs[output] + back_crcs[output]]
            self.assertEqual(frames, list(range(frames[0], frames[0] + len(frames))),
                             f"output {output}'s CRC frame counters: {frames}")
        self.assertEqual(stats["display"]["qemu"]["queries"], 0, "QEMU was asked for display info or EDID")
        self.assertGreaterEqual(stats["display"]["qemu"]["scanouts"], 4, stats)
        shutil.rmtree(guest.workdir, ignore_errors=True)

    @with_control_socket
    @with_backend_args(*FOUR_OUTPUT_ARGS)
    def test_four_heads_with_outputs_from_qemu_only_the_first_is_connected(self):
        """The default (--outputs-from qemu): the guest's display info comes from QEMU, whose
        headless UI enables only its first output (at its default 1280x800), whatever our
        --outputs say; drmtest outputs lights that one, and QMP's head 0 shows it."""
        control = self.backend.control()
        guest = GuestConsole("outputs", self.backend.device_args(FOUR_HEADS_DEVICE), blob=self.blob)
        qmp = None
        try:
            shown = self.next_outputs(guest, "separate")
            connectors = self.connectors(guest)
            qmp = Qmp(guest.qmp_path)
            self.check_heads(control, qmp, guest, shown, "qemu")
            stats = control.execute("query-stats")
            outputs = control.execute("query-outputs")
            markers = 1
            while True:
                guest.release()
                if guest.wait_for(OUTPUTS_MARKER) is None:
                    break
                markers += 1
            rc = guest.finish()
        finally:
            if qmp:
                qmp.close()
            guest.close()
            control.close()
        self.assertEqual(connectors, [(True, (1280, 800)), (False, None), (False, None), (False, None)],
                         self.context(guest))
        self.assertEqual(shown, {0: (1280, 800, 0, 0, 1280, 800, 0)})
        self.assertEqual(markers, 2, "one output: separate and back, no spread" + self.context(guest))
        self.assertEqual([(o["plugged"], o["monitor"]) for o in outputs], [(None, None)] * 4,
                         "QEMU's UI owns the outputs: not ours to say")
        self.assertGreater(stats["display"]["qemu"]["queries"], 0, stats)
        self.assertEqual(rc, 0, "QEMU did not exit 0" + self.context(guest))
        self.assertIn("VGPU-TEST-END outputs rc=0", guest.output())
        self.check_driver_mode(guest.output())

    @with_control_socket
    @with_backend_args("--outputs-from", "backend", *FOUR_OUTPUT_ARGS)
    def test_backend_hotplug_reaches_the_guest_only_at_its_next_display_query(self):
        """Evidence for docs/outputs.md: QEMU 10 drops a backend's CONFIG_CHANGE_MSG ("unhandled
        backend config change") and raises no display event, so a resize with vgpu-ctl while the
        guest runs does not reach its driver (a second drmtest run still lists the old mode); the
        guest learns it at its next GET_DISPLAY_INFO, here after a reboot."""
        self.ctl_available()
        control = self.backend.control()
        guest = GuestConsole("outputs:4,outputs:4,reboot,outputs:4", self.backend.device_args(FOUR_HEADS_DEVICE),
                             blob=self.blob)
        markers = 0
        try:
            self.next_outputs(guest, "separate")
            markers = 1
            ctl = subprocess.run([CTL, "--control", self.backend.control_path, "output-resize", "3", "800x600"],
                                 capture_output=True, text=True, timeout=30)
            self.assertEqual(ctl.returncode, 0, ctl.stderr)
            resized = control.execute("query-outputs")[3]
            self.assertEqual((resized["plugged"], resized["monitor"]), (True, {"width": 800, "height": 600}), resized)
            self.assertEqual((resized["width"], resized["height"]), (640, 480), "the guest still shows its old mode")
            while markers < 9:
                guest.release()
                if guest.wait_for(OUTPUTS_MARKER) is None:
                    break
                markers += 1
            guest.release()
            rc = guest.finish()
        finally:
            guest.close()
            control.close()
        output = guest.output()
        runs = self.connectors(guest)
        self.assertEqual(markers, 9, "three runs of three steps each" + self.context(guest))
        self.assertIn("vhost-user-gpu: unhandled backend config change", output, self.context(guest))
        self.assertEqual(runs[:8], [(True, size) for size in FOUR_OUTPUTS] * 2,
                         "before the reboot the guest's driver still has the old modes" + self.context(guest))
        self.assertIn("VGPU-GUEST-REBOOT", output)
        self.assertEqual(runs[8:], [(True, size) for size in FOUR_OUTPUTS[:3]] + [(True, (800, 600))],
                         "after the reboot the guest sees the resized output" + self.context(guest))
        self.assertEqual(rc, 0, "QEMU did not exit 0" + self.context(guest))
        self.check_driver_mode(output)

class E2EBlob(E2E):
    """The same tests with blob resources: the test guest loads its own virtio_gpu build with
    force_blob=1 (guest/patches), so dumb buffers are guest blobs read in place, and the backend
    runs with --blob (QEMU's vhost-user-gpu-pci never offers RESOURCE_BLOB)."""
    blob = True


if __name__ == "__main__":
    unittest.main(verbosity=2)
