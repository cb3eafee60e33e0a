#!/usr/bin/env python3
"""The benchmark report: plots and the README's results table, from bench/results/*.json.

    bench/report.py [--results DIR] [--readme README.md]

Reads host.json (bench_host), guest_flips.json (guest_bench.py), capture.json (bench_capture) and
control_flood.json (bench_control_flood), writes DIR/host.png, DIR/guest_flips.png and
DIR/control_flood.png (Debian's python3-matplotlib), replaces the part of
the README between the markers `<!-- bench:begin -->` and `<!-- bench:end -->` with tables of the
figures and the issue's targets checked against them, and prints the targets. Every figure in the
README comes from these files; nothing is typed in by hand.
"""
import argparse
import datetime
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"

PATHS = ["ours+display", "ours", "ours+display+crc", "ours+crc", "qemu-vhost-user-gpu"]
COLORS = ["#4472c4", "#70ad47", "#8faadc", "#a9d18e", "#c00000"]
# Blob resources (issue 10): the same paths with guest blobs read in place.
BLOB_PATHS = ["blob+display", "blob", "blob+display+crc", "blob+crc"]
ALL_PATHS = PATHS + BLOB_PATHS
ALL_COLORS = COLORS + ["#ffc000", "#7f6000", "#ffe699", "#bf9000"]
GUEST_DEVICES = [("ours", "#4472c4"), ("ours_crc", "#2f4f8f"), ("ours_blob", "#9dc3e6"), ("qemu_backend", "#ed7d31"),
                 ("builtin", "#70ad47")]


def load(path):
    with open(path) as f:
        return json.load(f)


class Host:
    def __init__(self, data):
        self.data = data
        self.runs = [r for r in data["runs"] if "error" not in r]
        self.errors = [r for r in data["runs"] if "error" in r]

    def run(self, path, size, damage, guest):
        for r in self.runs:
            if r["path"] == path and (r["width"], r["height"]) == size and r["damage"] == damage and r["guest"] == guest:
                return r
        return None

    def floor(self, size, damage):
        for f in self.data["floors"]:
            if (f["width"], f["height"]) == size and f["damage"] == damage:
                return f
        return None

    def sizes(self):
        return sorted({(r["width"], r["height"]) for r in self.runs})


def get(run, key, default=0.0):
    value = run
    for k in key.split("."):
        value = value.get(k) if isinstance(value, dict) else None
    return default if value is None else value


# ---- plots ----------------------------------------------------------------------------------


