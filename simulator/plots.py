"""PNG plots written next to the numbers (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .results import Result

__all__ = ["iteration_plot", "table_plots"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def iteration_plot(result: Result, path: Path) -> None:
    """Per-iteration time split into compute, exposed communication and waiting (mean over workers)."""
    plt = _pyplot()
    its = result.summary["iterations"]
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
    fig.suptitle(f"{summary['name']}: {summary['algorithm']}, {summary['workers']} workers")
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
