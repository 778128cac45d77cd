"""Measure: time the real collective kernels over algorithms × ranks × sizes on one device.

For each rank count one ``kernels.executor`` is opened (``ranks`` processes on the CPU, each
pinned to its own core when there are enough, or the GPU), and all stay open so that rank
counts, algorithms and sizes are visited interleaved, in a shuffled (seeded) order per round;
each point gets ``warmup`` untimed runs per round, then its share of the ``repeats`` timed
ones. The first timed repetition is checked against numpy's reduction (``check=True``), so a
wrong kernel can never produce a calibration.

A *sentinel* watches the machine: a small ring allreduce (:data:`SENTINEL_BYTES`, in cache) is timed
just before and just after every point's batch of repetitions. On a shared VM the whole machine
slows down 2-5x for seconds at a time (another tenant on the same physical cores; it shows in no
counter of the guest), and the sentinel's time follows a point's with a correlation of 0.97-0.99
(benchmarks/validation/README.md). Before a batch, while the sentinel is slower than
:data:`~validation.records.QUIET_GATE` times its fastest so far, the measurement waits (up to
:data:`SENTINEL_WAIT_S`); a batch whose sentinel after it was slow is measured again (up to
:data:`ATTEMPTS` times). Every batch is kept, each repetition with its sentinel time (column
``sentinel_s``), and the summary of a point leaves out the disturbed ones
(:meth:`~validation.records.Measurements.points`), against the fastest sentinel of the whole run.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence

import numpy as np

from simulator import collectives
from simulator.errors import TrainsimInputError

from .provenance import collect
from .records import QUIET_GATE, Measurement, Measurements

__all__ = ["CACHE_MODES", "SENTINEL_BYTES", "MeasureError", "flush_bytes", "measure"]

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
SENTINEL_BYTES = 256 << 10    # the sentinel: a ring allreduce of this many bytes per rank (or the largest size)
SENTINEL_REPEATS = 5          # its timed repetitions (median), after one warm-up: ~0.1 ms at 2 ranks
SENTINEL_WAIT_S = 2.0         # longest wait before one batch for the machine to be quiet again
ATTEMPTS = 3                  # a batch disturbed while it ran is measured at most this many times


class _Sentinel:
    """The machine's state as one rank count's points see it: a small ring allreduce timed next to them."""

    def __init__(self, executor, ranks: int, size: int, dtype: str) -> None:
        self.executor, self.dtype = executor, dtype
        self.schedule = collectives.schedule("ring", ranks, size, "allreduce")
        self.fastest, self.waited_s, self.readings = math.inf, 0.0, 0

    def read(self) -> float:
        t = float(np.median(self.executor.time(self.schedule, dtype=self.dtype, repeats=SENTINEL_REPEATS, warmup=1,
                                               op="sum", check=False)))
        self.fastest, self.readings = min(self.fastest, t), self.readings + 1
        return t

    def quiet(self, t: float) -> bool:
        return t <= QUIET_GATE * self.fastest

    def await_quiet(self) -> float:
        """The sentinel once the machine is quiet, or after :data:`SENTINEL_WAIT_S` of waiting for it."""
        t, start = self.read(), time.monotonic()
        while not self.quiet(t) and time.monotonic() - start < SENTINEL_WAIT_S:
            time.sleep(0.02)
            t = self.read()
        self.waited_s += time.monotonic() - start
        return t


def flush_bytes(caches: dict[str, dict[str, int]]) -> int:
    """Bytes each rank sweeps before a cold-cache repetition: twice its private caches plus its share of the shared
    ones (each level's size over the CPUs sharing it), at most :data:`FLUSH_CAP_BYTES`; 64 MiB when unknown."""
    if not caches:
        return 64 << 20
    mine = sum(c["bytes"] // max(1, c["shared_by_cpus"]) for c in caches.values())
    return min(FLUSH_CAP_BYTES, 2 * mine)


def _sentinel_size(largest: int, ranks: int, dtype: str) -> int:
    """:data:`SENTINEL_BYTES`, or less when no point is that large (the buffers are sized for the largest point)."""
    item = np.dtype(dtype).itemsize
    return max(item * ranks, min(SENTINEL_BYTES, largest) // (item * ranks) * item * ranks)


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
            pin: bool = True, cache: str = "warm", seed: int = ORDER_SEED, sentinel: bool = True,
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
    sentinel : time the sentinel next to every batch, wait for a quiet machine and re-measure disturbed batches
        (see the module docstring); False: every repetition as it came (``sentinel_s`` 0).
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
            executors, sentinels = {}, {}
            for p in ranks:
                label = f"{device} p={p}"
                ex = stack.enter_context(kernels.executor(device=device, ranks=p, mode=mode, timeout_s=timeout_s,
                                                          pin=pin and device == "cpu" and mode == "process",
                                                          flush_bytes=sweep))
                ex.reserve(collectives.schedule(algorithms[0], p, max(sizes), collective), dtype)
                executors[p] = ex
                pinned[p] = ex.pinned
                if sentinel:
                    sentinels[p] = _Sentinel(ex, p, _sentinel_size(max(sizes), p, dtype), dtype)
            done: dict[tuple[int, str, int], int] = {}
            remeasured = 0
            for i, (rnd, p, alg, size, reps, _) in enumerate(plan):
                label = f"{alg} p={p} {size} B" + (f" (round {rnd + 1}/{rounds})" if rounds > 1 else "")
                if progress:
                    progress(i, len(plan), label)
                watch = sentinels.get(p)
                for attempt in range(ATTEMPTS if watch else 1):
                    before = watch.await_quiet() if watch else 0.0
                    seconds = executors[p].time(collectives.schedule(alg, p, size, collective), dtype=dtype,
                                                repeats=reps, warmup=warmup, op="sum",
                                                check=rnd == 0 and attempt == 0)
                    seen = max(before, watch.read()) if watch else 0.0
                    first = done.get((p, alg, size), 0)
                    rows += [Measurement(device, alg, collective, p, size, dtype, first + j, float(t), round=rnd,
                                         sentinel_s=seen) for j, t in enumerate(np.asarray(seconds, dtype=float))]
                    done[(p, alg, size)] = first + len(seconds)
                    if not watch or watch.quiet(seen):
                        break
                    remeasured += attempt < ATTEMPTS - 1   # the last disturbed attempt is kept, not re-timed
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
                             "sentinel": {"algorithm": "ring", "collective": "allreduce", "repeats": SENTINEL_REPEATS,
                                          "size_bytes": {str(p): w.schedule.size_bytes for p, w in sentinels.items()},
                                          "fastest_s": {str(p): w.fastest for p, w in sentinels.items()},
                                          "readings": sum(w.readings for w in sentinels.values()),
                                          "waited_s": sum(w.waited_s for w in sentinels.values()),
                                          "gate": QUIET_GATE, "batches_measured_again": remeasured}
                             if sentinels else None,
                             "buffers": "one shared segment per rank, sized for the largest point, faulted in by "
                                        "its rank before timing, reused by every point"}
    rows.sort(key=lambda m: (m.ranks, algorithms.index(m.algorithm), sizes.index(m.size_bytes), m.repetition))
    if progress:
        progress(len(plan), len(plan), "measured")
    return Measurements(rows, provenance)
