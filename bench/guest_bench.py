#!/usr/bin/env python3
"""Guest benchmark: page flips/s and DIRTYFB/s of the test guest on virtio-gpu devices.

    bench/guest_bench.py [--repeats R] [--seconds S] [--timeout S] [--out-dir DIR] [--cache DIR]
                         [--backend PATH] [--backend-log-level LEVEL] [--keep-logs]

Boots the test guest (guest/boot.sh --no-build, QEMU 10, TCG, one vCPU) with the `bench:S` step,
which prints
    VGPU-BENCH flips_per_s=F dirtyfb_per_s=D mode=WxH flips=N dirtyfbs=M seconds=S
on each of three devices, all with the same QEMU and the same guest:
    ours          build/bin/vgpu-display --socket-path S   + vhost-user-gpu-pci
    ours_crc      the same with CRC capture on
    ours_blob     build/bin/vgpu-display --blob + vhost-user-gpu-pci, the guest's own virtio_gpu
                  with force_blob=1 (boot.sh --blob): dumb buffers are blobs read in place
    qemu_backend  /usr/lib/qemu/vhost-user-gpu --socket-path=S + vhost-user-gpu-pci
    builtin       QEMU's own -device virtio-gpu-pci
A backend process is started for each boot and stopped after it. The devices are booted R times
(default 5) interleaved, ours, qemu_backend, builtin, ours, ..., so that machine noise hits all of
them alike. Writes OUT_DIR/guest_flips.json (default bench/results) with the runs, the medians and
the ratios ours/builtin and ours/qemu_backend (of the medians, and the median of the per-round
ratios), then prints a table. bench/report.py plots it and puts it in the README.

Every boot must produce a VGPU-BENCH line, pass its bench step, reach VGPU-ALL-DONE and end with
QEMU's exit code 0, and our backend must still be running when its guest has powered off. If any
boot fails, the reasons are printed, the logs are kept (their directory is printed), nothing is
written and the exit code is 1. The guest must be built first (guest/build.sh build/guest).
Standard library only.
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BOOT_SH = os.path.join(ROOT, "guest", "boot.sh")
QEMU_BACKEND = "/usr/lib/qemu/vhost-user-gpu"

BENCH = re.compile(r"VGPU-BENCH flips_per_s=([0-9.]+) dirtyfb_per_s=([0-9.]+) mode=(\d+x\d+) "
                   r"flips=(\d+) dirtyfbs=(\d+) seconds=([0-9.]+)")
TEST_END = re.compile(r"VGPU-TEST-END bench rc=(\d+)")

DEVICES = [
    # key, label for the table and the chart, bar colour
    ("ours", "vgpu-display (ours)", "#4472c4"),
    ("ours_crc", "ours, CRC capture on", "#2f4f8f"),
    ("ours_blob", "ours, blob resources", "#9dc3e6"),
    ("qemu_backend", "QEMU vhost-user-gpu", "#ed7d31"),
    ("builtin", "QEMU virtio-gpu-pci", "#70ad47"),
]


class BenchError(Exception):
    pass


def die(message):
    print(f"guest_bench: {message}", file=sys.stderr)
    sys.exit(1)


def read_env(path):
    """Reads guest.env's NAME=value lines (plain shell assignments, no quoting in practice)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if "=" in line and not line.startswith("#"):
                name, value = line.split("=", 1)
                env[name] = value.strip("'\"")
    return env


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def qemu_version():
    try:
        out = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        die(f"qemu-system-x86_64 --version failed: {error}")
    return out.splitlines()[0].strip()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_commit():
    """HEAD of the source tree, read-only (no git command that could touch the index)."""
    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def tail(path, lines=25):
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()[-lines:]
    except OSError:
        return []


class Backend:
    """A vhost-user backend process on a fresh socket, one per boot."""

    def __init__(self, command, socket_path, log_path, must_outlive_guest):
        self.socket_path = socket_path
        self.log_path = log_path
        self.must_outlive_guest = must_outlive_guest
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not os.path.exists(socket_path):
            if self.proc.poll() is not None:
                raise BenchError(f"backend exited with {self.proc.returncode} before creating its socket")
            if time.monotonic() > deadline:
                raise BenchError("backend created no socket within 10 s")
            time.sleep(0.02)
        time.sleep(0.1)  # the socket exists after bind(); give listen() a moment

    def stop(self):
        """Stops the backend; returns its exit code, or None if it was still running until now."""
        early = self.proc.poll()
        if early is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return early


