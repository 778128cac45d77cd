"""PNG plots written next to the numbers (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .results import Result

__all__ = ["iteration_plot"]


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
    ax.bar(x, wait / counts, bottom=(comp + comm) / counts, label="waiting for peers")
    ax.set_xlabel("iteration")
    ax.set_ylabel("seconds (mean over workers)")
    ax.set_title(f"{result.summary['name']}: {result.summary['workers']} workers, {result.summary['algorithm']}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
