"""Measure: time the real collective kernels over algorithms × ranks × sizes on one device.

For each rank count one ``kernels.executor`` is opened (``ranks`` processes on the CPU, each
pinned to its own core when there are enough, or the GPU), and all stay open so that rank
counts, algorithms and sizes are visited interleaved, in a shuffled (seeded) order per round;
each point gets ``warmup`` untimed runs per round, then its share of the ``repeats`` timed
ones. The first timed repetition is checked against numpy's reduction (``check=True``), so a
wrong kernel can never produce a calibration.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np

from simulator import collectives
from simulator.errors import TrainsimInputError

from .provenance import collect
from .records import Measurement, Measurements

__all__ = ["CACHE_MODES", "MeasureError", "flush_bytes", "measure"]

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


CACHE_MODES = ("warm", "flush")
FLUSH_CAP_BYTES = 256 << 20   # a cold-cache sweep never exceeds this (a 480 MiB L3 would cost more than the point)
ORDER_SEED = 20240605         # default seed of the visiting order


def flush_bytes(caches: dict[str, dict[str, int]]) -> int:
    """Bytes each rank sweeps before a cold-cache repetition: twice its private caches plus its share of the shared
    ones (each level's size over the CPUs sharing it), at most :data:`FLUSH_CAP_BYTES`; 64 MiB when unknown."""
    if not caches:
        return 64 << 20
    mine = sum(c["bytes"] // max(1, c["shared_by_cpus"]) for c in caches.values())
    return min(FLUSH_CAP_BYTES, 2 * mine)


def _plan(algorithms: list[str], ranks: list[int], sizes: list[int], repeats: int, rounds: int,
          seed: int) -> list[tuple[int, int, str, int, int, int]]:
    """``(round, ranks, algorithm, size, repetitions this round, index of its first repetition)`` in the order to
    run: every round visits every (ranks, algorithm, size) once, each round in its own shuffled (seeded) order, so
    no point always follows the same neighbour or always runs at the same time into the measurement."""
    per_round = [repeats // rounds + (i < repeats % rounds) for i in range(rounds)]
    shuffle = np.random.default_rng(seed)
    points = [(p, alg, size) for p in sorted(ranks) for alg in algorithms for size in sizes]
    plan = []
    for rnd, reps in enumerate(per_round):
        plan += [(rnd, *points[i], reps, sum(per_round[:rnd])) for i in shuffle.permutation(len(points))]
    return plan


def measure(algorithms: Sequence[str] = ("ring", "recursive_doubling"), ranks: Sequence[int] = (2, 4),
            sizes: Sequence[int] = (4096, 65536, 1 << 20), *, device: str = "cpu", dtype: str = "float32",
            repeats: int = 10, warmup: int = 3, rounds: int = 1, collective: str = "allreduce", mode: str = "process",
            pin: bool = True, cache: str = "warm", seed: int = ORDER_SEED,
            timeout_s: float = 120.0, progress: Progress | None = None,
            command: Sequence[str] | None = None) -> Measurements:
    """Time ``collective`` with the ``kernels`` executors; one row per timed repetition.

    Parameters
    ----------
    algorithms, ranks, sizes : what to measure (sizes in bytes per rank, multiples of the dtype size).
    device : ``"cpu"`` or ``"cuda"`` (``kernels.devices_available()``).
    repeats, warmup : timed and untimed runs per point (and per round).
    rounds : split the repetitions into this many passes over all points, each in its own shuffled order
        (``seed``), rank counts interleaved too (one executor per rank count stays open), so a burst of background
        load spreads over points instead of spoiling every repetition of one, and what ran just before a point
        varies. Each row records its round; :class:`~validation.records.Point` reports the drift between rounds.
    mode : the CPU executor's rank model (``"process"``: one OS process per rank; ``"thread"`` is never pinned).
    seed : of the shuffled visiting order (the same command and seed visit points in the same order).
    pin : CPU: pin each rank to its own CPU when there are enough (the provenance records which rank counts were
        pinned and which were oversubscribed: more ranks than CPUs).
    cache : ``"warm"`` (each repetition starts right after its inputs were copied into place: the buffers are in
        whatever caches hold them) or ``"flush"`` (each rank first sweeps a private buffer, :func:`flush_bytes`).
    progress : called as ``progress(done, total, label)`` before each point and once at the end.

    Shared-memory buffers are sized once for the largest point and faulted in by each rank on its own CPU before
    anything is timed (``Executor.reserve``), and reused by every point.

    Raises
    ------
    TrainsimInputError
        A bad argument (unknown algorithm, size not a whole number of elements, ...).
    MeasureError
        The device is unavailable, or a kernel failed, hung or gave a wrong result.
    """
    algorithms, sizes, ranks = list(algorithms), list(sizes), sorted(set(ranks))
    _check_arguments(algorithms, ranks, sizes, collective, dtype, repeats, warmup, rounds)
    if cache not in CACHE_MODES:
        raise TrainsimInputError(f"--cache: expected one of {', '.join(CACHE_MODES)}, got {cache!r}")
    if device != "cpu" and (cache != "warm"):
        raise TrainsimInputError(f"--cache {cache}: CPU kernels only (--device {device})")
    import kernels  # numba: only when measuring

    available = list(kernels.devices_available())
    if device not in available:
        raise MeasureError(f"--device {device}: not available here (available: {', '.join(available)})")
    provenance = collect(command, device=device)
    sweep = flush_bytes(provenance.get("caches", {})) if cache == "flush" else 0
    plan = _plan(algorithms, ranks, sizes, repeats, rounds, seed)
    rows: list[Measurement] = []
    label = f"{device}"
    pinned: dict[int, list[int] | None] = {}
    try:
        with contextlib.ExitStack() as stack:
            executors = {}
            for p in ranks:
                label = f"{device} p={p}"
                ex = stack.enter_context(kernels.executor(device=device, ranks=p, mode=mode, timeout_s=timeout_s,
                                                          pin=pin and device == "cpu" and mode == "process",
                                                          flush_bytes=sweep))
                ex.reserve(collectives.schedule(algorithms[0], p, max(sizes), collective), dtype)
                executors[p] = ex
                pinned[p] = ex.pinned
            for i, (rnd, p, alg, size, reps, first) in enumerate(plan):
                label = f"{alg} p={p} {size} B" + (f" (round {rnd + 1}/{rounds})" if rounds > 1 else "")
                if progress:
                    progress(i, len(plan), label)
                seconds = executors[p].time(collectives.schedule(alg, p, size, collective), dtype=dtype,
                                            repeats=reps, warmup=warmup, op="sum", check=rnd == 0)
                rows += [Measurement(device, alg, collective, p, size, dtype, first + j, float(t), round=rnd)
                         for j, t in enumerate(np.asarray(seconds, dtype=float))]
            oversubscribed = [p for p, ex in executors.items() if ex.oversubscribed]
    except kernels.KernelError as e:
        raise MeasureError(f"kernels ({label}): {e}") from None
    provenance["measure"] = {"algorithms": algorithms, "ranks": ranks, "sizes_bytes": sizes, "dtype": dtype,
                             "repeats": repeats, "warmup": warmup, "rounds": rounds, "collective": collective,
                             "mode": mode, "check": "first timed repetition against numpy",
                             "order": f"rounds x shuffled (ranks, algorithm, size), seed {seed}",
                             "pinned": {str(p): cpus for p, cpus in pinned.items()},
                             "oversubscribed_ranks": oversubscribed,
                             "cache": cache, "flush_bytes": sweep,
                             "buffers": "one shared segment per rank, sized for the largest point, faulted in by "
                                        "its rank before timing, reused by every point"}
    rows.sort(key=lambda m: (m.ranks, algorithms.index(m.algorithm), sizes.index(m.size_bytes), m.repetition))
    if progress:
        progress(len(plan), len(plan), "measured")
    return Measurements(rows, provenance)
