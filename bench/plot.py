#!/usr/bin/env python3
"""Plots a Google Benchmark JSON file as an SVG bar chart of items per second (no dependencies)."""
import json
import sys


def main(src, dst):
    with open(src) as f:
        data = json.load(f)
    rows = [(b["name"], b.get("items_per_second", 0.0)) for b in data["benchmarks"] if b.get("run_type") != "aggregate"]
    if not rows:
        sys.exit(f"plot: no benchmarks in {src}")
    top = max(v for _, v in rows) or 1.0
    bar_h, gap, left, width = 28, 10, 260, 420
    height = len(rows) * (bar_h + gap) + 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 140}" height="{height}" font-family="sans-serif" font-size="13">',
           f'<text x="10" y="22" font-size="15">{data["context"].get("executable", "benchmark")}: items per second (higher is better)</text>']
    for i, (name, value) in enumerate(rows):
        y = 40 + i * (bar_h + gap)
        w = max(1, int(width * value / top))
        out.append(f'<text x="10" y="{y + 19}">{name}</text>')
        out.append(f'<rect x="{left}" y="{y}" width="{w}" height="{bar_h}" fill="#4472c4"/>')
        out.append(f'<text x="{left + w + 6}" y="{y + 19}">{value:,.0f}/s</text>')
    out.append("</svg>")
    with open(dst, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
