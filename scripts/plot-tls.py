#!/usr/bin/python3
"""Plots of `sluice-bench run tls` results (docs/benchmarks.md).

    /usr/bin/python3 scripts/plot-tls.py bench/results/tls-DATE.json [docs/img]

Writes, into the output directory (default docs/img):
  tls-req-per-s.png    requests/s per workload and server
  tls-cpu-per-req.png  the server process's CPU µs per request, user and system
  tls-download-idle.png  download MB/s and CPU µs/MB; RSS per idle connection

Needs matplotlib (Debian: python3-matplotlib; scripts/install-deps.sh).
"""

import json
import os
import sys

from plotlib import COLORS, SERVERS, by, cpu_stack, plt, save
REQUEST_WORKLOADS = [
    ("h2", "TLS + h2\nkeep-alive"),
    ("h1", "TLS + HTTP/1.1\nkeep-alive"),
    ("full", "full handshake\nper request"),
    ("resume", "resumed handshake\nper request"),
]


def bar_panel(ax, rows, value, title, ylabel, fmt="{:,.0f}"):
    names = [s for s in SERVERS if s in rows]
    vals = [value(rows[s]) for s in names]
    bars = ax.bar(names, vals, color=[COLORS[s] for s in names])
    for b, v in zip(bars, vals):
        ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, v),
                    ha="center", va="bottom", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.margins(y=0.15)


def plot_requests(ms, out):
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    for ax, (w, label) in zip(axes, REQUEST_WORKLOADS):
        bar_panel(ax, by(ms, w), lambda m: m["req_per_s"], label, "requests/s")
    save(fig, out, "tls-req-per-s.png",
         "TLS 1.3 requests per second, one server core (higher is better)")


def plot_cpu(ms, out):
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    for ax, (w, label) in zip(axes, REQUEST_WORKLOADS):
        cpu_stack(ax, by(ms, w))
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("CPU µs per request", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.margins(y=0.15)
    axes[0].legend(fontsize=7, loc="upper left")
    save(fig, out, "tls-cpu-per-req.png",
         "Server process CPU per request: user (solid) + system (hatched), lower is better")


def plot_download_idle(ms, out):
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.4))
    dl = by(ms, "download")
    bar_panel(axes[0], dl, lambda m: m["mbytes_per_s"], "100 MB download\n(MB/s, higher is better)",
              "MB/s", "{:,.1f}")
    bar_panel(axes[1], dl, lambda m: m["cpu_us_per_mb"], "download CPU per MB\n(lower is better)",
              "CPU µs per MB")
    bar_panel(axes[2], by(ms, "idle-h1"), lambda m: m["rss_bytes_per_conn"],
              "idle TLS + HTTP/1.1\n(RSS bytes per connection)", "bytes")
    bar_panel(axes[3], by(ms, "idle-h2"), lambda m: m["rss_bytes_per_conn"],
              "idle TLS + h2\n(RSS bytes per connection)", "bytes")
    save(fig, out, "tls-download-idle.png",
         "Download and memory per idle connection (HAProxy serves no files)")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ms = json.load(open(sys.argv[1]))
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/img"
    os.makedirs(out, exist_ok=True)
    plot_requests(ms, out)
    plot_cpu(ms, out)
    plot_download_idle(ms, out)
    print(f"wrote {out}/tls-req-per-s.png, tls-cpu-per-req.png, tls-download-idle.png")


if __name__ == "__main__":
    main()
