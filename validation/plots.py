"""``predicted_vs_measured.png``: log-log time vs size, measured as points, prediction as lines.

One panel per algorithm (and one for the MPI reference), one colour per rank count. Filled
markers were fitted, hollow ones held out, a red cross marks a point too noisy to judge a
model (``validation.compare.is_noisy``); bars span the 10th-90th percentile of the
repetitions; dotted verticals mark the profile's regime boundaries, dashed ones the sizes at
which a step's working set stops fitting a cache (for the panel's first rank count).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .records import MPI

if TYPE_CHECKING:
    from .compare import Comparison

__all__ = ["predicted_vs_measured"]


def _line(comparison: Comparison, algorithm: str, collective: str, ranks: int, lo: int,
          hi: int) -> tuple[np.ndarray, np.ndarray]:
    from .compare import predict

    sizes = np.unique(np.geomspace(lo, hi, 96).round().astype(int))
    profile = comparison.profile
    if algorithm == MPI:
        from .compare import mpi_candidates

        algs = mpi_candidates(profile, collective)
        t = [min(predict(profile, a, ranks, int(s), collective) for a in algs) for s in sizes]
    else:
        t = [predict(profile, algorithm, ranks, int(s), collective) for s in sizes]
    return sizes, np.asarray(t)


def _cache_edges(comparison: Comparison, algorithm: str, collective: str, ranks: list[int]) -> list[tuple[str, int]]:
    """The smallest measured message size at which the schedule's working set outgrows each of the profile's caches
    (first rank count of the panel), from :func:`~simulator.collectives.analytic.physical_features`: a shared cache
    starts to spill, a private one stops holding all of what a peer reads."""
    from simulator.collectives import schedule
    from simulator.collectives.analytic import physical_features

    profile = comparison.profile
    if algorithm == MPI or not profile.caches or not ranks:
        return []
    sizes = sorted({r["size_bytes"] for r in comparison.rows if r["algorithm"] == algorithm})
    out = []
    for level, c in profile.caches.items():
        for n in sizes:
            f = physical_features(schedule(algorithm, ranks[0], n, collective), profile.cache_terms)
            if (f[f"beyond_{level}"] > 0 if c.shared_by_cpus > 1 else f[f"peer_{level}"] < f["moved"] + f["staged"]):
                out.append((level, n))
                break
    return out


def predicted_vs_measured(comparison: Comparison, path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = comparison.rows
    panels = sorted({(r["algorithm"], r["collective"]) for r in rows}, key=lambda a: (a[0] == MPI, a))
    ranks_all = sorted({r["ranks"] for r in rows})
    colours = {p: plt.get_cmap("tab10")(i % 10) for i, p in enumerate(ranks_all)}
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False, sharey=True)
    for ax, (alg, collective) in zip(axes[0], panels, strict=True):
        for ranks in ranks_all:
            pts = sorted((r for r in rows if (r["algorithm"], r["collective"], r["ranks"]) == (alg, collective, ranks)),
                         key=lambda r: r["size_bytes"])
            if not pts:
                continue
            c = colours[ranks]
            sizes, t = _line(comparison, alg, collective, ranks, pts[0]["size_bytes"], pts[-1]["size_bytes"])
            ax.plot(sizes, t, "-", color=c, lw=1.4, label=f"p={ranks} predicted")
            for held in (False, True):
                sel = [r for r in pts if r["held_out"] == held]
                if not sel:
                    continue
                x = np.array([r["size_bytes"] for r in sel])
                y = np.array([r["measured_s"] for r in sel])
                err = np.array([[r["measured_s"] - r["measured_p10_s"] for r in sel],
                                [r["measured_p90_s"] - r["measured_s"] for r in sel]])
                ax.errorbar(x, y, yerr=np.clip(err, 0, None), fmt="o", ms=5, color=c, capsize=2,
                            mfc="white" if held else c,
                            label=f"p={ranks} measured ({'held out' if held else 'fitted'})")
            noisy = [r for r in pts if r.get("noisy")]
            if noisy:
                ax.plot([r["size_bytes"] for r in noisy], [r["measured_s"] for r in noisy], "x", color="red", ms=8,
                        label=f"p={ranks} too noisy to judge")
        bounds = {r.max_bytes for p in ranks_all for r in comparison.profile.group(alg, p)[:-1]} - {None}
        for bound in sorted(bounds):
            ax.axvline(bound, color="0.5", ls=":", lw=1)
        for level, size in _cache_edges(comparison, alg, collective, ranks_all):
            ax.axvline(size, color="tab:purple", ls="--", lw=0.8)
            ax.annotate(level, (size, 1), xycoords=("data", "axes fraction"), fontsize=7, color="tab:purple",
                        ha="left", va="top")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("message size per rank (bytes)")
        ax.set_title(f"{alg} {collective}" if alg != MPI else f"MPI {collective} (reference)")
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("time (s)")
    s = comparison.summary
    mape = s.get("mape_held_out_ge_64KiB_pct")
    note = f"held-out MAPE (>= 64 KiB): {mape:.1f} %" if mape is not None else "no held-out points >= 64 KiB"
    fig.suptitle(f"{comparison.profile.name} ({comparison.profile.device}) - {note}", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
