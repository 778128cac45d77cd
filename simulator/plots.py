"""PNG plots written next to the numbers (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .results import Result

__all__ = ["iteration_plot", "table_plots", "timeline_plot"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def iteration_plot(result: Result, path: Path) -> None:
    """Per-iteration time split into compute, exposed communication and waiting (mean over workers)."""
    plt = _pyplot()
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
    ax.bar(x, comp / counts, label="compute")
    ax.bar(x, comm / counts, bottom=comp / counts, label="exposed communication")
    ax.bar(x, wait / counts, bottom=(comp + comm) / counts, label="waiting (peers, inputs)")
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
    plt = _pyplot()
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
    plt = _pyplot()
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
    plt = _pyplot()
    if servers:
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw={"width_ratios": [3, 1]})
    else:
        fig, a = plt.subplots(figsize=(8.5, 3.6))
    x = np.array([r["rank"] for r in rows])
    comp = np.array([r["compute_s"] for r in rows])
    comm = np.array([r["communication_s"] for r in rows])
    wait = np.array([r["wait_s"] for r in rows])
    width = 0.8 if len(x) <= 64 else 1.0
    a.bar(x, comp, width=width, label="compute")
    a.bar(x, comm, width=width, bottom=comp, label="exposed communication" + (" (pull, push, queue)" if servers else ""))
    a.bar(x, wait, width=width, bottom=comp + comm, label="waiting (peers, inputs)")
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
    plt = _pyplot()
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
