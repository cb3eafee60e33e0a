#!/usr/bin/env python3
"""libvirt starts vgpu-display from its discovery file, end to end (docs/libvirt.md).

A real libvirtd 9.0 (Debian 12's libvirt-daemon, libvirt-clients, libvirt-daemon-driver-qemu) and
virtlogd, started by this test, define and start a domain whose video device is
<driver name='vhostuser'/>; libvirt finds our discovery file, starts `vgpu-display --fd=N` itself
(daemonized, stdio on /dev/null) before QEMU 10, and the test guest draws its pattern. Checked:
libvirt ran our binary with --fd=N and nothing else; our log and control socket exist although
nobody gave us a command line (the configuration file, with a [domain] section for this domain);
`virsh screenshot` is the pattern pixel for pixel; `vgpu-ctl list` names the domain and `vgpu-ctl
--domain NAME stats` works; destroy/start three times and a reboot inside the guest keep working with
no stray backend; a bad configuration fails the start with one line in our log; capabilities as
libvirt parses them.

Nothing of the host's /etc changes: the test runs in a private mount namespace (unshare) with an
overlay over /etc (the user libvirt-qemu that libvirtd 9.0 looks up before reading qemu.conf, its
qemu.conf, /etc/qemu/vhost-user/40-vgpu-display.json, our configuration), another over /var
(libvirt's state and logs) and a tmpfs on /run. The outer process lists a checksum of every entry of
/etc before and after, and fails on any difference. When the namespace's last process ends, the
mounts go with it, on failure too.

Environment: VGPU_BUILD_DIR (the CMake build to `cmake --install` from; default build/release),
VGPU_GUEST_CACHE (the built guest), VGPU_ARTIFACTS (where the /etc checksum lists are kept; default a
temporary directory). Usage: libvirt_test.py [unittest arguments]
"""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUEST = os.path.join(ROOT, "guest")
sys.dont_write_bytecode = True
sys.path.insert(0, GUEST)
import pattern  # noqa: E402

BUILD_DIR = os.environ.get("VGPU_BUILD_DIR", os.path.join(ROOT, "build", "release"))
CACHE = os.environ.get("VGPU_GUEST_CACHE", os.path.join(ROOT, "build", "guest"))
# Set in setUpClass from `cmake --install`: what libvirt runs is what our install put down.
BACKEND = CTL = None
DOMAIN = "vgpu-libvirt-test"
MODE = (1024, 768)  # from the configuration file's [domain] section: the guest sees what it says
CONFIG_PATH = "/etc/vgpu-display/vgpu-display.conf"
LOG_PATH = f"/var/log/vgpu-display/{DOMAIN}.log"
CONTROL_PATH = f"/run/vgpu-display/{DOMAIN}.control"
STATE_DIR = "/run/libvirt/qemu"
INNER = "VGPU_LIBVIRT_TEST_INNER"
LIBVIRT_PACKAGES = ("libvirt-daemon", "libvirt-clients", "libvirt-daemon-driver-qemu")


def etc_checksums():
    """One line per entry of /etc: its type, mode, owner and content (sha256) or link target."""
    lines = []
    for directory, dirs, files in os.walk("/etc"):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            info = os.lstat(path)
            kind = stat.S_IFMT(info.st_mode)
            head = f"{oct(stat.S_IMODE(info.st_mode))} {info.st_uid}:{info.st_gid}"
            if kind == stat.S_IFLNK:
                lines.append(f"link {head} {os.readlink(path)} {path}")
            elif kind == stat.S_IFDIR:
                lines.append(f"dir {head} - {path}")
            elif kind == stat.S_IFREG:
                digest = hashlib.sha256()
                try:
                    with open(path, "rb") as f:
                        for block in iter(lambda: f.read(1 << 16), b""):
                            digest.update(block)
                    lines.append(f"file {head} {digest.hexdigest()} {path}")
                except PermissionError:
                    lines.append(f"file {head} unreadable {path}")
            else:
                lines.append(f"other {head} - {path}")
    return lines


