"""What plot-tls.py and plot-proxy.py share: colours, row lookup, the
stacked user + system CPU bars, and writing a figure.

Imported from the scripts' own directory (Python puts it on sys.path).
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402,F401  (re-exported for the scripts)

COLORS = {"haproxy": "#8c8c8c", "nginx": "#4c9a2a", "sluice": "#1f5fa8"}
SERVERS = ["haproxy", "nginx", "sluice"]


def by(ms, workload):
    """The measurements of one workload, by server (`mode`)."""
    return {m["mode"]: m for m in ms if m["workload"] == workload}


def cpu_stack(ax, rows, fmt="{:.1f}"):
    """User (solid) and system (hatched) CPU µs per request, stacked, with
    the total above each bar."""
    names = [s for s in SERVERS if s in rows]
    user = [rows[s]["proc_user_us_per_req"] for s in names]
    sys_ = [rows[s]["proc_sys_us_per_req"] for s in names]
    ax.bar(names, user, color=[COLORS[s] for s in names], label="user")
    ax.bar(names, sys_, bottom=user, color=[COLORS[s] for s in names],
           alpha=0.45, hatch="//", label="system")
    for i, (u, s) in enumerate(zip(user, sys_)):
        ax.annotate(fmt.format(u + s), (i, u + s), ha="center", va="bottom", fontsize=8)


def save(fig, out, name, title):
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out, name), dpi=110)
    plt.close(fig)
