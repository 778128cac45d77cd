"""``trainsim validate`` end to end: measure → (MPI reference) → calibrate → compare → files.

Everything is written into a temporary folder beside ``out`` and renamed into place at the
end, so an interrupted or failed validation leaves nothing half-written:

``measurements.csv`` + ``provenance.json``, ``reference_mpi.csv`` (with ``--reference mpi``),
``profile.yaml``, ``comparison.csv``, ``predicted_vs_measured.png``, ``summary.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from simulator.errors import TrainsimInputError
from simulator.network.profile import HardwareProfile

from .calibrate import HOLDOUTS, calibrate
from .compare import Comparison, compare
from .measure import MeasureError, measure
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
                    steps, moved, reduced = features(alg, p, n)
                except (ValueError, collectives.ScheduleError):
                    continue  # measure() reports an algorithm or rank count it cannot run
                t = 5e-6 * steps + 2e-10 * moved + 1e-10 * reduced
                rows += [Measurement("plan", alg, "allreduce", p, n, "float32", i, t * (1 + 0.01 * i))
                         for i in range(3)]
    if rows:
        calibrate(Measurements(rows, {}), **fit)  # raises CalibrationError, a TrainsimInputError


def validate(*, out: str | Path, device: str = "cpu", algorithms: Sequence[str] = ("ring", "recursive_doubling"),
             ranks: Sequence[int] = (2, 4), sizes: Sequence[int] = (4096, 65536, 1 << 20), dtype: str = "float32",
             repeats: int = 10, warmup: int = 3, rounds: int = 1, holdout: str = "sizes", max_regimes: int = 2,
             by: str = "auto",
             reference: str | None = None, plot: bool = True, progress: Progress | None = None,
             command: Sequence[str] | None = None) -> ValidationRun:
    """Measure, calibrate on the non-held-out points, compare on all, and write every file into ``out``."""
    out = Path(out)
    from kernels import DTYPES

    if dtype not in DTYPES:
        raise TrainsimInputError(f"--dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    if holdout not in HOLDOUTS:
        raise TrainsimInputError(f"--holdout: expected one of {', '.join(HOLDOUTS)}, got {holdout!r}")
    if reference not in (None, "mpi"):
        raise TrainsimInputError(f"--reference: expected mpi, got {reference!r}")
    if reference == "mpi" and (reason := mpi_unavailable()):
        raise MeasureError(f"--reference mpi: {reason}")
    if holdout == "ranks" and len(set(ranks)) < 2:
        raise TrainsimInputError(f"--holdout ranks: needs two or more rank counts, got --ranks {list(ranks)}")
    check_out_folder(out)
    if device == "cpu" and ranks and sizes:   # before any rank starts: too many processes or too much memory
        from kernels import KernelError
        from kernels._base import check_memory, check_processes

        try:
            check_processes(max(ranks))
            check_memory(max(ranks), max(sizes), processes=True)
        except KernelError as e:
            raise TrainsimInputError(f"--ranks/--sizes: {e}") from None
    _check_fit_plan(algorithms, ranks, sizes, holdout=holdout, max_regimes=max_regimes, by=by)
    measured = measure(algorithms, ranks, sizes, device=device, dtype=dtype, repeats=repeats, warmup=warmup,
                       rounds=rounds, progress=progress, command=command)
    measured.source_path = out / "measurements.csv"
    ref = None
    if reference == "mpi":
        ref = measure_mpi(ranks, sizes, dtype=dtype, repeats=repeats, warmup=warmup, device=device,
                          progress=progress)
        measured.provenance.update(ref.provenance)
    profile = calibrate(measured, holdout=holdout, max_regimes=max_regimes, by=by, command=command)
    comparison = compare(profile, measured, reference=ref)
    run = ValidationRun(out, measured, profile, comparison, ref)
    with atomic_folder(out) as tmp:
        measured.write(tmp)
        if ref is not None:
            ref.write(tmp, "reference_mpi.csv", provenance=None)
        profile.save(tmp / "profile.yaml")
        comparison.write(tmp, plot=plot)
        (tmp / "summary.json").write_text(json.dumps(comparison.summary, indent=2) + "\n")
        run.files = sorted(out / p.name for p in tmp.iterdir())
    return run
