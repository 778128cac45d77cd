"""``trainsim validate`` end to end: measure → (MPI reference) → calibrate → compare → files.

Everything is written into a temporary folder beside ``out`` and renamed into place at the
end, so an interrupted or failed validation leaves nothing half-written:

``measurements.csv`` + ``provenance.json``, ``reference_mpi.csv`` and ``profile_mpi.yaml`` (with
``--reference mpi``: MPI_Allreduce, and a profile fitted on it alone), ``profile.yaml``,
``comparison.csv``, ``predicted_vs_measured.png``, ``summary.json``; with ``repeat=2`` the same
again in ``run2/``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simulator.errors import TrainsimInputError
from simulator.network.profile import HardwareProfile

from .calibrate import HOLDOUTS, calibrate
from .compare import Comparison, compare
from .measure import CACHE_MODES, ORDER_SEED, SENTINEL_BYTES, MeasureError, _check_arguments, measure
from .mpi import measure_mpi, mpi_unavailable
from .records import Measurements, atomic_folder, check_out_folder

__all__ = ["ValidationRun", "validate"]

Progress = Callable[[int, int, str], None]


@dataclass
class ValidationRun:
    out: Path
    measurements: Measurements
    profile: HardwareProfile
    comparison: Comparison
    reference: Measurements | None = None
    files: list[Path] = field(default_factory=list)


def _check_fit_plan(algorithms: Sequence[str], ranks: Sequence[int], sizes: Sequence[int], **fit: object) -> None:
    """Fit the planned points on made-up timings first: a plan the fit cannot use (one size, ``--regimes 0``,
    ...) is refused in one line before anything is measured, with the fit's own words."""
    from simulator import collectives

    from .calibrate import features
    from .records import Measurement

    rows = []
    for alg in algorithms:
        for p in ranks:
            for n in sizes:
                try:
                    steps, moved, reduced = features(alg, p, n)[:3]
                except (ValueError, collectives.ScheduleError):
                    continue  # measure() reports an algorithm or rank count it cannot run
                t = 5e-6 * steps + 2e-10 * moved + 1e-10 * reduced
                rows += [Measurement("plan", alg, "allreduce", p, n, "float32", i, t * (1 + 0.01 * i))
                         for i in range(3)]
    if rows:
        calibrate(Measurements(rows, {}), **fit)  # raises CalibrationError, a TrainsimInputError


def _check_oversubscription(device: str, ranks: Sequence[int], holdout: str, allow: bool) -> None:
    """Refuse, before measuring, a plan that would fit an oversubscribed rank count (more ranks than CPUs)."""
    if device != "cpu" or allow:
        return
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    fitted = sorted(set(ranks))[:-1] if holdout == "ranks" else sorted(set(ranks))
    over = [p for p in fitted if p > cpus]
    if over:
        raise TrainsimInputError(f"--ranks: {', '.join(map(str, over))} ranks on {cpus} CPU(s) run oversubscribed "
                                 "(the timings would include the scheduler's time slices) and would be fitted; "
                                 "pass --allow-oversubscribed to fit them anyway, or use --holdout ranks to only "
                                 "predict the largest")


def _one_run(out: Path, measure_args: dict, fit_args: dict, reference: str | None, plot: bool,
             command: Sequence[str] | None, progress: Progress | None) -> ValidationRun:
    """Measure (and the MPI reference), calibrate, compare; write every file into ``out`` atomically."""
    measured = measure(**measure_args, progress=progress, command=command)
    measured.source_path = out / "measurements.csv"
    ref = mpi_profile = None
    if reference == "mpi":
        ref = measure_mpi(measure_args["ranks"], measure_args["sizes"], dtype=measure_args["dtype"],
                          repeats=measure_args["repeats"], warmup=measure_args["warmup"],
                          device=measure_args["device"], rounds=measure_args["rounds"], seed=measure_args["seed"],
                          sentinel_bytes=min(SENTINEL_BYTES, max(measure_args["sizes"]))
                          if measure_args["sentinel"] else 0, progress=progress)
        measured.provenance.update(ref.provenance)
        ref.provenance = measured.provenance
        ref.source_path = out / "reference_mpi.csv"
    profile = calibrate(measured, **fit_args, command=command)
    comparison = compare(profile, measured, reference=ref)
    if ref is not None:  # the honest test of the MPI library: a profile fitted on its own (held-out) sizes
        mpi_fit = {**fit_args, "holdout": "sizes", "by": "ranks" if len({p.ranks for p in ref.points()}) > 1
                   else "joint"}
        mpi_profile = calibrate(ref, **mpi_fit, name="mpi-allreduce", command=command)
        self_fit = compare(mpi_profile, ref).summary
        comparison.summary["reference_mpi_own_profile"] = {
            k: self_fit[k] for k in ("held_out_points", "mape_held_out_pct", "mape_held_out_ge_64KiB_pct",
                                     "held_out_points_ge_64KiB", "by_group")}
    run = ValidationRun(out, measured, profile, comparison, ref)
    with atomic_folder(out) as tmp:
        measured.write(tmp)
        if ref is not None:
            ref.write(tmp, "reference_mpi.csv", provenance=None)
        if mpi_profile is not None:
            mpi_profile.save(tmp / "profile_mpi.yaml")
        profile.save(tmp / "profile.yaml")
        comparison.write(tmp, plot=plot)
        (tmp / "summary.json").write_text(json.dumps(comparison.summary, indent=2) + "\n")
        run.files = sorted(out / p.name for p in tmp.iterdir())
    return run


