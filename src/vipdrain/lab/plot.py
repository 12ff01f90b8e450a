"""The timeline picture: one row per VM (lifecycle steps, VIP holder), client requests as dots.

matplotlib is only needed here (the `demo` extra), never on a BOSH VM.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vipdrain.lab.bosh import Step
from vipdrain.lab.observer import Interval
from vipdrain.lab.records import Request

#: Lifecycle phases as drawn; a VM is "serving" whenever no step covers it.
STEP_COLOURS = {
    "drain": "#f0a030",
    "stop": "#c03030",
    "update": "#909090",
    "recreate": "#909090",
    "pre-start": "#6080d0",
    "start": "#6080d0",
    "post-start": "#80a0e0",
    "post-deploy": "#a0d0a0",
    "reboot": "#c03030",
}
OUTCOME_COLOURS = {"ok": "#2a9d2a", "refused": "#d62728", "reset": "#9467bd", "timeout": "#ff7f0e",
                   "wrong_answer": "#8c564b"}




def plot_timeline(
    path: Path,
    vms: Sequence[str],
    steps: Sequence[Step],
    requests: Sequence[Request],
    holders: Sequence[Interval],
    title: str,
    origin: float | None = None,
) -> Path:
    """Write the PNG and return its path. Times are `time.time()`; drawn relative to `origin`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    t0 = origin if origin is not None else min([s.start for s in steps] + [r.time for r in requests] or [0.0])
    end = max([s.end for s in steps] + [r.end for r in requests] + [t0 + 1])
    rows = list(vms)
    fig, (ax, ax_req) = plt.subplots(
        2, 1, figsize=(13, 1.2 + 0.7 * len(rows) + 2.2), sharex=True, gridspec_kw={"height_ratios": [len(rows) + 1, 2]}
    )
    for i, vm in enumerate(rows):
        y = len(rows) - i
        ax.barh(y, end - t0, left=0, height=0.5, color="#d8efd8", edgecolor="none")  # serving
        for s in (s for s in steps if s.vm == vm):
            colour = STEP_COLOURS.get(s.step, "#cccccc")
            ax.barh(y, max(s.end - s.start, 0.05), left=s.start - t0, height=0.5, color=colour,
                    edgecolor="black" if not s.ok else "none")
        for iv in holders:
            if vm in iv.holders:
                ax.plot([iv.start - t0, iv.end - t0], [y + 0.33, y + 0.33], color="black", linewidth=4,
                        solid_capstyle="butt")
    ax.set_yticks(range(len(rows), 0, -1), rows)
    ax.set_title(title)
    legend = [Patch(color=c, label=k) for k, c in STEP_COLOURS.items() if any(s.step == k for s in steps)]
    legend += [Patch(color="#d8efd8", label="serving"), Patch(color="black", label="holds the VIP")]
    ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)

    vm_rows = {vm: i for i, vm in enumerate(rows)}
    for outcome, colour in OUTCOME_COLOURS.items():
        pts = [r for r in requests if r.outcome == outcome]
        if not pts:
            continue
        ys = [vm_rows.get(r.vm or "", -1) for r in pts]
        ax_req.scatter([r.time - t0 for r in pts], ys, s=4 if outcome == "ok" else 14, color=colour,
                       label=f"{outcome} ({len(pts)})", zorder=3 if outcome != "ok" else 2)
    ax_req.set_yticks([-1, *range(len(rows))], ["failed", *rows])
    ax_req.set_ylabel("answered by")
    ax_req.set_xlabel("seconds")
    ax_req.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    ax_req.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
