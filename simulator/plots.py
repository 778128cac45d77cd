"""PNG plots written next to the numbers (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .results import Result

__all__ = ["iteration_plot", "links_plot", "pipeline_plot", "pipeline_rows", "pyplot", "run_plots", "table_plots",
           "timeline_plot"]


def pyplot():
    """matplotlib's pyplot on the Agg backend (files only), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _stacked_bars(ax, x: np.ndarray, layers: list[np.ndarray], labels: list[str], width: float = 0.8) -> None:
    """Bars at ``x`` stacked layer on layer (colours C0, C1, ...), each layer one ``PolyCollection``: the same
    rectangles as ``ax.bar``, which makes a patch per bar (~1 ms each to make and lay out: seconds for a few
    thousand devices or iterations)."""
    from matplotlib.collections import PolyCollection

    left, right = x - width / 2, x + width / 2
    bottom = np.zeros(len(x))
    for k, (values, label) in enumerate(zip(layers, labels, strict=True)):
        top = bottom + values
        corners = [(left, bottom), (left, top), (right, top), (right, bottom)]
        verts = np.stack([np.column_stack(c) for c in corners], axis=1)
        bars = PolyCollection(verts, facecolors=f"C{k}", edgecolors="none", label=label)
        bars.sticky_edges.y.append(0.0)           # as bars: the axis starts at zero, no margin below
        ax.add_collection(bars)
        bottom = top
    ax.autoscale_view()


def iteration_plot(result: Result, path: Path) -> None:
    """Per-iteration time split into compute, exposed communication and waiting (mean over workers)."""
    plt = pyplot()
    its = 1 + max((r.iteration for r in result.iterations), default=0)   # a faulted run: its failure-free probe
    comp, comm, wait = np.zeros(its), np.zeros(its), np.zeros(its)
    counts = np.zeros(its)
    for r in result.iterations:
        comp[r.iteration] += r.compute_s
        comm[r.iteration] += r.comm_exposed_s
        wait[r.iteration] += r.wait_s
        counts[r.iteration] += 1
    counts[counts == 0] = 1
    x = np.arange(its)
    fig, ax = plt.subplots(figsize=(8.5, 3.5))
    _stacked_bars(ax, x, [comp / counts, comm / counts, wait / counts],
                  ["compute", "exposed communication", "waiting (peers, inputs)"])
    ax.set_xlabel("iteration")
    ax.set_ylabel("seconds (mean over devices)")
    ax.set_title(f"{result.summary['name']}: {result.summary['workers']} devices, {result.summary['algorithm']}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_plots(result: Result, folder: Path) -> None:
    """Plots of the optional tables: loss curves, staleness histogram, per-worker time, servers."""
    tables = result.tables
    if tables.get("convergence"):
        loss_plot(tables["convergence"], result.summary, folder / "loss.png")
    if tables.get("staleness"):
        staleness_plot(tables["staleness"], result.summary, folder / "staleness.png")
    if tables.get("workers"):
        workers_plot(tables["workers"], tables.get("servers", []), result.summary, folder / "workers.png")
    if tables.get("timeline"):
        timeline_plot(tables["timeline"], tables.get("failures", []), result.summary, folder / "timeline.png")


def loss_plot(rows: list[dict], summary: dict, path: Path) -> None:
    """Loss against gradients applied (statistical efficiency) and against simulated time (both)."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    grads = np.array([r["gradients"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    a.plot(grads, loss, marker=".")
    a.set_xlabel("worker gradients applied")
    a.set_ylabel("training loss")
    b.plot([r["time_s"] for r in rows], loss, marker=".", color="C1")
    b.set_xlabel("simulated time (s)")
    target = summary.get("time_to_target_s")
    if target is not None:
        b.axvline(target, color="grey", linestyle="--", linewidth=1, label=f"target reached at {target:.3g} s")
        b.legend(fontsize="small")
    extra = "".join(f", {summary[k]}" for k in ("compression", "sync") if isinstance(summary.get(k), str))
    fig.suptitle(f"{summary['name']}: {summary['algorithm']}{extra}, {summary['workers']} workers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def staleness_plot(rows: list[dict], summary: dict, path: Path) -> None:
    plt = pyplot()
    s = np.array([r["staleness"] for r in rows])
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.hist(s, bins=np.arange(s.max() + 2) - 0.5 if s.max() < 60 else 50)
    ax.set_xlabel("staleness (updates the model received between pull and push)")
    ax.set_ylabel("updates")
    ax.set_title(f"{summary['name']}: mean {s.mean():.2f}, max {s.max()}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def workers_plot(rows: list[dict], servers: list[dict], summary: dict, path: Path) -> None:
    """Per-device compute, exposed communication and wait (stacked), and each server's utilisation."""
    plt = pyplot()
    if servers:
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    else:
        fig, a = plt.subplots(figsize=(8.5, 3.6))
    x = np.array([r["rank"] for r in rows])
    comp = np.array([r["compute_s"] for r in rows])
    comm = np.array([r["communication_s"] for r in rows])
    wait = np.array([r["wait_s"] for r in rows])
    width = 0.8 if len(x) <= 64 else 1.0
    _stacked_bars(a, x, [comp, comm, wait], ["compute", "exposed communication" + (" (pull, push, queue)" if servers
                                                                                  else ""), "waiting (peers, inputs)"],
                  width)
    a.set_xlabel("device rank")
    a.set_ylabel("seconds per iteration")
    fig.legend(*a.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize="small", frameon=False)
    if servers:
        b.bar([s["server"] for s in servers], [s["utilization"] for s in servers], color="C3")
        b.set_ylim(0, 1)
        b.set_xlabel("server")
        b.set_ylabel("utilisation")
        b.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"{summary['name']}: {summary['algorithm']}")
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