def outer():
    """Checksums /etc, runs the tests in a private mount namespace, checksums /etc again."""
    artifacts = os.environ.get("VGPU_ARTIFACTS") or tempfile.mkdtemp(prefix="vgpu-libvirt-artifacts-")
    os.makedirs(artifacts, exist_ok=True)
    before = etc_checksums()
    start = time.monotonic()
    env = dict(os.environ, **{INNER: "1"})
    rc = subprocess.call(["unshare", "--mount", "--propagation", "private", sys.executable,
                          os.path.abspath(__file__), *sys.argv[1:]], env=env)
    after = etc_checksums()
    for name, lines in (("etc-before.sha256", before), ("etc-after.sha256", after)):
        with open(os.path.join(artifacts, name), "w") as f:
            f.write("\n".join(lines) + "\n")
    digest = [hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16] for lines in (before, after)]
    print(f"libvirt e2e: {time.monotonic() - start:.1f} s; /etc: {len(before)} entries, list sha256 "
          f"{digest[0]} before, {digest[1]} after ({artifacts}/etc-before.sha256, etc-after.sha256)")
    if before != after:
        changed = sorted(set(before) ^ set(after))
        print("FAIL: /etc differs after the libvirt test:\n  " + "\n  ".join(changed[:40]), file=sys.stderr)
        return 1
    return rc


# ---- inside the namespace -------------------------------------------------------------------

def mount(*args):
    subprocess.run(["mount", *args], check=True)


def private_filesystem(scratch):
    """/etc and /var as overlays whose writes land in `scratch`, /run a fresh tmpfs."""
    for top in ("etc", "var"):
        upper, work = os.path.join(scratch, top, "upper"), os.path.join(scratch, top, "work")
        os.makedirs(upper)
        os.makedirs(work)
        mount("-t", "overlay", "overlay", "-o", f"lowerdir=/{top},upperdir={upper},workdir={work}", f"/{top}")
    mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run")


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def group_id(name):
    with open("/etc/group") as f:
        for line in f:
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
    return None


def configure_libvirt(config_text):
    """What libvirt-daemon-system would bring (the libvirt-qemu user, qemu.conf), for root in a
    container: no AppArmor or SELinux, no cgroups of ours, QEMU as root."""
    with open("/etc/group", "a") as f:
        for name, gid in (("kvm", 64054), ("libvirt", 64056), ("libvirt-qemu", 64055)):
            if group_id(name) is None:
                f.write(f"{name}:x:{gid}:\n")
    with open("/etc/passwd") as f:
        have_user = any(line.startswith("libvirt-qemu:") for line in f)
    if not have_user:
        with open("/etc/passwd", "a") as f:
            f.write(f"libvirt-qemu:x:64055:{group_id('kvm')}:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin\n")
    write("/etc/libvirt/qemu.conf", 'user = "root"\ngroup = "root"\nsecurity_driver = "none"\n'
          'cgroup_controllers = [ ]\n')
    write(CONFIG_PATH, config_text)


def install(prefix):
    """cmake --install into `prefix`; its discovery file goes to /etc/qemu/vhost-user (in the
    overlay), as an administrator would copy it. Returns the installed backend and vgpu-ctl."""
    subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix], check=True, stdout=subprocess.DEVNULL)
    discovery = os.path.join(prefix, "share", "qemu", "vhost-user", "40-vgpu-display.json")
    with open(discovery) as f:
        described = json.load(f)
    os.makedirs("/etc/qemu/vhost-user", exist_ok=True)
    shutil.copy(discovery, "/etc/qemu/vhost-user/")
    return described["binary"], os.path.join(prefix, "bin", "vgpu-ctl")


CONFIG = f"""# The test's configuration: every backend logs to a file of its own and opens a control socket.
log = file:/var/log/vgpu-display/{{domain}}.log
log-level = debug
control = /run/vgpu-display/{{domain}}.control

[domain {DOMAIN}]
outputs-from = backend
output = {MODE[0]}x{MODE[1]}
"""


def domain_xml(workdir, kernel, initrd, console):
    cmdline = ("console=ttyS0 quiet panic=-1 vgpu.test=pattern,reboot,pattern vgpu.hold=600 "
               "vgpu.end=hang")
    return f"""<domain type='qemu'>
  <name>{DOMAIN}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='unix'>
      <source mode='bind' path='{console}'/>
      <target port='0'/>
    </serial>
    <video>
      <model type='virtio' heads='1' primary='yes'/>
      <driver name='vhostuser'/>
    </video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def guest_files():
    env = {}
    with open(os.path.join(CACHE, "guest.env")) as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            env[key] = value
    return env["GUEST_KERNEL"], env["GUEST_INITRD"]


class Console:
    """The guest's serial port (a unix socket QEMU listens on): lines in, newlines out."""

    def __init__(self, path, timeout=30):
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
                time.sleep(0.05)
        self.sock.settimeout(1)
        self.buffer = b""
        self.lines = []

    def wait_for(self, expression, timeout=240):
        """The first match of `expression` in a line not yet returned by wait_for."""
        regex = re.compile(expression)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            while b"\n" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\n", 1)
                line = raw.decode(errors="replace").rstrip("\r")
                self.lines.append(line)
                match = regex.search(line)
                if match:
                    return match
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return None
            self.buffer += data
        return None

    def release(self):
        self.sock.sendall(b"\n")

    def tail(self, n=30):
        return "\n".join(self.lines[-n:])

    def close(self):
        self.sock.close()