def validate(*, out: str | Path, device: str = "cpu", algorithms: Sequence[str] = ("ring", "recursive_doubling"),
             ranks: Sequence[int] = (2, 4), sizes: Sequence[int] = (4096, 65536, 1 << 20), dtype: str = "float32",
             repeats: int = 10, warmup: int = 3, rounds: int = 1, holdout: str = "sizes",
             max_regimes: int | None = None, by: str = "auto",
             reference: str | None = None, plot: bool = True, progress: Progress | None = None,
             command: Sequence[str] | None = None, pin: bool = True, cache: str = "warm", seed: int = ORDER_SEED,
             allow_oversubscribed: bool = False, repeat: int = 1, statistic: str = "median",
             cache_sizes: dict[str, int] | None = None, sentinel: bool = True) -> ValidationRun:
    """Measure, calibrate on the non-held-out points, compare on all, and write every file into ``out``.

    ``repeat=2`` runs the whole validation a second time (its files in ``out/run2``, its own run id and
    shuffled order) and compares run 1's profile with run 2's measurements: ``summary.json``'s
    ``reproducibility`` holds that MAPE (every point of run 2 is held out by ``run``) and run 2's own
    held-out MAPE. ``sentinel``: watch the machine with a sentinel next to every batch, for the kernels and
    the MPI reference alike (:mod:`validation.measure`).
    """
    out = Path(out)
    from kernels import DTYPES

    if dtype not in DTYPES:
        raise TrainsimInputError(f"--dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    if holdout not in HOLDOUTS:
        raise TrainsimInputError(f"--holdout: expected one of {', '.join(HOLDOUTS)}, got {holdout!r}")
    if reference not in (None, "mpi"):
        raise TrainsimInputError(f"--reference: expected mpi, got {reference!r}")
    if cache not in CACHE_MODES:
        raise TrainsimInputError(f"--cache: expected one of {', '.join(CACHE_MODES)}, got {cache!r}")
    if device != "cpu" and (cache != "warm"):
        raise TrainsimInputError(f"--cache {cache}: CPU kernels only (--device {device})")
    if repeat not in (1, 2):
        raise TrainsimInputError(f"--repeat: expected 1 or 2, got {repeat}")
    if reference == "mpi" and (reason := mpi_unavailable()):
        raise MeasureError(f"--reference mpi: {reason}")
    if holdout == "ranks" and len(set(ranks)) < 2:
        raise TrainsimInputError(f"--holdout ranks: needs two or more rank counts, got --ranks {list(ranks)}")
    check_out_folder(out)
    _check_arguments(list(algorithms), list(ranks), list(sizes), "allreduce", dtype, repeats, warmup, rounds)
    _check_oversubscription(device, ranks, holdout, allow_oversubscribed)
    if device == "cpu" and ranks and sizes:   # before any rank starts: too many processes or too much memory
        from kernels import KernelError
        from kernels._base import check_memory, check_processes

        try:
            check_processes(max(ranks))
            check_memory(sum(set(ranks)), max(sizes), processes=True)  # every rank count's executor stays open
        except KernelError as e:
            raise TrainsimInputError(f"--ranks/--sizes: {e}") from None
    fit_args = {"holdout": holdout, "max_regimes": max_regimes, "by": by, "allow_oversubscribed": allow_oversubscribed,
                "statistic": statistic, "cache_sizes": cache_sizes}
    _check_fit_plan(algorithms, ranks, sizes, **fit_args)
    measure_args = {"algorithms": algorithms, "ranks": ranks, "sizes": sizes, "device": device, "dtype": dtype,
                    "repeats": repeats, "warmup": warmup, "rounds": rounds, "pin": pin, "cache": cache, "seed": seed,
                    "sentinel": sentinel}
    run = _one_run(out, measure_args, fit_args, reference, plot, command, progress)
    if repeat == 2:
        second = _one_run(out / "run2", {**measure_args, "seed": seed + 1}, fit_args, reference, plot, command,
                          progress)
        again = compare(run.profile, second.measurements).summary
        run.comparison.summary["reproducibility"] = {
            "profile_run_id": run.measurements.provenance.get("run_id"),
            "measurements_run_id": second.measurements.provenance.get("run_id"),
            "points": again["held_out_points"], "points_ge_64KiB": again["held_out_points_ge_64KiB"],
            "mape_pct": again["mape_held_out_pct"], "mape_ge_64KiB_pct": again["mape_held_out_ge_64KiB_pct"],
            "mape_ge_64KiB_quiet_pct": again["mape_held_out_ge_64KiB_quiet_pct"],
            "run2_mape_held_out_ge_64KiB_pct": second.comparison.summary["mape_held_out_ge_64KiB_pct"],
        }
        from topologies.io import write_atomically

        write_atomically(out / "summary.json", json.dumps(run.comparison.summary, indent=2) + "\n")
        run.files = sorted([*run.files, *second.files])
    return run