_PHASE_COLOURS = {"train": "C2", "lost": "C3", "checkpoint": "C0", "detection": "C1", "restart": "C4",
                  "waiting": "C7"}


def timeline_plot(rows: list[dict], failures: list[dict], summary: dict, path: Path) -> None:
    """A faulted run over simulated time: progress (iterations kept, with the failure-free line), throughput,
    and where the time went (training, lost work, checkpoints, detection, restarts, waiting), failures marked."""
    plt = pyplot()
    failures = [f for f in failures if f.get("replication", 0) == 0]     # the replication the timeline shows
    wall = max(r["end_s"] for r in rows)
    scale, unit = next((s, u) for s, u in ((86400.0, "days"), (3600.0, "hours"), (60.0, "minutes"), (1.0, "s"))
                       if wall >= 3 * s or s == 1.0)
    fig, (a, b, c) = plt.subplots(3, 1, figsize=(10, 6.4), sharex=True, gridspec_kw={"height_ratios": [3, 2, 1]})
    xs, ys = [], []
    for r in rows:
        xs += [r["start_s"] / scale, r["end_s"] / scale]
        ys += [r["iterations_done"] - (r["iterations"] if r["phase"] in ("train", "lost") else 0), r["iterations_done"]]
    a.plot(xs, ys, color="C2", linewidth=1.2, label="iterations kept")
    ideal = summary["throughput_samples_per_s"]
    total = summary["iterations"]
    per_iteration = summary["iteration_time_s"]
    a.plot([0, min(wall, total * per_iteration) / scale], [0, min(total, wall / per_iteration)], color="grey",
           linestyle="--", linewidth=1, label="without failures")
    a.set_ylabel("iterations")
    a.legend(loc="upper left", fontsize="small")
    for r in rows:
        if r["phase"] in ("train", "lost") and r["end_s"] > r["start_s"]:
            rate = r["samples"] / (r["end_s"] - r["start_s"])
            b.hlines(rate, r["start_s"] / scale, r["end_s"] / scale, color=_PHASE_COLOURS[r["phase"]], linewidth=2)
    b.axhline(ideal, color="grey", linestyle="--", linewidth=1)
    b.set_ylabel("samples/s")
    b.set_ylim(bottom=0)
    for kind, colour in _PHASE_COLOURS.items():
        spans = [(r["start_s"] / scale, (r["end_s"] - r["start_s"]) / scale) for r in rows if r["phase"] == kind]
        if spans:
            c.broken_barh(spans, (0, 1), facecolors=colour, label=kind)
    for f in failures:
        if f["event"] in ("failure", "degrade"):
            for ax in (a, b, c):
                ax.axvline(f["time_s"] / scale, color="C3", linewidth=0.6, alpha=0.6)
    c.set_yticks([])
    c.set_xlabel(f"simulated time ({unit})")
    c.legend(loc="upper center", bbox_to_anchor=(0.5, -0.9), ncol=6, fontsize="small", frameon=False)
    hits = sum(1 for f in failures if f["event"] in ("failure", "degrade"))
    kept = sum(r["samples"] for r in rows if r["phase"] == "train") / ideal
    title = f"{summary['name']}: {hits} failures, goodput {kept / wall:.3f}"
    if summary.get("replications", 1) > 1:
        title = (f"{summary['name']}, replication 0 of {summary['replications']}: {hits} failures, goodput "
                 f"{kept / wall:.3f} (mean over all: {summary['failures']:.1f} failures, "
                 f"goodput {summary['goodput']:.3f})")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- plots that answer a question; each returns the numbers it drew (tests compare them with the summary) ---


