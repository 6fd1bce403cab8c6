#!/usr/bin/python3
"""Plots of `sluice-bench run proxy` results (docs/benchmarks.md).

    /usr/bin/python3 scripts/plot-proxy.py bench/results/proxy-DATE.json [docs/img]

Writes, into the output directory (default docs/img), for the workloads
the file holds (keepalive, reuse, bulk, h2):
  proxy-req-per-s.png     requests/s per workload and gateway (bulk: MB/s)
  proxy-cpu-per-req.png   the gateway process's CPU µs per request, user and
                          system (bulk: per 1 MiB response)
  proxy-latency.png       p50 and p99 latency per workload (log scale)
  proxy-reuse.png         the 512-client reuse scenario: upstream
                          connections opened, the most established at once,
                          TIME_WAIT left at the gateway, errors (log scale)

Needs matplotlib (Debian: python3-matplotlib; scripts/install-deps.sh).
"""

import json
import os
import sys

from matplotlib import ticker
from plotlib import COLORS, SERVERS as GATEWAYS, by, cpu_stack, plt, save
WORKLOADS = [
    ("keepalive", "HTTP/1.1 → HTTP/1.1\n64 keep-alive clients"),
    ("reuse", "HTTP/1.1 → HTTP/1.1\n512 clients, 60 s"),
    ("h2", "TLS h2 → h2c\n64 clients × 10 streams"),
    ("bulk", "1 MiB responses\n16 clients"),
]


def present(ms):
    return [(w, label) for w, label in WORKLOADS if by(ms, w)]


def annotate(ax, bars, vals, fmt):
    # At the bar's drawn height: a zero drawn at 0.5 on a log scale still
    # says 0.
    for b, v in zip(bars, vals):
        ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, b.get_height()),
                    ha="center", va="bottom", fontsize=8)


def style(ax, title, ylabel):
    if ax.get_yscale() == "log":
        # Plain numbers, not 2×10^1.
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.margins(y=0.15)


def legend_outside(fig, ax):
    # In the title's row, right: inside a panel it covers a bar's label.
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", fontsize=7, ncol=2)


def plot_requests(ms, out):
    ws = present(ms)
    fig, axes = plt.subplots(1, len(ws), figsize=(3 * len(ws), 3.4), squeeze=False)
    for ax, (w, label) in zip(axes[0], ws):
        rows = by(ms, w)
        names = [g for g in GATEWAYS if g in rows]
        if w == "bulk":
            vals, unit, fmt = [rows[g]["mbytes_per_s"] for g in names], "MB/s", "{:,.0f}"
        else:
            vals, unit, fmt = [rows[g]["req_per_s"] for g in names], "requests/s", "{:,.0f}"
        bars = ax.bar(names, vals, color=[COLORS[g] for g in names])
        annotate(ax, bars, vals, fmt)
        style(ax, label, unit)
    save(fig, out, "proxy-req-per-s.png",
         "Proxied requests per second, one gateway core (higher is better)")


def plot_cpu(ms, out):
    ws = present(ms)
    fig, axes = plt.subplots(1, len(ws), figsize=(3 * len(ws), 3.4), squeeze=False)
    for ax, (w, label) in zip(axes[0], ws):
        cpu_stack(ax, by(ms, w), "{:,.1f}")
        if w == "reuse":
            # nginx's collapse (hundreds of µs) would flatten the others.
            ax.set_yscale("log")
        style(ax, label, "CPU µs per MiB response" if w == "bulk" else "CPU µs per request")
    legend_outside(fig, axes[0][0])
    save(fig, out, "proxy-cpu-per-req.png",
         "Gateway process CPU per request: user (solid) + system (hatched), "
         "lower is better")


def plot_latency(ms, out):
    ws = present(ms)
    fig, axes = plt.subplots(1, len(ws), figsize=(3 * len(ws), 3.4), squeeze=False)
    for ax, (w, label) in zip(axes[0], ws):
        rows = by(ms, w)
        names = [g for g in GATEWAYS if g in rows]
        xs = range(len(names))
        p50 = [rows[g]["latency_p50_us"] / 1000 for g in names]
        p99 = [rows[g]["latency_p99_us"] / 1000 for g in names]
        ax.bar([x - 0.2 for x in xs], p50, width=0.4,
               color=[COLORS[g] for g in names], label="p50")
        ax.bar([x + 0.2 for x in xs], p99, width=0.4,
               color=[COLORS[g] for g in names], alpha=0.45, hatch="//", label="p99")
        ax.set_xticks(list(xs), names)
        ax.set_yscale("log")
        style(ax, label, "ms")
    legend_outside(fig, axes[0][0])
    save(fig, out, "proxy-latency.png",
         "Latency at the client: p50 (solid), p99 (hatched), log scale")


def plot_reuse(ms, out):
    rows = by(ms, "reuse")
    if not rows:
        return
    names = [g for g in GATEWAYS if g in rows]
    panels = [
        ("upstream connections opened", lambda m: m["upstream_opened"]),
        ("most upstream connections at once", lambda m: m["upstream_estab_max"]),
        ("TIME_WAIT left at the gateway", lambda m: m["time_wait_gateway"]),
        ("errors (socket + non-2xx)", lambda m: m["errors"] + m["non_2xx"]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.4))
    for ax, (title, value) in zip(axes, panels):
        vals = [value(rows[g]) for g in names]
        # Zero has no place on a log scale: drawn at 0.5, labelled 0.
        bars = ax.bar(names, [max(v, 0.5) for v in vals], color=[COLORS[g] for g in names])
        annotate(ax, bars, vals, "{:,.0f}")
        ax.set_yscale("log")
        style(ax, title, "count (log)")
    save(fig, out, "proxy-reuse.png",
         "512 clients for 60 s against 64 pooled upstream connections: "
                 "connection churn")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    ms = json.load(open(sys.argv[1]))
    out = sys.argv[2] if len(sys.argv) > 2 else "docs/img"
    os.makedirs(out, exist_ok=True)
    plot_requests(ms, out)
    plot_cpu(ms, out)
    plot_latency(ms, out)
    plot_reuse(ms, out)
    print(f"wrote {out}/proxy-req-per-s.png, proxy-cpu-per-req.png, proxy-latency.png, "
          "proxy-reuse.png")


if __name__ == "__main__":
    main()