def start_crc_capture(control_path):
    """crc-start on output 0 through our control socket (before the guest draws anything: every
    flush then gets its CRC computed; the 128-entry ring fills and drops, which costs nothing)."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(10)
    client.connect(control_path)
    stream = client.makefile("rwb")
    stream.readline()  # greeting
    stream.write(json.dumps({"execute": "crc-start", "arguments": {"output": 0}, "id": 1}).encode() + b"\n")
    stream.flush()
    reply = json.loads(stream.readline() or b"{}")
    client.close()
    if "return" not in reply:
        raise BenchError(f"crc-start failed: {reply}")


def run_boot(device, index, args, workdir, guest_cache):
    """Boots the guest once on `device`; returns the run's numbers or raises BenchError."""
    run_dir = os.path.join(workdir, f"{index:02d}-{device}")
    os.makedirs(run_dir)
    socket_path = os.path.join(run_dir, "vgpu.sock")
    backend_log = os.path.join(run_dir, "backend.log")
    console_log = os.path.join(run_dir, "console.log")
    backend = None
    if device == "builtin":
        qemu_args = ["-device", "virtio-gpu-pci"]
    else:
        qemu_args = ["-chardev", f"socket,id=vgpu,path={socket_path}", "-device", "vhost-user-gpu-pci,chardev=vgpu"]
    command = [BOOT_SH, "--no-build", "--cache", guest_cache, "--test", f"bench:{args.seconds}", "--hold", "0",
               "--timeout", str(args.timeout), *(["--blob"] if device == "ours_blob" else []), "--"] + qemu_args

    start = time.monotonic()
    try:
        if device in ("ours", "ours_crc", "ours_blob"):
            control_path = os.path.join(run_dir, "control.sock")
            backend = Backend([args.backend, "--socket-path", socket_path, "--log-level", args.backend_log_level,
                               "--control", control_path, *(["--blob"] if device == "ours_blob" else [])],
                              socket_path, backend_log, must_outlive_guest=True)
            if device == "ours_crc":
                start_crc_capture(control_path)
        elif device == "qemu_backend":
            # QEMU's backend serves one frontend and exits when it goes away.
            backend = Backend([QEMU_BACKEND, f"--socket-path={socket_path}"], socket_path, backend_log,
                              must_outlive_guest=False)
        with open(console_log, "wb") as log:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                qemu_rc = proc.wait(timeout=args.timeout + 30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # boot.sh's own group: timeout(1) and QEMU
                proc.wait()
                qemu_rc = "killed"
            except BaseException:  # Ctrl-C: the boot runs in its own session and would not see it
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
    finally:
        backend_rc = backend.stop() if backend else None
    seconds = time.monotonic() - start

    with open(console_log, errors="replace") as f:
        console = f.read()
    problems = []
    bench = BENCH.search(console)
    if not bench:
        problems.append("no VGPU-BENCH line")
    end = TEST_END.search(console)
    if not end:
        problems.append("the bench step did not end")
    elif end.group(1) != "0":
        problems.append(f"the bench step failed (rc={end.group(1)})")
    if "VGPU-ALL-DONE" not in console:
        problems.append("no VGPU-ALL-DONE")
    if qemu_rc != 0:
        problems.append("QEMU timed out (boot.sh exit 124)" if qemu_rc == 124 else f"QEMU exit code {qemu_rc}")
    if backend is not None and backend.must_outlive_guest and backend_rc is not None:
        problems.append(f"our backend exited with {backend_rc} during the boot")
    want = "VGPU-GUEST-BLOB yes" if device == "ours_blob" else None
    if want and want not in console:
        problems.append("the guest did not use blob resources")
    errors = [line.strip() for line in console.splitlines() if "VGPU-ERROR" in line]
    if problems:
        raise BenchError("; ".join(problems + errors[:5]))
    return {
        "flips_per_s": float(bench.group(1)),
        "dirtyfb_per_s": float(bench.group(2)),
        "mode": bench.group(3),
        "flips": int(bench.group(4)),
        "dirtyfbs": int(bench.group(5)),
        "seconds": float(bench.group(6)),
        "boot_seconds": round(seconds, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="boots per device (default 5)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per phase (flips, DIRTYFB; default 5)")
    parser.add_argument("--timeout", type=int, help="seconds per boot before QEMU is killed (default 90 + 4 x S)")
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    parser.add_argument("--cache", default=os.environ.get("VGPU_GUEST_CACHE", os.path.join(ROOT, "build", "guest")),
                        help="the guest cache guest/build.sh built (default build/guest)")
    parser.add_argument("--backend", default=os.path.join(ROOT, "build", "bin", "vgpu-display"))
    parser.add_argument("--backend-log-level", default="info", help="--log-level for our backend (default info)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the console and backend logs")
    args = parser.parse_args()
    if args.repeats < 1:
        die("--repeats must be at least 1")
    if not 0 < args.seconds <= 600:
        die("--seconds must be in (0, 600]")
    args.seconds = f"{args.seconds:g}"
    if args.timeout is None:
        args.timeout = int(90 + 4 * float(args.seconds))

    env_path = os.path.join(args.cache, "guest.env")
    if not os.path.isfile(env_path):
        die(f"no {env_path}: build the guest first (guest/build.sh {args.cache})")
    guest_env = read_env(env_path)
    for name in ("GUEST_KERNEL", "GUEST_INITRD"):
        if not os.path.isfile(guest_env.get(name, "")):
            die(f"{env_path}: {name} does not exist: rebuild the guest (guest/build.sh {args.cache})")
    if not os.access(args.backend, os.X_OK):
        die(f"{args.backend} is missing: ./run build")
    if not os.access(QEMU_BACKEND, os.X_OK):
        die(f"{QEMU_BACKEND} is missing (Debian's qemu-system-gui from bookworm-backports)")
    qemu = qemu_version()
    match = re.search(r"version (\d+)\.", qemu)
    if not match or int(match.group(1)) < 10:
        die(f"QEMU >= 10 is needed (vhost-user-gpu under TCG), found: {qemu}")

    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": {
            "cpu": cpu_model(),
            "nproc": os.cpu_count(),
            "kernel": platform.release(),
            "loadavg_at_start": list(os.getloadavg()),
        },
        "qemu": qemu,
        "accel": "tcg",
        "guest_kernel_package": guest_env.get("GUEST_KERNEL_PACKAGE"),
        "guest_kernel": guest_env.get("GUEST_KVER"),
        "mode": None,
        "seconds_per_phase": float(args.seconds),
        "repeats": args.repeats,
        "order": "interleaved: " + ", ".join(d for d, _, _ in DEVICES) + ", repeated",
        "backend": {"path": os.path.relpath(args.backend, ROOT), "sha256": sha256(args.backend),
                    "source_commit": source_commit(), "log_level": args.backend_log_level},
        "devices": {},
        "ratios": {},
    }
    qemu_args = {
        "ours": f"{os.path.relpath(args.backend, ROOT)} --socket-path=S; "
                "-chardev socket,id=vgpu,path=S -device vhost-user-gpu-pci,chardev=vgpu",
        "qemu_backend": f"{QEMU_BACKEND} --socket-path=S; "
                        "-chardev socket,id=vgpu,path=S -device vhost-user-gpu-pci,chardev=vgpu",
        "builtin": "-device virtio-gpu-pci",
    }
    qemu_args["ours_crc"] = qemu_args["ours"] + "; control socket crc-start output 0 before boot"
    qemu_args["ours_blob"] = (f"{os.path.relpath(args.backend, ROOT)} --socket-path=S --blob; "
                              "-chardev socket,id=vgpu,path=S -device vhost-user-gpu-pci,chardev=vgpu; "
                              "guest: boot.sh --blob (virtio_gpu force_blob=1)")
    for device, label, _ in DEVICES:
        result["devices"][device] = {"label": label, "setup": qemu_args[device], "runs": []}

    workdir = tempfile.mkdtemp(prefix="vgpu-guest-bench-")
    failures = []
    total = args.repeats * len(DEVICES)
    print(f"guest_bench: {total} boots ({args.repeats} per device, interleaved), {args.seconds} s per phase; "
          f"logs in {workdir}", flush=True)
    index = 0
    for repeat in range(args.repeats):
        for device, label, _ in DEVICES:
            index += 1
            try:
                run = run_boot(device, index, args, workdir, args.cache)
            except BenchError as error:
                failures.append(f"run {index} ({device}, repeat {repeat + 1}): {error}")
                print(f"[{index}/{total}] {label:22} FAILED: {error}", flush=True)
                continue
            result["devices"][device]["runs"].append(run)
            print(f"[{index}/{total}] {label:22} flips/s {run['flips_per_s']:9.1f}  dirtyfb/s "
                  f"{run['dirtyfb_per_s']:9.1f}  {run['mode']}  ({run['boot_seconds']} s)", flush=True)

    modes = sorted({r["mode"] for d in result["devices"].values() for r in d["runs"]})
    if len(modes) > 1:
        failures.append(f"the guest's mode differs between runs ({', '.join(modes)}): not comparable")
    if failures:
        print("\nguest_bench: FAILED, nothing written:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        for name in sorted(os.listdir(workdir)):
            run_dir = os.path.join(workdir, name)
            if any(f"run {int(name[:2])} (" in failure for failure in failures):
                for log in ("console.log", "backend.log"):
                    lines = tail(os.path.join(run_dir, log), 15)
                    if lines:
                        print(f"  --- {name}/{log} (last {len(lines)} lines)", file=sys.stderr)
                        for line in lines:
                            print(f"    {line}", file=sys.stderr)
        print(f"guest_bench: logs kept in {workdir}", file=sys.stderr)
        return 1

    result["mode"] = modes[0]
    for device in result["devices"].values():
        for key in ("flips_per_s", "dirtyfb_per_s"):
            device[f"median_{key}"] = round(statistics.median(r[key] for r in device["runs"]), 1)
    for mine in ("ours", "ours_crc", "ours_blob"):
        ours = result["devices"][mine]
        for other in ("builtin", "qemu_backend"):
            result["ratios"][f"{mine}_over_{other}"] = {
                key: round(ours[f"median_{key}"] / result["devices"][other][f"median_{key}"], 3)
                if result["devices"][other][f"median_{key}"] else None
                for key in ("flips_per_s", "dirtyfb_per_s")
            }
    # Boots of one round ran back to back: their ratio is less exposed to the machine's drift
    # than the ratio of medians. The median over rounds of the per-round ratios.
    result["paired_ratios"] = {}
    for mine in ("ours", "ours_crc", "ours_blob"):
        for other in ("builtin", "qemu_backend"):
            pairs = list(zip(result["devices"][mine]["runs"], result["devices"][other]["runs"]))
            result["paired_ratios"][f"{mine}_over_{other}"] = {
                key: round(statistics.median(a[key] / b[key] for a, b in pairs if b[key]), 3)
                for key in ("flips_per_s", "dirtyfb_per_s")
            }
    result["host"]["loadavg_at_end"] = list(os.getloadavg())

    os.makedirs(args.out_dir, exist_ok=True)
    json_path = os.path.join(args.out_dir, "guest_flips.json")
    with open(json_path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(json_path + ".tmp", json_path)
    if args.keep_logs:
        print(f"guest_bench: logs kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nmode {result['mode']}, {args.seconds} s per phase, median of {args.repeats} "
          f"({result['qemu'].split(' (')[0]}, TCG)")
    print(f"{'device':28} {'flips/s':>10} {'dirtyfb/s':>10}")
    for device, label, _ in DEVICES:
        d = result["devices"][device]
        print(f"{label:28} {d['median_flips_per_s']:10.1f} {d['median_dirtyfb_per_s']:10.1f}")
    for mine, mine_name in (("ours", "ours"), ("ours_crc", "ours+CRC"), ("ours_blob", "ours blob")):
        for other, name in (("builtin", "virtio-gpu-pci"), ("qemu_backend", "QEMU vhost-user-gpu")):
            r = result["ratios"][f"{mine}_over_{other}"]
            q = result["paired_ratios"][f"{mine}_over_{other}"]
            print(f"{mine_name + ' / ' + name:28} {r['flips_per_s']:10.3f} {r['dirtyfb_per_s']:10.3f}"
                  f"   per round: {q['flips_per_s']:.3f} {q['dirtyfb_per_s']:.3f}")
    print(f"results: {os.path.relpath(json_path, ROOT)} (plots: bench/report.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