def _time_scale(seconds: float) -> tuple[float, str]:
    """A unit that keeps the axis numbers readable: (seconds per unit, unit)."""
    for scale, unit in ((3600.0, "h"), (60.0, "min"), (1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if seconds >= 3 * scale:
            return scale, unit
    return 1e-6, "µs"


def pipeline_rows(result: Result) -> dict | None:
    """One iteration of the pipeline from the trace: per stage, its ops as (start, end, kind), and the idle share.

    A stage's row is the lowest traced device that runs it (replica 0's stages come first in the trace).
    The window is the summary's: from the iteration's first forward to its last backward, over the rows.
    An op's bar is its busy time (``compute_s`` + ``tensor_comm_s`` of the trace span), drawn up to its end:
    a wait for parameters inside an op is idle, as ``pipeline_bubble_fraction`` counts it. ``None`` when
    the run has no pipeline (or the trace misses a stage: ``output.trace_ranks`` too small).
    """
    stages = int(result.summary.get("pipeline_parallel", 1) or 1)
    if stages < 2:
        return None
    ops = [e for e in result.trace.events if e.get("ph") == "X" and "stage" in e.get("args", {})
           and e["name"][:1] in "FB"]
    if not ops:
        return None
    iteration = max(e["args"]["iteration"] for e in ops)
    device_of: dict[int, int] = {}
    for e in ops:
        s = e["args"]["stage"]
        device_of[s] = min(device_of.get(s, e["tid"]), e["tid"])
    if len(device_of) < stages:
        return None
    rows: list[list[tuple[float, float, str, int]]] = [[] for _ in range(stages)]
    for e in ops:
        a = e["args"]
        if a["iteration"] == iteration and device_of[a["stage"]] == e["tid"]:
            end = (e["ts"] + e["dur"]) * 1e-6
            busy = float(a.get("compute_s", 0.0)) + float(a.get("tensor_comm_s", 0.0))
            rows[a["stage"]].append((end - busy, end, e["name"][0], int(a.get("microbatch", 0))))
    start = min(op[0] for row in rows for op in row)
    end = max(op[1] for row in rows for op in row if op[2] == "B")
    busy = sum(min(b, end) - max(a, start) for row in rows for a, b, *_ in row if b > start and a < end)
    span = end - start
    return {"iteration": int(iteration), "window": (start, end), "stages": stages,
            "devices": [device_of[s] for s in range(stages)], "rows": rows, "busy_s": busy,
            "idle_fraction": max(0.0, 1.0 - busy / (stages * span)) if span > 0 else 0.0}


def pipeline_plot(result: Result, path: Path) -> dict | None:
    """Gantt chart of one iteration: stage on y, time on x, forward / backward / idle (the bubble) coloured."""
    data = pipeline_rows(result)
    if data is None:
        return None
    plt = pyplot()
    summary, stages, rows = result.summary, data["stages"], data["rows"]
    start, end = data["window"]
    scale, unit = _time_scale(end - start)
    fig, ax = plt.subplots(figsize=(10, 0.42 * stages + 2.0))
    colours = {"F": "#4C72B0", "B": "#DD8452"}
    for s, row in enumerate(rows):
        ax.broken_barh([(0, (end - start) / scale)], (s - 0.4, 0.8), facecolors="#EEEEEE", edgecolor="#BBBBBB",
                       hatch="///", linewidth=0)
        for kind in "FB":
            bars = [((a - start) / scale, (b - a) / scale) for a, b, k, _ in row if k == kind]
            ax.broken_barh(bars, (s - 0.4, 0.8), facecolors=colours[kind], edgecolor="white", linewidth=0.3)
        if len(row) <= 64:
            for a, b, _, m in row:
                if (b - a) / (end - start) > 0.012:
                    ax.text((a + b) / 2 / scale - start / scale, s, str(m), ha="center", va="center", fontsize=6,
                            color="white")
    ax.set_yticks(range(stages), [f"stage {s} (device {d})" for s, d in enumerate(data["devices"])], fontsize=8)
    ax.set_ylim(stages - 0.5, -0.5)
    ax.set_xlim(0, (end - start) / scale)
    ax.set_xlabel(f"time since the iteration's first forward ({unit})")
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colours["F"], label="forward"),
               Patch(facecolor=colours["B"], label="backward"),
               Patch(facecolor="#EEEEEE", edgecolor="#BBBBBB", hatch="///", label="idle (bubble)")]
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize="small", frameon=False)
    ax.set_title(f"{summary['name']}: {summary.get('schedule', '')}, {stages} stages × "
                 f"{int(summary.get('microbatches', 1))} microbatches (numbers in the bars)\n"
                 f"iteration {data['iteration']}: idle (the bubble) {data['idle_fraction']:.1%} of stage time\n",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return data


_KIND_LABELS = {"data_parallel": "data-parallel gradients", "tensor_parallel": "tensor-parallel all-reduces",
                "pipeline": "pipeline sends"}


def links_plot(traffic, summary: dict, path: Path, top: int = 12) -> dict:
    """The busiest directed links: share of capacity × iteration time their bytes take, by kind of traffic."""
    from .link_traffic import busiest

    plt = pyplot()
    iteration_s = float(summary["iteration_time_s"])
    rows = busiest(traffic, iteration_s, top)
    index = {name: i for i, name in enumerate(traffic.names)}
    fig, ax = plt.subplots(figsize=(10, 0.38 * max(len(rows), 1) + 1.8))
    left = np.zeros(len(rows))
    for k, (kind, per_link) in enumerate(traffic.kind_bytes.items()):
        share = np.array([per_link[index[r["link"]]] / (r["capacity_bytes_per_s"] * iteration_s) for r in rows])
        if share.any():
            ax.barh(range(len(rows)), 100 * share, left=100 * left, color=f"C{k}", label=_KIND_LABELS.get(kind, kind))
        left += share
    for i, r in enumerate(rows):
        label = f"  {_bytes(r['bytes_per_iteration'])} at {_bytes(r['capacity_bytes_per_s'])}/s"
        ax.text(100 * r["utilisation"], i, label, va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [r["link"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(100.0, 100 * float(left.max(initial=0)) * 1.35))
    ax.set_xlabel(f"busy share of one iteration ({iteration_s * 1e3:.4g} ms): bytes ÷ (capacity × iteration time), %")
    ax.axvline(100, color="grey", linestyle="--", linewidth=0.8)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize="small", frameon=False)
    busy = traffic.utilisation(iteration_s)
    ties = int(np.sum(np.isclose(busy, busy.max(), rtol=1e-3))) if rows else 0
    tie = f"; {ties} links tie at the top" if ties > len(rows) else ""
    ax.set_title(f"{summary['name']}: the {len(rows)} busiest of {len(traffic.names)} directed links "
                 f"({_bytes(traffic.sent)} sent per iteration{tie})\n", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"rows": rows, "total_link_bytes": float(traffic.bytes.sum()), "flow_byte_hops": traffic.flow_byte_hops,
            "sent": traffic.sent}


def _bytes(n: float) -> str:
    from .formatting import with_unit

    return with_unit("x_bytes", float(n))


def run_plots(result: Result, folder: Path) -> dict[str, object]:
    """Every plot a run can answer, into ``folder``; returns {file name: the numbers drawn, or None}.

    ``notes`` (a key of the returned mapping) says, for a plot left out, why.
    """
    folder.mkdir(parents=True, exist_ok=True)
    drawn: dict[str, object] = {}
    iteration_plot(result, folder / "iterations.png")
    drawn["iterations.png"] = None
    table_plots(result, folder)
    gantt = pipeline_plot(result, folder / "pipeline.png")
    if gantt is not None:
        drawn["pipeline.png"] = gantt
    notes: dict[str, str] = {}
    traffic, why = _traffic(result)
    if traffic is not None and traffic.sent > 0:
        drawn["links.png"] = links_plot(traffic, result.summary, folder / "links.png")
    else:
        notes["links.png"] = why or "no bytes cross the network"
    drawn["notes"] = notes
    return drawn


def _traffic(result: Result):
    context = getattr(result, "context", None) or {}
    config = context.get("config")
    if config is None:
        return None, "the run's config is not at hand (a Result built outside simulate())"
    from .link_traffic import link_traffic

    traffic, why = link_traffic(config, context.get("hardware"), context.get("network"), context.get("plan"))
    if traffic is None:
        return None, why
    expected = float(result.summary.get("bytes_sent_per_iteration", traffic.sent))
    if not np.isclose(traffic.sent, expected, rtol=1e-6):
        return None, f"the rebuilt collectives carry {traffic.sent:.6g} B, the summary says {expected:.6g} B"
    return traffic, ""