class Libvirt:
    """virtlogd and libvirtd, ours, in the namespace; virsh against them."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.daemon_log = os.path.join(workdir, "libvirtd.log")
        env = dict(os.environ, LIBVIRT_LOG_OUTPUTS=f"3:file:{self.daemon_log}")
        self.virtlogd = subprocess.Popen(["virtlogd"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(os.path.join(workdir, "libvirtd.stderr"), "wb") as stderr:
            self.libvirtd = subprocess.Popen(["libvirtd"], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 60
        while subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode != 0:
            if self.libvirtd.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("libvirtd did not come up:\n" + self.stderr())
            time.sleep(0.2)

    def stderr(self):
        with open(os.path.join(self.workdir, "libvirtd.stderr"), errors="replace") as f:
            return f.read()[-3000:]

    def virsh(self, *args, check=True, timeout=120):
        result = subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"virsh {' '.join(args)}: {result.stderr.strip()}")
        return result

    def stop(self):
        for proc in (self.libvirtd, self.virtlogd):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def backends_started_by_libvirt():
    """pid -> argv of every process running our binary with --fd (what libvirt starts)."""
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{name}/exe")
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [a.decode() for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        if exe == BACKEND and any(a.startswith("--fd") for a in argv):
            found[int(name)] = argv
    return found


@unittest.skipUnless(os.environ.get(INNER), "runs inside the namespace the outer process makes")
class Libvirt90(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.mkdtemp(prefix="vgpu-libvirt-")
        private_filesystem(cls.scratch)
        cls.workdir = os.path.join(cls.scratch, "work")
        os.makedirs(cls.workdir)
        configure_libvirt(CONFIG)
        global BACKEND, CTL
        BACKEND, CTL = install(os.path.join(cls.scratch, "prefix"))
        cls.kernel, cls.initrd = guest_files()
        cls.console_path = os.path.join(cls.workdir, "console.sock")
        xml = os.path.join(cls.workdir, "domain.xml")
        write(xml, domain_xml(cls.workdir, cls.kernel, cls.initrd, cls.console_path))
        cls.libvirt = Libvirt(cls.workdir)
        cls.libvirt.virsh("define", xml)

    @classmethod
    def tearDownClass(cls):
        cls.libvirt.virsh("destroy", DOMAIN, check=False)
        cls.libvirt.stop()

    def context(self, console=None):
        parts = []
        if console:
            parts.append("guest console:\n" + console.tail())
        for path in (LOG_PATH, f"/var/log/libvirt/qemu/{DOMAIN}.log"):
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    parts.append(f"{path}:\n" + f.read()[-2500:])
        parts.append("libvirtd stderr:\n" + self.libvirt.stderr())
        return "\n" + "\n".join(parts)

    def start(self):
        """virsh start; returns (console, pid of the backend libvirt started, its argv)."""
        if os.path.exists(self.console_path):
            os.unlink(self.console_path)
        result = self.libvirt.virsh("start", DOMAIN, check=False)
        self.assertEqual(result.returncode, 0, "virsh start failed: " + result.stderr + self.context())
        console = Console(self.console_path)
        pid_files = [n for n in os.listdir(STATE_DIR) if n.endswith("-vhost-user-gpu.pid")]
        self.assertEqual(len(pid_files), 1, f"libvirt's pid files: {pid_files}")
        self.assertRegex(pid_files[0], rf"^\d+-{DOMAIN}-video0-vhost-user-gpu\.pid$")
        with open(os.path.join(STATE_DIR, pid_files[0])) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode() for a in f.read().split(b"\0") if a]
        return console, pid, argv

    def screenshot_shows_the_pattern(self, console, name):
        ready = console.wait_for(r"VGPU-READY pattern (\d+)x(\d+) variant=(\d+)")
        self.assertIsNotNone(ready, "no VGPU-READY from the guest" + self.context(console))
        width, height, variant = (int(g) for g in ready.groups())
        self.assertEqual((width, height), MODE, "the guest did not get the [domain] section's mode")
        path = os.path.join(self.workdir, f"{name}.png")  # libvirt 9.0 asks QEMU for PNG
        deadline = time.monotonic() + 10
        while True:
            self.libvirt.virsh("screenshot", DOMAIN, "--file", path)
            ok, message = pattern.compare(path, variant, MODE)
            if ok or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        self.assertTrue(ok, f"virsh screenshot ({name}): {message}" + self.context(console))
        console.release()

    def test_libvirt_starts_configures_and_restarts_our_backend(self):
        seen = set()
        for cycle in range(3):
            console, pid, argv = self.start()
            seen.add(pid)
            try:
                # libvirt ran our binary from our discovery file, with --fd=N and nothing else.
                self.assertEqual(os.readlink(f"/proc/{pid}/exe"), BACKEND)
                self.assertEqual(len(argv), 2, argv)
                self.assertRegex(argv[1], r"^--fd=\d+$")
                for fd in (0, 1, 2):
                    self.assertEqual(os.readlink(f"/proc/{pid}/fd/{fd}"), "/dev/null")
                # Its log and control socket, from the configuration file.
                self.assertTrue(os.path.exists(CONTROL_PATH), "no control socket" + self.context(console))
                with open(LOG_PATH, errors="replace") as f:
                    log = f.read()
                self.assertRegex(log, rf"vgpu-display\[{pid}\] info: vgpu-display \S+ started, pid {pid}, {re.escape(argv[1])}: "
                                 rf"libvirt domain '{DOMAIN}' \(video video0, pid file {STATE_DIR}/\d+-{DOMAIN}-video0-vhost-user-gpu\.pid\); "
                                 rf"configuration {CONFIG_PATH} \[domain {DOMAIN}\]; control {CONTROL_PATH}")
                self.screenshot_shows_the_pattern(console, f"start-{cycle}")
                self.check_vgpu_ctl(pid)
                if cycle == 0:
                    # A reboot from inside the guest: the same backend serves the next boot.
                    self.assertIsNotNone(console.wait_for(r"VGPU-GUEST-REBOOT"), "no reboot" + self.context(console))
                    self.assertIsNotNone(console.wait_for(r"VGPU-GUEST-UP .* boot=1"),
                                         "the guest did not come back" + self.context(console))
                    self.screenshot_shows_the_pattern(console, "after-reboot")
                    self.assertEqual(list(backends_started_by_libvirt()), [pid])
            finally:
                console.close()
            self.libvirt.virsh("destroy", DOMAIN)
            deadline = time.monotonic() + 10
            while backends_started_by_libvirt() and time.monotonic() < deadline:
                time.sleep(0.1)
            self.assertEqual(backends_started_by_libvirt(), {}, "a backend outlived its domain")
            self.assertFalse(os.path.exists(f"/run/vgpu-display/{pid}.json"), "its instance record stayed")
        self.assertEqual(len(seen), 3, "each start is a new backend")

    def check_vgpu_ctl(self, pid):
        listed = subprocess.run([CTL, "--json", "list"], capture_output=True, text=True, timeout=30)
        self.assertEqual(listed.returncode, 0, listed.stderr)
        backends = json.loads(listed.stdout)
        ours = [b for b in backends if b["pid"] == pid]
        self.assertEqual(len(ours), 1, listed.stdout)
        self.assertEqual((ours[0]["domain"], ours[0]["alias"], ours[0]["program"], ours[0]["control"],
                          ours[0]["vgpu-display"]), (DOMAIN, "video0", "vgpu-display", CONTROL_PATH, True))
        human = subprocess.run([CTL, "list"], capture_output=True, text=True, timeout=30)
        self.assertRegex(human.stdout, rf"(?m)^{pid}\s+{DOMAIN}\s+video0\s+vgpu-display\s+{re.escape(CONTROL_PATH)}$")
        stats = subprocess.run([CTL, "--domain", DOMAIN, "--json", "stats"], capture_output=True, text=True, timeout=30)
        self.assertEqual(stats.returncode, 0, stats.stderr)
        self.assertGreater(json.loads(stats.stdout)["flushes"], 0, stats.stdout)
        missing = subprocess.run([CTL, "--domain", "no-such-domain", "stats"], capture_output=True, text=True, timeout=30)
        self.assertEqual(missing.returncode, 3)
        self.assertIn("no backend runs for domain 'no-such-domain'", missing.stderr)

    def test_bad_configuration_fails_the_start_with_one_line_in_our_log(self):
        write(CONFIG_PATH, CONFIG.replace(f"output = {MODE[0]}x{MODE[1]}", "output = 9x9"))
        try:
            before = os.path.getsize(LOG_PATH) if os.path.exists(LOG_PATH) else 0
            result = self.libvirt.virsh("start", DOMAIN, check=False)
            self.assertNotEqual(result.returncode, 0, "the domain started with a bad configuration")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (not os.path.exists(LOG_PATH) or os.path.getsize(LOG_PATH) == before):
                time.sleep(0.1)
            with open(LOG_PATH, "rb") as f:
                f.seek(before)
                new = f.read().decode(errors="replace").splitlines()
            line = len(CONFIG.splitlines())  # the output line is the last one
            self.assertEqual(len(new), 1, new)
            self.assertRegex(new[0], rf"error: not started: {CONFIG_PATH}:{line}: --output 9x9: 9x9 is outside")
            self.assertEqual(backends_started_by_libvirt(), {})
        finally:
            write(CONFIG_PATH, CONFIG)
            self.libvirt.virsh("destroy", DOMAIN, check=False)

    def test_capabilities_as_libvirt_reads_them(self):
        # libvirt runs BINARY --print-capabilities with nothing else, then reads "features": strings
        # it knows (render-node, virgl), ignoring others. We have no 3D: no feature may be listed,
        # or libvirt would demand a render node (there is no /dev/dri here).
        result = subprocess.run([BACKEND, "--print-capabilities"], capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        caps = json.loads(result.stdout)
        self.assertEqual(caps["type"], "gpu")
        self.assertIsInstance(caps["features"], list)
        self.assertTrue(all(isinstance(f, str) for f in caps["features"]))
        self.assertEqual(caps["features"], [])
        self.assertEqual(caps["vgpu-display"]["export"]["plane-types"], ["region"])
        # What the configuration file says shows: its [domain] sections need a domain, the global
        # lines apply (no export socket configured, so no guest-memory plane either).
        self.assertEqual(caps["vgpu-display"]["outputs-from"], "qemu")
        # A configuration that exports guest memory says so in the capabilities libvirt reads.
        other = os.path.join(self.workdir, "export.conf")
        write(other, "export = /run/vgpu-display/{domain}.export\nexport-guest-memory = true\nblob = yes\n")
        result = subprocess.run([BACKEND, "--print-capabilities"], capture_output=True, text=True, timeout=30,
                                env=dict(os.environ, VGPU_DISPLAY_CONFIG=other))
        self.assertEqual(result.returncode, 0, result.stderr)
        caps = json.loads(result.stdout)
        self.assertEqual(caps["features"], [])
        self.assertEqual(caps["vgpu-display"]["export"]["plane-types"], ["region", "guest-memory"])
        self.assertTrue(caps["vgpu-display"]["blob"]["forced"])
        # A broken one fails, with the line, rather than printing capabilities it would not keep.
        write(other, "export-guest-memory = true\n")
        result = subprocess.run([BACKEND, "--print-capabilities"], capture_output=True, text=True, timeout=30,
                                env=dict(os.environ, VGPU_DISPLAY_CONFIG=other))
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr, f"vgpu-display: {other}:1: --export-guest-memory needs --export\n")


def main():
    if not os.environ.get(INNER):
        if os.geteuid() != 0:
            print("FAIL: the libvirt test needs root (libvirtd, mount namespaces)", file=sys.stderr)
            return 1
        missing = [p for p in LIBVIRT_PACKAGES if subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", p], capture_output=True, text=True).stdout[:4] != "9.0."]
        if missing:
            print(f"FAIL: libvirt 9.0 packages missing: {' '.join(missing)} (./run test installs them)",
                  file=sys.stderr)
            return 1
        return outer()
    program = unittest.main(exit=False, argv=[sys.argv[0], "-v", *sys.argv[1:]])
    result = program.result
    return 0 if result.wasSuccessful() and not result.skipped else 1


if __name__ == "__main__":
    sys.exit(main())
