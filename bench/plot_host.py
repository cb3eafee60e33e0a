#!/usr/bin/env python3
"""Plots bench/results/host.json (bench_host) as a PNG with Debian's python3-matplotlib:
flips/s per path and size (full frame and 256x256 damage), backend CPU per flip as a ratio to
the floor (cold memcpy, plus CRC-32C on the capture paths), and 1920x1080 latencies p50/p99."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

PATHS = ["ours+display", "ours", "ours+display+crc", "ours+crc", "qemu-vhost-user-gpu"]
COLORS = ["#4472c4", "#70ad47", "#8faadc", "#a9d18e", "#c00000"]


def main(src, dst):
    with open(src) as f:
        data = json.load(f)
    runs = [r for r in data["runs"] if "error" not in r]
    if not runs:
        sys.exit(f"plot_host: no successful runs in {src}")
    sizes = sorted({(r["width"], r["height"]) for r in runs})
    labels = [f"{w}x{h}" for w, h in sizes]

    def get(path, size, damage, key):
        for r in runs:
            if r["path"] == path and (r["width"], r["height"]) == size and r["damage"] == damage:
                value = r
                for k in key.split("."):
                    value = value.get(k) if isinstance(value, dict) else None
                return value if value is not None else 0.0
        return 0.0

    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    width = 0.8 / len(PATHS)
    for ax, damage in ((axes[0][0], "full"), (axes[0][1], "256x256")):
        for i, path in enumerate(PATHS):
            xs = [j + (i - len(PATHS) / 2 + 0.5) * width for j in range(len(sizes))]
            ys = [get(path, s, damage, "flips_per_s") for s in sizes]
            ax.bar(xs, ys, width, label=path, color=COLORS[i])
        ax.set_xticks(range(len(sizes)), labels)
        ax.set_yscale("log")
        ax.set_ylabel("flips/s (log)")
        ax.set_title(f"flips per second, {damage} damage (higher is better)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=8)

    ax = axes[1][0]
    combos = [(s, d) for s in sizes for d in ("full", "256x256")]
    for i, path in enumerate(PATHS):
        xs = [j + (i - len(PATHS) / 2 + 0.5) * width for j in range(len(combos))]
        ys = [get(path, s, d, "cpu_per_flip_over_floor") for s, d in combos]
        ax.bar(xs, ys, width, label=path, color=COLORS[i])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(1.3, color="gray", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(combos)), [f"{w}x{h}\n{d}" for (w, h), d in combos], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("backend CPU per flip / floor (log)")
    ax.set_title("CPU per flip over the floor (cold memcpy [+ CRC-32C]); dashed: 1.3x target")
    ax.grid(axis="y", alpha=0.3)

    ax = axes[1][1]
    size = (1920, 1080)
    bars = []
    for path in PATHS:
        for damage in ("full", "256x256"):
            for kind in ("used_latency_us", "display_latency_us"):
                p50 = get(path, size, damage, kind + ".p50")
                p99 = get(path, size, damage, kind + ".p99")
                if p50:
                    bars.append((f"{path} {damage}\n{'used' if kind.startswith('used') else 'display'}", p50, p99, path))
    ys = range(len(bars))
    ax.barh([y + 0.2 for y in ys], [b[2] for b in bars], 0.4, color="#bbbbbb", label="p99")
    ax.barh([y - 0.2 for y in ys], [b[1] for b in bars], 0.4, color=[COLORS[PATHS.index(b[3])] for b in bars], label="p50")
    ax.set_yticks(list(ys), [b[0] for b in bars], fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("µs from submit (log)")
    ax.set_title("1920x1080 latency to the flush's used entry / the UPDATE (p50, p99)")
    ax.invert_yaxis()
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)

    fig.suptitle("bench_host: page flips through the harness frontend, no guest (one run, floors measured alongside)")
    fig.tight_layout()
    fig.savefig(dst, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
