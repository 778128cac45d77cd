"""``--reference mpi``: MPI_Allreduce on the same sizes and ranks, via ``mpiexec``.

Optional: needs an MPI launcher on ``PATH`` and mpi4py (neither is a trainsim dependency).
Each rank count is one ``mpiexec -n P python validation/mpi_allreduce.py ...`` subprocess;
OpenMPI gets ``--oversubscribe`` (more ranks than cores is allowed, as for the kernels) and,
when running as root, ``--allow-run-as-root``. The rows come back with ``algorithm`` and
``source`` set to ``mpi``: the library picks its own algorithm.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .measure import MeasureError
from .records import MPI, Measurement, Measurements

__all__ = ["measure_mpi", "mpi_unavailable"]

SCRIPT = Path(__file__).with_name("mpi_allreduce.py")


def _launcher() -> str | None:
    return shutil.which("mpiexec") or shutil.which("mpirun")


def mpi_unavailable() -> str | None:
    """Why the MPI reference cannot run here, or None when it can."""
    if _launcher() is None:
        return ("no mpiexec on PATH (install an MPI library, e.g. `apt-get install openmpi-bin libopenmpi-dev` "
                "or `pip install mpich`)")
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed in this Python (`pip install mpi4py`)"
    return None


def _launch_command(ranks: int) -> list[str]:
    launcher = _launcher()
    assert launcher is not None
    cmd = [launcher, "-n", str(ranks)]
    try:
        version = subprocess.run([launcher, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    if "Open MPI" in version or "OpenRTE" in version:
        cmd.append("--oversubscribe")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
    return cmd


def measure_mpi(ranks: Sequence[int], sizes: Sequence[int], *, dtype: str = "float32", repeats: int = 10,
                warmup: int = 3, device: str = "cpu", timeout_s: float = 600.0, rounds: int = 1, seed: int = 0,
                sentinel_bytes: int = 0, progress: Callable[[int, int, str], None] | None = None) -> Measurements:
    """MPI_Allreduce timings, one row per repetition (``algorithm = source = "mpi"``).

    Like the kernels' measurement, the repetitions are spread over ``rounds`` passes (one ``mpiexec`` per rank
    count and round, the sizes in an order shuffled with ``seed``), so a burst of background load spoils a few
    repetitions of many sizes rather than all of one; each row records its round. ``sentinel_bytes > 0``: the
    script times a sentinel next to every batch (in-cache adds over that many bytes on every rank: MPI's own
    timings depend on what it ran before, see ``mpi_allreduce.Sentinel``), waits for a quiet machine and
    times disturbed batches again, as :func:`validation.measure.measure` does (each row records its
    ``sentinel_s``).

    Raises
    ------
    MeasureError
        MPI is unavailable (the message says what to install), or ``mpiexec`` failed.
    """
    reason = mpi_unavailable()
    if reason:
        raise MeasureError(f"--reference mpi: {reason}")
    rows: list[Measurement] = []
    library = None
    shuffle = np.random.default_rng(seed)
    per_round = [repeats // rounds + (i < repeats % rounds) for i in range(rounds)]
    passes = [(rnd, p) for rnd in range(rounds) for p in sorted(ranks)]
    counted: dict[tuple[int, int], int] = {}
    for i, (rnd, p) in enumerate(passes):
        if progress:
            progress(i, len(passes), f"MPI_Allreduce p={p}" + (f" (round {rnd + 1}/{rounds})" if rounds > 1 else ""))
        order = [sizes[k] for k in shuffle.permutation(len(sizes))]
        cmd = [*_launch_command(p), sys.executable, str(SCRIPT), "--sizes", ",".join(map(str, order)),
               "--repeats", str(per_round[rnd]), "--warmup", str(warmup), "--dtype", dtype,
               "--sentinel", str(sentinel_bytes)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise MeasureError(f"--reference mpi: mpiexec with {p} ranks ran past {timeout_s:g} s") from None
        if done.returncode != 0:
            tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise MeasureError(f"--reference mpi: mpiexec with {p} ranks failed (exit {done.returncode}): {tail}")
        for line in done.stdout.splitlines():
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            library = rec.get("library", library)
            key = (rec["ranks"], rec["size_bytes"])
            first = counted.get(key, 0)
            rows += [Measurement(device, MPI, "allreduce", rec["ranks"], rec["size_bytes"], rec["dtype"], first + j,
                                 float(t), MPI, rnd, float(rec.get("sentinel_s", 0.0)))
                     for j, t in enumerate(rec["seconds"])]
            counted[key] = first + len(rec["seconds"])
    if progress:
        progress(len(passes), len(passes), "MPI_Allreduce")
    return Measurements(rows, {"mpi_library": library, "mpi_launcher": _launch_command(2)[0]})
