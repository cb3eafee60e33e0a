#!/usr/bin/env python3
"""Plots bench_export's JSON (bench/results/export.json): flip-to-wake-up against a plain
eventfd (p50, p90, p99), bytes the backend copies per 1080p flip with 1 exclusive + 3 shared
consumers, and vgpu-view's frames per second and CPU per frame.

Usage: plot_export.py EXPORT.json OUT.png   (Debian's python3-matplotlib)
"""
import json
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    data = json.load(open(sys.argv[1]))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    wake = data["wakeup"]
    quantiles = ["p50_us", "p90_us", "p99_us"]
    x = range(len(quantiles))
    for offset, (key, label) in enumerate((("eventfd", "plain eventfd, process to process"),
                                           ("flip", "flush kick to consumer wake-up"))):
        axes[0].bar([i + offset * 0.4 for i in x], [wake[key][q] for q in quantiles], 0.4, label=label)
    axes[0].axhline(50, color="grey", linestyle="--", linewidth=1, label="goal p50 50 us")
    axes[0].set_xticks([i + 0.2 for i in x], ["p50", "p90", "p99"])
    axes[0].set_ylabel("microseconds")
    axes[0].set_title("Wake-up latency (%d each)" % wake["flip"]["count"])
    axes[0].legend(fontsize=8)

    copies = data["copies"]
    axes[1].bar([c["config"] for c in copies], [c["bytes_copied_per_flip"] / 1e6 for c in copies])
    for i, c in enumerate(copies):
        axes[1].text(i, c["bytes_copied_per_flip"] / 1e6, "%.2f MB" % (c["bytes_copied_per_flip"] / 1e6),
                     ha="center", va="bottom")
    axes[1].set_ylabel("MB copied by the backend per flip")
    axes[1].set_title("1920x1080 flips, 1 exclusive + 3 shared consumers")

    view = data.get("view", {})
    if "frames_shown_per_s" in view:
        axes[2].bar(["frames shown / s", "CPU ms / frame"],
                    [view["frames_shown_per_s"], view["cpu_ms_per_frame"]], color=["C2", "C3"])
        axes[2].set_title("vgpu-view 1920x1080, %s\n(backend flipping at %.0f/s)"
                          % (view["renderer"], view["backend_flips_per_s"]))
    else:
        axes[2].text(0.5, 0.5, view.get("skipped", "no vgpu-view run"), ha="center")
    fig.suptitle("Export socket (bench_export, %s, %s cores)" % (data["date"][:10], data["cores"]))
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=90)


if __name__ == "__main__":
    main()
