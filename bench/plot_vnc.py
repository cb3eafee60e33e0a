#!/usr/bin/env python3
"""Plots bench_vnc's JSON (bench/results/vnc.json): flip-to-client latency (p50, p99), vgpu-vnc's
CPU per update and the updates per second one client gets, per guest (2D, blob), damage
(1920x1080, 256x256) and encoding (raw, tight, zrle); and the backend's CPU per flip with and
without vgpu-vnc.

Usage: plot_vnc.py VNC.json OUT.png   (Debian's python3-matplotlib)
"""
import json
import sys

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    data = json.load(open(sys.argv[1]))
    runs = data["runs"]
    groups = []
    for r in runs:
        key = (r["guest"], r["damage"])
        if key not in groups:
            groups.append(key)
    encodings = ["raw", "tight", "zrle"]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    width = 0.8 / len(encodings)

    def run(key, encoding):
        return next(r for r in runs if (r["guest"], r["damage"]) == key and r["encoding"] == encoding)

    labels = [f"{g}\n{d}" for g, d in groups]
    for e, encoding in enumerate(encodings):
        xs = [i + e * width for i in range(len(groups))]
        axes[0].bar(xs, [run(k, encoding)["latency"]["p50_us"] / 1000 for k in groups], width, color=f"C{e}",
                    label=f"{encoding} p50")
        axes[0].bar(xs, [run(k, encoding)["latency"]["p99_us"] / 1000 for k in groups], width, color=f"C{e}",
                    alpha=0.3, label=f"{encoding} p99")
        axes[1].bar(xs, [run(k, encoding)["vnc_cpu_per_update_us"] / 1000 for k in groups], width, color=f"C{e}",
                    label=encoding)
        axes[2].bar(xs, [run(k, encoding)["streaming"]["updates_per_s"] for k in groups], width, color=f"C{e}",
                    label=encoding)
    axes[0].set_title("flip to client (serial), ms")
    axes[1].set_title("vgpu-vnc CPU per update, ms")
    axes[2].set_title("updates per second to one client\n(frontend flipping as fast as it can)")
    base = {(b["guest"], b["damage"]): b for b in data["baseline"]}
    xs = range(len(groups))
    axes[3].bar([x - 0.2 for x in xs], [base[k]["backend_cpu_per_flip_us"] for k in groups], 0.4,
                label="no vgpu-vnc", color="C7")
    axes[3].bar([x + 0.2 for x in xs], [run(k, "raw")["streaming"]["backend_cpu_per_flip_us"] for k in groups], 0.4,
                label="vgpu-vnc + a raw client", color="C0")
    axes[3].set_title("backend CPU per flip, µs")
    for ax in axes:
        ax.set_xticks([i + width for i in range(len(groups))] if ax is not axes[3] else list(xs))
        ax.set_xticklabels(labels)
        ax.legend(fontsize=8)
    fig.suptitle(f"vgpu-vnc on {data['cores']} cores (frontend, backend, vgpu-vnc and client share them)")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=80)


if __name__ == "__main__":
    main()