def plot_host(host, dst):
    sizes = host.sizes()
    labels = [f"{w}x{h}" for w, h in sizes]
    width = 0.8 / len(ALL_PATHS)
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    for ax, (damage, guest) in zip((axes[0][0], axes[0][1]), (("full", "flip-only"), ("256x256", "redraw"))):
        for i, path in enumerate(ALL_PATHS):
            xs = [j + (i - len(ALL_PATHS) / 2 + 0.5) * width for j in range(len(sizes))]
            ys = [get(host.run(path, s, damage, guest) or {}, "flips_per_s") for s in sizes]
            ax.bar(xs, ys, width, label=path, color=ALL_COLORS[i])
        ax.set_xticks(range(len(sizes)), labels)
        ax.set_yscale("log")
        ax.set_ylabel("flips/s (log)")
        ax.set_title(f"flips per second, {damage} damage, guest {guest} (higher is better)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)

    ax = axes[1][0]
    combos = [(s, d, g) for s in sizes for d, g in (("full", "redraw"), ("full", "flip-only"), ("256x256", "redraw"))]
    for i, path in enumerate(ALL_PATHS):
        xs = [j + (i - len(ALL_PATHS) / 2 + 0.5) * width for j in range(len(combos))]
        # A blob flip without CRC or display socket has no floor: no bar.
        ys = [get(host.run(path, s, d, g) or {}, "cpu_per_flip_over_floor", None) for s, d, g in combos]
        pairs = [(x, y) for x, y in zip(xs, ys) if y]
        if pairs:
            ax.bar([x for x, _ in pairs], [y for _, y in pairs], width, label=path, color=ALL_COLORS[i])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(1.3, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(combos)), [f"{w}x{h}\n{d}\n{g}" for (w, h), d, g in combos], fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("backend CPU per flip / floor (log)")
    ax.set_title("CPU per flip over the floor (2D: cold memcpy [+ CRC]; blob: [CRC] [+ socket write]); dashed: 1.3x")
    ax.grid(axis="y", alpha=0.3)

    ax = axes[1][1]
    bars = []
    for path in ALL_PATHS:
        for damage, guest in (("full", "flip-only"), ("256x256", "redraw")):
            r = host.run(path, (1920, 1080), damage, guest)
            for kind in ("used_latency_us", "display_latency_us"):
                if r and kind in r:
                    bars.append((f"{path} {damage}\n{'used' if kind.startswith('used') else 'display'}", r[kind]["p50"], r[kind]["p99"], path))
    ys = range(len(bars))
    ax.barh([y + 0.2 for y in ys], [b[2] for b in bars], 0.4, color="#bbbbbb", label="p99")
    ax.barh([y - 0.2 for y in ys], [b[1] for b in bars], 0.4, color=[ALL_COLORS[ALL_PATHS.index(b[3])] for b in bars], label="p50")
    ax.set_yticks(list(ys), [b[0] for b in bars], fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("µs from submit (log)")
    ax.set_title("1920x1080: to the flush's used entry / to the UPDATE (p50, p99)")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle("bench_host: page flips through the harness frontend, no guest (one run, floors measured alongside)")
    fig.tight_layout()
    fig.savefig(dst, dpi=100)
    plt.close(fig)


def plot_guest(guest, dst):
    fig, ax = plt.subplots(figsize=(10, 5))
    width = 0.8 / len(GUEST_DEVICES)
    for i, (device, color) in enumerate(GUEST_DEVICES):
        d = guest["devices"][device]
        for j, key in enumerate(("flips_per_s", "dirtyfb_per_s")):
            values = [r[key] for r in d["runs"]]
            x = j + (i - len(GUEST_DEVICES) / 2 + 0.5) * width
            median = d[f"median_{key}"]
            ax.bar(x, median, width, color=color, label=d["label"] if j == 0 else None)
            ax.errorbar(x, median, yerr=[[median - min(values)], [max(values) - median]], color="black", capsize=3)
            ax.text(x, median, f"{median:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks([0, 1], ["page flips/s", "full-frame DIRTYFB/s"])
    ax.set_ylabel("per second (median, min-max whiskers)")
    ax.set_title(f"guest {guest['mode']}, QEMU 10 TCG, {guest['repeats']} interleaved boots per device")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(dst, dpi=100)
    plt.close(fig)


def plot_flood(flood, dst):
    keys = [("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("p999_us", "p99.9")]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.38
    for i, (phase, color) in enumerate((("quiet", "#70ad47"), ("flood", "#c00000"))):
        values = [flood[phase][k] for k, _ in keys]
        xs = [j + (i - 0.5) * width for j in range(len(keys))]
        ax.bar(xs, values, width, color=color,
               label=f"{phase} ({flood[phase]['count']} round trips)" if phase == "quiet" else
               f"2000 screendumps pipelined ({flood[phase]['count']} round trips)")
        for x, v in zip(xs, values):
            ax.text(x, v, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(keys)), [label for _, label in keys])
    ax.set_ylabel("guest control-queue round trip, µs")
    ax.set_title(f"GET_DISPLAY_INFO round trips, {flood['size'][0]}x{flood['size'][1]} screendumps")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(dst, dpi=100)
    plt.close(fig)


# ---- tables and targets ---------------------------------------------------------------------


def flood_section(flood):
    q, f = flood["quiet"], flood["flood"]
    ratio = f["p99_us"] / q["p99_us"]
    return [f"**Control-socket flood** (issue 9; `build/release/bench/bench_control_flood`, `control_flood.json`, "
            f"`control_flood.png`, measured {flood.get('date', '?')[:10]}): the guest's GET_DISPLAY_INFO round trip through the real backend, "
            f"{flood['seconds_per_phase']:g} s quiet, then {flood['seconds_per_phase']:g} s while a control client "
            f"has 2000 screendumps of a {flood['size'][0]}x{flood['size'][1]} frame pipelined "
            f"({flood['screendump_replies_during_flood']} of them answered meanwhile; they are encoded and written "
            "off the loop).", "",
            "| phase | round trips | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| quiet | {q['count']} | {q['p50_us']:.1f} | {q['p90_us']:.1f} | {q['p99_us']:.1f} | {q['p999_us']:.1f} | {q['max_us']:.0f} |",
            f"| screendump flood | {f['count']} | {f['p50_us']:.1f} | {f['p90_us']:.1f} | {f['p99_us']:.1f} | {f['p999_us']:.1f} | {f['max_us']:.0f} |",
            "", f"Target: p99 during the flood within 2x of the quiet p99: {ratio:.2f}x, "
            + ("met." if ratio <= 2 else "**missed**."), ""]


def fmt(v, digits=0):
    return "–" if v is None else f"{v:,.{digits}f}"


def host_table(host, size):
    w, h = size
    lines = [
        f"| path | damage, guest | flips/s | UPDATEs/s | CPU µs/flip | CPU / floor | bytes copied/flip | used p50 / p99 µs | UPDATE p50 / p99 ms | RssAnon MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for damage, guest in (("full", "redraw"), ("full", "flip-only"), ("256x256", "redraw")):
        for path in PATHS + BLOB_PATHS:
            r = host.run(path, size, damage, guest)
            if not r:
                continue
            updates = r["frames_delivered"] / r["seconds"] if "frames_delivered" in r else None
            display = (f"{r['display_latency_us']['p50'] / 1000:.1f} / {r['display_latency_us']['p99'] / 1000:.1f}"
                       if "display_latency_us" in r else "–")
            over = r.get("cpu_per_flip_over_floor")
            lines.append(f"| {path} | {damage}, {guest} | {fmt(r['flips_per_s'])} | {fmt(updates)} | "
                         f"{fmt(r['backend_cpu_us_per_flip'])} | {'–' if over is None else f'{over:.2f}'} | "
                         f"{fmt(r.get('bytes_copied_per_flip'))} | "
                         f"{fmt(r['used_latency_us']['p50'])} / {fmt(r['used_latency_us']['p99'])} | {display} | "
                         f"{r['rss_anon_kib'] / 1024:.1f} |")
    return lines


def targets(host, guest):
    """(target, measured, met) per target of issue 5, at 1920x1080 unless stated."""
    out = []
    size = (1920, 1080)
    floor = host.floor(size, "full")
    # 1. CPU per flip without a display socket, against cold memcpy (+ CRC on the capture path).
    for path in ("ours", "ours+crc"):
        rs = [host.run(path, size, "full", g) for g in ("redraw", "flip-only")]
        worst = max(r["cpu_per_flip_over_floor"] for r in rs if r)
        out.append((f"2D full frame, no display socket ({path}): CPU per flip ≤ 1.3x the floor",
                    f"{worst:.2f}x (worst of redraw and flip-only; floor {floor['cold_memcpy_us']:.0f} µs memcpy"
                    + (f" + {floor['crc32c_us']:.0f} µs CRC" if path.endswith("crc") else "") + ")", worst <= 1.3))
    # 2. 256x256 damage: at most 150 µs per flip (submit to the used entry, p50; and CPU).
    rs = [host.run(p, size, "256x256", "redraw") for p in PATHS if p.startswith("ours")]
    worst_used = max(r["used_latency_us"]["p50"] for r in rs if r)
    worst_cpu = max(r["backend_cpu_us_per_flip"] for r in rs if r)
    out.append(("256x256 damage: ≤ 150 µs per flip (all our paths)",
                f"used p50 ≤ {worst_used:.0f} µs, CPU ≤ {worst_cpu:.0f} µs/flip", max(worst_used, worst_cpu) <= 150))
    # 3. With QEMU's display socket: ≥ 5x QEMU's backend in flips/s at full damage.
    for g in ("flip-only", "redraw"):
        ours, theirs = host.run("ours+display", size, "full", g), host.run("qemu-vhost-user-gpu", size, "full", g)
        if ours and theirs:
            ratio = ours["flips_per_s"] / theirs["flips_per_s"]
            out.append((f"display socket, full damage, guest {g}: ≥ 5x QEMU's backend in flips/s",
                        f"{ratio:.2f}x ({ours['flips_per_s']:.0f} vs {theirs['flips_per_s']:.0f}; CPU per flip "
                        f"{theirs['backend_cpu_us_per_flip'] / ours['backend_cpu_us_per_flip']:.1f}x less)", ratio >= 5))
    # 4. p99 ≤ 2x p50, used-entry latency of our paths at full damage and 256x256.
    worst = (0, "")
    for path in PATHS[:4]:
        for damage, g in (("full", "redraw"), ("full", "flip-only"), ("256x256", "redraw")):
            r = host.run(path, size, damage, g)
            if r:
                q = r["used_latency_us"]["p99"] / r["used_latency_us"]["p50"]
                worst = max(worst, (q, f"{path} {damage} {g}"))
    out.append(("p99 latency ≤ 2x p50 (to the used entry, our paths)", f"worst {worst[0]:.2f}x ({worst[1]})", worst[0] <= 2))
    worst = (0, "")
    for path in ("ours+display", "ours+display+crc"):
        for damage, g in (("full", "redraw"), ("full", "flip-only"), ("256x256", "redraw")):
            r = host.run(path, size, damage, g)
            if r and "display_latency_us" in r:
                q = r["display_latency_us"]["p99"] / r["display_latency_us"]["p50"]
                worst = max(worst, (q, f"{path} {damage} {g}"))
    out.append(("p99 latency ≤ 2x p50 (to the UPDATE, paced at 16 ms)", f"worst {worst[0]:.2f}x ({worst[1]})", worst[0] <= 2))
    # 5. RSS: at most 32 MiB beyond the resources' own memory, at every size.
    worst = (0, "")
    for r in host.runs:
        if r["backend"] != "vgpu-display":
            continue
        resources = (2 if r["damage"] == "full" else 1) * r["width"] * r["height"] * 4 / 2**20
        worst = max(worst, (r["rss_anon_kib"] / 1024 - resources, f"{r['path']} {r['width']}x{r['height']}"))
    out.append(("RssAnon ≤ 32 MiB beyond the resources", f"worst {worst[0]:.1f} MiB ({worst[1]})", worst[0] <= 32))
    # Issue 10, blob resources at 1920x1080 full frame, no display socket: ≤ 0.1 ms CPU, 0 bytes
    # copied; with CRC ≤ 1.3x the CRC floor; with the display socket ≤ the socket write's floor.
    blob = [host.run("blob", size, "full", g) for g in ("redraw", "flip-only")]
    if all(blob):
        cpu = max(r["backend_cpu_us_per_flip"] for r in blob)
        copied = max(r["bytes_copied_per_flip"] for r in blob)
        out.append(("blob full frame, no display socket: ≤ 0.1 ms backend CPU per flip, 0 bytes copied",
                    f"{cpu:.0f} µs, {copied:.0f} bytes (worst of redraw and flip-only)", cpu <= 100 and copied == 0))
    for path, what, limit in (("blob+crc", "the CRC floor", 1.3), ("blob+display", "the socket write's floor", 1.0)):
        rs = [host.run(path, size, "full", g) for g in ("redraw", "flip-only")]
        if all(rs):
            worst = max(r["cpu_per_flip_over_floor"] for r in rs)
            out.append((f"{path} full frame: CPU per flip ≤ {limit:g}x {what}",
                        f"{worst:.2f}x ({max(r['backend_cpu_us_per_flip'] for r in rs):.0f} µs; floor "
                        f"{rs[0]['floor_us']:.0f} µs)", worst <= limit))
    # 6. Guest: our flip rate with CRC capture on ≥ the built-in device's.
    if guest:
        m = guest["ratios"]["ours_crc_over_builtin"]["flips_per_s"]
        p = guest.get("paired_ratios", {}).get("ours_crc_over_builtin", {}).get("flips_per_s")
        out.append(("guest: our flips/s with CRC capture ≥ the built-in device's",
                    f"{m:.3f}x of medians" + (f", {p:.3f}x median per round" if p else ""), m >= 1.0))
        b = guest["ratios"].get("ours_blob_over_builtin", {}).get("flips_per_s")
        if b:
            pb = guest.get("paired_ratios", {}).get("ours_blob_over_builtin", {}).get("flips_per_s")
            out.append(("guest: blob flips/s ≥ 1.5x the built-in device's (issue 10)",
                        f"{b:.3f}x of medians" + (f", {pb:.3f}x median per round" if pb else ""), b >= 1.5))
    return out


def readme_section(host, guest, capture, flood=None):
    lines = [BEGIN, "",
             f"Generated by `bench/report.py` from `bench/results/*.json` ({datetime.date.today().isoformat()}); "
             "`./run bench` measures and regenerates all of it. Each table comes from one run, in which the "
             "alternatives and the floors were measured alongside (absolute figures drift by ~20% between runs on "
             "these shared 2-core machines; ratios much less)."
             + (f" Machine of this run: {guest['host']['cpu']}, {guest['host']['nproc']} cores (the CPU model changes "
                "between sessions: CRC-32C runs about 3x slower per byte on the AMD EPYC hosts than on the Intel Xeon "
                "ones, which moves every CRC figure)." if guest and "host" in guest else ""), ""]
    if guest:
        lines += [f"**Guest** ({guest['mode']}, QEMU 10 TCG, one vCPU, {guest['repeats']} interleaved boots per device, "
                  f"{guest['seconds_per_phase']:g} s per phase; `bench/guest_bench.py`, `guest_flips.png`):", "",
                  "| device | flips/s | full-frame DIRTYFB/s | flips vs built-in (medians; per round) |", "| --- | --- | --- | --- |"]
        for device, _ in GUEST_DEVICES:
            if device not in guest["devices"]:
                continue
            d = guest["devices"][device]
            ratio = guest["ratios"].get(f"{device}_over_builtin", {}).get("flips_per_s")
            paired = guest.get("paired_ratios", {}).get(f"{device}_over_builtin", {}).get("flips_per_s")
            text = "1" if device == "builtin" else (f"{ratio:.2f}x; {paired:.2f}x" if ratio and paired else f"{ratio:.2f}x" if ratio else "–")
            lines.append(f"| {d['label']} | {d['median_flips_per_s']:.0f} | {d['median_dirtyfb_per_s']:.0f} | {text} |")
        lines.append("")
    size = (1920, 1080)
    floor = host.floor(size, "full")
    small = host.floor(size, "256x256")
    lines += [f"**Host harness, 1920x1080** (`build/release/bench/bench_host`, `host.json`, `host.png`). The harness "
              "is QEMU's side: it writes the damage into guest RAM (redraw: every pixel before each flip; flip-only: "
              "only the first row, flipping between two drawn frames as the guest benchmark's drmtest does), submits "
              "TRANSFER_TO_HOST_2D + SET_SCANOUT + RESOURCE_FLUSH in one kick and waits for the used entries; its "
              "display side reads every message. Our backend paces UPDATEs to QEMU (at most one batch per 16 ms), "
              "QEMU's sends one per flip: UPDATEs/s is shown next to flips/s. Floors in the same run: cold memcpy "
              f"{floor['cold_memcpy_us']:.0f} µs ({floor['cold_memcpy_gb_per_s']:.1f} GB/s), CRC-32C "
              f"{floor['crc32c_us']:.0f} µs ({floor['crc32c_gb_per_s']:.1f} GB/s, {floor.get('crc32c_implementation', '')}) "
              f"per frame; 256x256: {small['cold_memcpy_us']:.0f} µs and {small['crc32c_us']:.0f} µs.", ""]
    lines += host_table(host, size)
    lines.append("")
    if capture:
        times = {}
        for b in capture["benchmarks"]:
            if b.get("run_type") == "aggregate":
                continue
            times.setdefault(b["name"].split("/")[1], []).append(b.get("backend_cpu_us_per_flip", 0))
        if "0" in times and "1" in times:
            off, on = statistics.median(times["0"]), statistics.median(times["1"])
            lines += [f"CRC capture's cost at 1920x1080 (`build/release/bench/bench_capture`, `capture.json`): backend CPU "
                      f"per flip {off:.0f} µs with capture off, {on:.0f} µs on (+{on - off:.0f} µs).", ""]
    if flood:
        lines += flood_section(flood)
    lines += ["**Targets** (issue 5; at 1920x1080 unless stated):", "", "| target | measured | |", "| --- | --- | --- |"]
    for name, measured, met in targets(host, guest):
        lines.append(f"| {name} | {measured} | {'met' if met else '**missed**'} |")
    if host.errors:
        lines += ["", "Runs that failed: " + "; ".join(f"{r['path']} {r['width']}x{r['height']} {r['damage']}: {r['error'][:80]}" for r in host.errors)]
    lines += ["", END]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    parser.add_argument("--readme", default=os.path.join(ROOT, "README.md"))
    args = parser.parse_args()
    host_path = os.path.join(args.results, "host.json")
    if not os.path.isfile(host_path):
        sys.exit(f"report: no {host_path}: run build/release/bench/bench_host first")
    host = Host(load(host_path))
    if not host.runs:
        sys.exit(f"report: no successful runs in {host_path}")
    guest_path = os.path.join(args.results, "guest_flips.json")
    guest = load(guest_path) if os.path.isfile(guest_path) else None
    capture_path = os.path.join(args.results, "capture.json")
    capture = load(capture_path) if os.path.isfile(capture_path) else None
    flood_path = os.path.join(args.results, "control_flood.json")
    flood = load(flood_path) if os.path.isfile(flood_path) else None

    plot_host(host, os.path.join(args.results, "host.png"))
    if guest:
        plot_guest(guest, os.path.join(args.results, "guest_flips.png"))
    if flood:
        plot_flood(flood, os.path.join(args.results, "control_flood.png"))
    with open(args.readme) as f:
        readme = f.read()
    if BEGIN not in readme or END not in readme:
        sys.exit(f"report: {args.readme} has no {BEGIN} ... {END} section")
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(args.readme, "w") as f:
        f.write(head + readme_section(host, guest, capture, flood) + tail)
    for name, measured, met in targets(host, guest):
        print(f"{'met   ' if met else 'MISSED'} {name}: {measured}")
    print(f"report: {os.path.relpath(args.readme, ROOT)}, {os.path.relpath(args.results, ROOT)}/host.png"
          + (", guest_flips.png" if guest else ""))


if __name__ == "__main__":
    main()
