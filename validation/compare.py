"""Compare: what a profile predicts against what was measured, point by point.

The prediction is the simulator's own: ``HardwareProfile.schedule_time`` — α, β, γ of the
regime serving the message size, times the schedule's steps, bytes moved and bytes reduced
(exactly what ``trainsim run`` uses with ``cluster.profile``). Error is signed,
``(predicted - measured) / measured`` in per cent, against the statistic of the repetitions the
profile was fitted on (``fit.statistic``: the median unless it says ``p10`` or ``min``).

A point is *held out* when it was not among those the profile was fitted on (the profile's
``fit`` section lists the fitted algorithms, rank counts and sizes). MAPE — the mean of
``|error|`` — is reported on held-out points only, never on fitted ones, overall and for
sizes ≥ 64 KiB, per algorithm and rank count. MPI reference points (``source: mpi``) are
never fitted; each is compared with the fastest algorithm the profile predicts (what
``algorithm: auto`` would pick), and reported separately. Points read from nccl-tests or OSU
logs (algorithm ``nccl`` / ``mpi``) are predicted the same way. ``held_out_by`` says why a point
is held out (an unseen size, rank count or algorithm), and the summary's ``by_holdout`` gives
the MAPE of each kind separately.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator.collectives import algorithms as registered
from simulator.collectives import bus_factor, schedule
from simulator.network.profile import HardwareProfile, ProfileError, load_profile

from .calibrate import fitted_as
from .foreign import read_any
from .records import FOREIGN, MPI, MeasurementError, Measurements, Point, read_measurements

__all__ = ["LARGE_BYTES", "NOISY_DISPERSION", "NOISY_DRIFT", "Comparison", "compare", "predict"]

LARGE_BYTES = 64 * 1024  # "large" messages: the accuracy target is stated for sizes >= 64 KiB
#: a point whose rounds' medians differ by more than this fraction of its median cannot judge a model to 10 %
NOISY_DRIFT = 0.10
#: nor one whose 10th-90th percentile spread is wider than this fraction of its median
NOISY_DISPERSION = 0.5
COLUMNS = ("source", "device", "algorithm", "collective", "ranks", "size_bytes", "dtype", "repeats",
           "measured_s", "measured_p10_s", "measured_p90_s", "predicted_s", "error_pct", "held_out", "held_out_by",
           "regime",
           "predicted_algorithm", "measured_busbw_GBps", "predicted_busbw_GBps", "reference", "rounds",
           "dispersion_pct", "drift_pct", "disturbed", "noisy")


def predict(profile: HardwareProfile, algorithm: str, ranks: int, size_bytes: int,
            collective: str = "allreduce") -> float:
    """Seconds the profile predicts for one collective (the simulator's cost with this profile)."""
    return profile.schedule_time(schedule(algorithm, ranks, size_bytes, collective))


def _regime_index(profile: HardwareProfile, p: Point, algorithm: str) -> int:
    return profile.regimes.index(profile.regime(p.size_bytes, algorithm, p.ranks))


def is_fitted(profile: HardwareProfile, p: Point, run_id: str | None = None) -> bool:
    """Was ``p`` among the points the profile was fitted on? (False when the profile does not say.)"""
    return not held_out_by(profile, p, run_id)


def held_out_by(profile: HardwareProfile, p: Point, run_id: str | None = None) -> list[str]:
    """Why ``p`` was not fitted: ``run`` (measured in another run than the profile's, ``run_id``), ``sizes``,
    ``ranks``, ``algorithms`` (none of the profile's fitted sizes, rank counts or algorithms), ``other`` (another
    device, dtype, collective or implementation); [] when fitted."""
    fit = profile.fit
    q = fitted_as(p)
    if (q.source not in fit.get("sources", ("kernels",)) or p.device != profile.device
            or p.dtype != (profile.dtype or p.dtype) or p.collective != profile.collective):
        return ["other"]
    why = ["run"] if run_id and fit.get("run_id") and run_id != fit["run_id"] else []
    why += [kind for kind, value, fitted in (("sizes", q.size_bytes, "sizes_bytes"), ("ranks", q.ranks, "ranks"),
                                             ("algorithms", q.algorithm, "algorithms"))
            if value not in fit.get(fitted, ())]
    return why


def is_noisy(p: Point) -> bool:
    """Too noisy to judge a model to 10 %: measured in several rounds, the rounds' statistics disagree by more
    than :data:`NOISY_DRIFT`; in one round, the repetitions spread wider than :data:`NOISY_DISPERSION` of the
    median; or every repetition was timed while the sentinel said the machine was slowed down
    (:attr:`~validation.records.Point.slow_only`)."""
    return p.slow_only or (p.drift > NOISY_DRIFT if p.rounds > 1 else p.dispersion > NOISY_DISPERSION)


def mpi_candidates(profile: HardwareProfile, collective: str) -> list[str]:
    """Algorithms an MPI point of ``collective`` is compared with: the fitted ones that implement it, else all
    that do except ``hierarchical`` (which needs a node size)."""
    known = registered(collective)
    fitted = [a for a in profile.fit.get("algorithms", ()) if a in known]
    return fitted or [a for a in known if a != "hierarchical"]


def _busbw(collective: str, ranks: int, size_bytes: int, seconds: float) -> float | None:
    try:
        return size_bytes / seconds * bus_factor(collective, ranks) / 1e9
    except ValueError:
        return None


def _row(profile: HardwareProfile, p: Point, run_id: str | None = None, reference: bool = False) -> dict[str, Any]:
    if (p.source == MPI or p.source in FOREIGN) and fitted_as(p).source not in profile.fit.get("sources", ()):
        # another implementation than the profile's: the library picks its own algorithm, the fastest we predict
        guesses = {a: predict(profile, a, p.ranks, p.size_bytes, p.collective)
                   for a in mpi_candidates(profile, p.collective)}
        algorithm = min(guesses, key=guesses.__getitem__)
        predicted = guesses[algorithm]
    else:
        algorithm = fitted_as(p).algorithm
        predicted = predict(profile, algorithm, p.ranks, p.size_bytes, p.collective)
    return {
        "source": p.source, "device": p.device, "algorithm": p.algorithm, "collective": p.collective,
        "ranks": p.ranks, "size_bytes": p.size_bytes, "dtype": p.dtype, "repeats": p.repeats,
        "measured_s": p.seconds, "measured_p10_s": p.p10_s, "measured_p90_s": p.p90_s,
        "predicted_s": predicted, "error_pct": 100.0 * (predicted - p.seconds) / p.seconds,
        "held_out": not is_fitted(profile, p, run_id), "held_out_by": "+".join(held_out_by(profile, p, run_id)),
        "regime": _regime_index(profile, p, algorithm),
        "predicted_algorithm": algorithm,
        "measured_busbw_GBps": _busbw(p.collective, p.ranks, p.size_bytes, p.seconds),
        "predicted_busbw_GBps": _busbw(p.collective, p.ranks, p.size_bytes, predicted),
        "reference": reference, "rounds": p.rounds, "dispersion_pct": 100.0 * p.dispersion,
        "drift_pct": 100.0 * p.drift, "disturbed": p.disturbed, "noisy": is_noisy(p),
    }


def mape(rows: Sequence[dict[str, Any]]) -> float | None:
    """Mean absolute percentage error of ``rows`` (None when there are none)."""
    if not rows:
        return None
    return float(np.mean([abs(r["error_pct"]) for r in rows]))


def _by_holdout(held: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Held-out MAPE per reason a point was held out: an unseen size (interpolation), rank count or algorithm
    (extrapolation). A point unseen in two ways counts in both."""
    out = []
    for kind in ("run", "sizes", "ranks", "algorithms", "other"):
        g = [r for r in held if kind in r["held_out_by"].split("+")]
        if g:
            out.append({"held_out_by": kind, "points": len(g), "mape_pct": mape(g),
                        "mape_ge_64KiB_pct": mape([r for r in g if r["size_bytes"] >= LARGE_BYTES])})
    return out


def _summary(profile: HardwareProfile, rows: list[dict[str, Any]]) -> dict[str, Any]:
    kern = [r for r in rows if not r["reference"]]
    held = [r for r in kern if r["held_out"]]
    large = [r for r in held if r["size_bytes"] >= LARGE_BYTES]
    quiet = [r for r in large if not r["noisy"]]
    groups = []
    for alg, ranks in sorted({(r["algorithm"], r["ranks"]) for r in kern}):
        g = [r for r in held if (r["algorithm"], r["ranks"]) == (alg, ranks)]
        g_large = [r for r in g if r["size_bytes"] >= LARGE_BYTES]
        groups.append({"algorithm": alg, "ranks": ranks, "held_out_points": len(g),
                       "mape_held_out_pct": mape(g), "mape_held_out_ge_64KiB_pct": mape(g_large)})
    out: dict[str, Any] = {
        "profile": profile.name, "device": profile.device, "regimes": len(profile.regimes),
        "points": len(kern), "held_out_points": len(held), "held_out_points_ge_64KiB": len(large),
        "mape_held_out_pct": mape(held), "mape_held_out_ge_64KiB_pct": mape(large),
        "max_abs_error_held_out_pct": max((abs(r["error_pct"]) for r in held), default=None),
        "noisy_points": sum(r["noisy"] for r in kern),
        "held_out_points_ge_64KiB_quiet": len(quiet), "mape_held_out_ge_64KiB_quiet_pct": mape(quiet),
        "median_dispersion_pct": float(np.median([r["dispersion_pct"] for r in kern])) if kern else None,
        "median_drift_pct": float(np.median([r["drift_pct"] for r in kern])) if kern else None,
        "by_group": groups, "holdout": profile.fit.get("holdout"), "by_holdout": _by_holdout(held),
    }
    ref = [r for r in rows if r["reference"]]
    if ref:
        out["reference_mpi"] = {"points": len(ref), "collectives": sorted({r["collective"] for r in ref}),
                                "mape_pct": mape(ref),
                                "mape_ge_64KiB_pct": mape([r for r in ref if r["size_bytes"] >= LARGE_BYTES])}
    return out


@dataclass
class Comparison:
    """Per-point rows (``comparison.csv``) and the summary with held-out MAPE."""

    profile: HardwareProfile
    rows: list[dict[str, Any]]
    summary: dict[str, Any]

    def write(self, folder: str | Path, *, plot: bool = True) -> list[Path]:
        """Write ``comparison.csv`` (and ``predicted_vs_measured.png``) into ``folder``; returns the paths."""
        folder = Path(folder)
        csv_path = folder / "comparison.csv"
        with csv_path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, COLUMNS)
            w.writeheader()
            w.writerows(self.rows)
        paths = [csv_path]
        if plot:
            from .plots import predicted_vs_measured  # matplotlib only when asked

            paths.append(predicted_vs_measured(self, folder / "predicted_vs_measured.png"))
        return paths


def compare(profile: HardwareProfile | str | Path, measurements: Measurements | str | Path,
            *, reference: Measurements | str | Path | None = None) -> Comparison:
    """Predicted vs measured for every point of ``measurements`` (and of an MPI ``reference``).

    Parameters
    ----------
    profile : a ``HardwareProfile`` or the path of a ``profile.yaml``.
    measurements : a ``Measurements`` or the path of a ``measurements.csv``, nccl-tests or OSU log.
    reference : MPI reference measurements (``source: mpi`` rows), compared but never fitted.
    """
    if not isinstance(profile, HardwareProfile):
        profile = load_profile(profile)
    if profile.per_link:
        raise ProfileError(f"{profile.name or 'profile'}: a link profile (link_classes) is applied on a topology "
                           "by trainsim run; compare takes a profile with regimes (trainsim calibrate without "
                           "--link-class)")
    if not isinstance(measurements, Measurements):
        measurements = read_any(measurements)
    run_id = measurements.provenance.get("run_id")
    statistic = profile.fit.get("statistic", "median")
    rows = [_row(profile, p, run_id) for p in measurements.points(statistic)]
    if reference is not None:
        if not isinstance(reference, Measurements):
            reference = read_measurements(reference)
        theirs = [p for p in reference.points() if p.source != MPI]
        if theirs:
            raise MeasurementError(f"{reference.source_path or 'reference'}: --reference takes MPI measurements "
                                   f"(source: mpi), got {len(theirs)} point(s) with source {theirs[0].source!r}; "
                                   "pass kernel measurements as the measurements file")
        rows += [_row(profile, p, reference.provenance.get("run_id"), reference=True)
                 for p in reference.points(statistic)]
    return Comparison(profile, rows, _summary(profile, rows))
