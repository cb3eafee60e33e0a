#!/usr/bin/env python3
"""Plots bench_export's JSON (bench/results/export.json): flip-to-wake-up against a plain
eventfd (p50, p99; split at the backend's signal; scheduler-placed and consumer-pinned), bytes the backend copies per 1080p flip with 1 exclusive + 3 shared
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
    series = [("eventfd", "plain\neventfd"), ("kick_to_signal", "kick to\nsignal"),
              ("signal_to_wakeup", "signal to\nwake-up"), ("flip", "kick to\nwake-up")]
    runs = [(data["wakeup"], "scheduler places"), (data.get("wakeup_pinned"), "consumer pinned")]
    runs = [(r, name) for r, name in runs if r]
    width = 0.8 / (2 * len(runs))
    bar = 0
    for r, name in runs:
        for q, style in (("p50_us", {}), ("p99_us", {"hatch": "//", "alpha": 0.6})):
            axes[0].bar([i + bar * width for i in range(len(series))],
                        [r[key][q] for key, _ in series], width, color="C%d" % (bar // 2 * 2),
                        label="%s, %s (p99/p50 %.2f)" % (name, q[:3], r["flip"]["p99_us"] / r["flip"]["p50_us"])
                        if q == "p99_us" else "%s, %s" % (name, q[:3]), **style)
            bar += 1
    axes[0].axhline(50, color="grey", linestyle="--", linewidth=1, label="goal p50 50 us")
    axes[0].set_xticks([i + 0.4 - width / 2 for i in range(len(series))], [label for _, label in series])
    axes[0].set_ylabel("microseconds")
    axes[0].set_title("Flush kick to consumer wake-up (%d each, median of %d rounds)"
                      % (data["wakeup"]["flip"]["count"], data["wakeup"].get("rounds", 1)))
    axes[0].legend(fontsize=7)

    copies = data["copies"]
    axes[1].bar([c["config"] for c in copies], [c["bytes_copied_per_flip"] / 1e6 for c in copies])
    for i, c in enumerate(copies):
        axes[1].text(i, c["bytes_copied_per_flip"] / 1e6, "%.2f MB" % (c["bytes_copied_per_flip"] / 1e6),
                     ha="center", va="bottom")
    axes[1].set_ylabel("MB copied by the backend per flip")
    axes[1].set_title("1920x1080 flips, 1 exclusive + 3 shared consumers")

    views = data.get("view", [])
    views = views if isinstance(views, list) else [views]
    views = [v for v in views if "frames_shown_per_s" in v]
    if views:
        for i, v in enumerate(views):
            label = "guest %s (%.0f/s done)" % (v["guest"], v["backend_flips_per_s"])
            axes[2].bar([j + i * 0.4 for j in range(2)], [v["frames_shown_per_s"], v["cpu_ms_per_frame"]],
                        0.4, label=label, color="C%d" % (2 + i))
            for j, value in enumerate((v["frames_shown_per_s"], v["cpu_ms_per_frame"])):
                axes[2].text(j + i * 0.4, value, "%.1f" % value, ha="center", va="bottom", fontsize=8)
        axes[2].set_xticks([0.2, 1.2], ["frames shown / s", "CPU ms / frame"])
        axes[2].set_title("vgpu-view 1920x1080, %s" % views[0]["renderer"])
        axes[2].legend(fontsize=8)
    else:
        axes[2].text(0.5, 0.5, "no vgpu-view run", ha="center")
    fig.suptitle("Export socket (bench_export, %s, %s cores)" % (data["date"][:10], data["cores"]))
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=90)


if __name__ == "__main__":
    main()
