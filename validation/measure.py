"""Measure: time the real collective kernels over algorithms × ranks × sizes on one device.

For each rank count one ``kernels.executor`` is opened (``ranks`` processes on the CPU, or
the GPU) and reused for every algorithm and size; each point gets ``warmup`` untimed runs
(JIT compilation and first-touch page faults stay out of the timings), then ``repeats``
timed ones. The first timed repetition is checked against numpy's reduction
(``check=True``), so a wrong kernel can never produce a calibration. Rank counts run in
ascending order, algorithms and sizes in the order given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from simulator import collectives
from simulator.errors import TrainsimInputError

from .provenance import collect
from .records import Measurement, Measurements

__all__ = ["MeasureError", "measure"]

Progress = Callable[[int, int, str], None]  # (done, total, what is running)


class MeasureError(TrainsimInputError, RuntimeError):
    """The kernels could not measure (no such device, a rank died or hung, a wrong result)."""


def _check_arguments(algorithms: Sequence[str], ranks: Sequence[int], sizes: Sequence[int], collective: str,
                     dtype: str, repeats: int, warmup: int, rounds: int) -> None:
    valid = collectives.algorithms(collective)
    for a in algorithms:
        if a not in valid:
            raise TrainsimInputError(f"--algorithms: expected names from {', '.join(valid)}, got {a!r}")
    if repeats < 1 or warmup < 0 or not 1 <= rounds <= repeats:
        raise TrainsimInputError(f"--repeats must be >= 1, --warmup >= 0 and --rounds 1..repeats, "
                                 f"got {repeats}, {warmup} and {rounds}")
    if min(ranks) < 2:
        raise TrainsimInputError(f"--ranks: a collective needs at least 2 ranks, got {min(ranks)}")
    try:
        item = np.dtype(dtype).itemsize
    except TypeError:
        raise TrainsimInputError(f"--dtype: expected a numpy dtype like float32, got {dtype!r}") from None
    odd = [s for s in sizes if s <= 0 or s % item]
    if odd:
        raise TrainsimInputError(f"--sizes: every size must be a positive multiple of {item} bytes "
                                 f"(one {dtype} element), got {odd[0]}")
    for p in ranks:
        for a in algorithms:
            try:
                collectives.schedule(a, p, item * p, collective)
            except collectives.ScheduleError as e:
                raise TrainsimInputError(f"--algorithms: {e}") from None


def measure(algorithms: Sequence[str] = ("ring", "recursive_doubling"), ranks: Sequence[int] = (2, 4),
            sizes: Sequence[int] = (4096, 65536, 1 << 20), *, device: str = "cpu", dtype: str = "float32",
            repeats: int = 10, warmup: int = 3, rounds: int = 1, collective: str = "allreduce", mode: str = "process",
            timeout_s: float = 120.0, progress: Progress | None = None,
            command: Sequence[str] | None = None) -> Measurements:
    """Time ``collective`` with the ``kernels`` executors; one row per timed repetition.

    Parameters
    ----------
    algorithms, ranks, sizes : what to measure (sizes in bytes per rank, multiples of the dtype size).
    device : ``"cpu"`` or ``"cuda"`` (``kernels.devices_available()``).
    repeats, warmup : timed and untimed runs per point.
    rounds : split the repetitions into this many passes over all points (each with its own warm-up),
        so a burst of background load on a shared machine spreads over points instead of spoiling
        every repetition of one. Rounds after the first visit the points in a shuffled (seeded) order,
        so what ran just before a point (and left caches and memory in some state) varies too.
    mode : the CPU executor's rank model (``"process"``: one OS process per rank).
    progress : called as ``progress(done, total, label)`` before each point and once at the end.

    Raises
    ------
    TrainsimInputError
        A bad argument (unknown algorithm, size not a whole number of elements, ...).
    MeasureError
        The device is unavailable, or a kernel failed, hung or gave a wrong result.
    """
    algorithms, sizes = list(algorithms), list(sizes)
    _check_arguments(algorithms, ranks, sizes, collective, dtype, repeats, warmup, rounds)
    import kernels  # numba: only when measuring

    available = list(kernels.devices_available())
    if device not in available:
        raise MeasureError(f"--device {device}: not available here (available: {', '.join(available)})")
    provenance = collect(command, device=device)
    provenance["measure"] = {"algorithms": algorithms, "ranks": list(ranks), "sizes_bytes": sizes, "dtype": dtype,
                             "repeats": repeats, "warmup": warmup, "rounds": rounds, "collective": collective,
                             "mode": mode, "check": "first timed repetition against numpy"}
    # (round, algorithm, size, repetitions in this round, index of its first repetition)
    per_round = [repeats // rounds + (i < repeats % rounds) for i in range(rounds)]
    plan = []
    shuffle = np.random.default_rng(20240605)  # fixed: the same command visits points in the same order
    for rnd, reps in enumerate(per_round):
        points = [(alg, size) for alg in algorithms for size in sizes]
        if rnd > 0:  # later rounds in a shuffled order: no point always follows the same neighbour
            points = [points[i] for i in shuffle.permutation(len(points))]
        plan += [(rnd, alg, size, reps, sum(per_round[:rnd])) for alg, size in points]
    rows: list[Measurement] = []
    total = len(plan) * len(ranks)
    for k, p in enumerate(sorted(ranks)):
        label = f"{device} p={p}"
        try:
            with kernels.executor(device=device, ranks=p, mode=mode, timeout_s=timeout_s) as ex:
                for i, (rnd, alg, size, reps, first) in enumerate(plan):
                    label = f"{alg} p={p} {size} B" + (f" (round {rnd + 1}/{rounds})" if rounds > 1 else "")
                    if progress:
                        progress(k * len(plan) + i, total, label)
                    seconds = ex.time(collectives.schedule(alg, p, size, collective), dtype=dtype, repeats=reps,
                                      warmup=warmup, op="sum", check=rnd == 0)
                    rows += [Measurement(device, alg, collective, p, size, dtype, first + j, float(t))
                             for j, t in enumerate(np.asarray(seconds, dtype=float))]
        except kernels.KernelError as e:
            raise MeasureError(f"kernels ({label}): {e}") from None
    rows.sort(key=lambda m: (m.ranks, algorithms.index(m.algorithm), sizes.index(m.size_bytes), m.repetition))
    if progress:
        progress(total, total, "measured")
    return Measurements(rows, provenance)
