"""``trainsim kernels bench``: time one algorithm on real kernels over sizes, nccl-tests style.

For each rank count an executor is started once, then every size is timed
(``warmup`` untimed runs, ``repeats`` timed ones, the first checked against
numpy) and reported as the median time, ``algbw = size / time`` and
``busbw = algbw * bus_factor(collective, p)`` (nccl-tests' convention, from
:func:`simulator.collectives.bus_factor`), in GB/s (1e9 bytes per second).

The command line (``simulator/cli.py``) parses sizes and ranks and turns
:class:`BenchInputError` into its one-line error; this module only imports
``kernels`` and :mod:`simulator.collectives`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from simulator.collectives import ScheduleError, algorithms, bus_factor
from simulator.collectives.schedule import COLLECTIVES

from . import DEVICES, MODES, devices_available, executor
from ._base import check_memory, check_processes
from .lowering import DTYPES, element_schedule

__all__ = ["BenchInputError", "bench", "check_arguments"]


class BenchInputError(ValueError):
    """Arguments that cannot be benchmarked (the message says which and why)."""


def check_arguments(device: str, collective: str, algorithm: str, dtype: str, mode: str, sizes: Sequence[int],
                    repeats: int) -> None:
    """Raise :class:`BenchInputError` for anything :func:`bench` cannot run."""
    problems = [
        (device not in DEVICES, f"--device: expected one of {', '.join(DEVICES)}, got {device!r}"),
        (collective not in COLLECTIVES, f"--collective: expected one of {', '.join(COLLECTIVES)}, got {collective!r}"),
        (dtype not in DTYPES, f"--dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}"),
        (mode not in MODES, f"--mode: expected one of {', '.join(MODES)}, got {mode!r}"),
        (repeats < 1, f"--repeats: expected at least 1, got {repeats}"),
    ]
    for bad, message in problems:
        if bad:
            raise BenchInputError(message)
    if algorithm not in algorithms(collective):
        raise BenchInputError(f"--algorithm: expected one of {', '.join(algorithms(collective))} for {collective}, "
                              f"got {algorithm!r}")
    itemsize = np.dtype(dtype).itemsize
    odd = [s for s in sizes if s <= 0 or s % itemsize]
    if odd:
        raise BenchInputError(f"--sizes: every size must be a positive multiple of {itemsize} bytes ({dtype}), "
                              f"got {odd[0]}")
    if device == "cuda" and "cuda" not in devices_available():
        raise BenchInputError("--device cuda: no CUDA device is available (numba.cuda.is_available() is False)")


def _busbw(collective: str, ranks: int, algbw: float) -> float | None:
    try:
        return algbw * bus_factor(collective, ranks)
    except ValueError:  # parameter-server traffic has no bus-bandwidth convention
        return None


def bench(
    *,
    device: str = "cpu",
    algorithm: str = "ring",
    ranks: Sequence[int] = (2,),
    sizes: Sequence[int] = (1 << 20,),
    collective: str = "allreduce",
    dtype: str = "float32",
    repeats: int = 5,
    warmup: int = 2,
    mode: str = "process",
    progress: Callable[[dict], None] | None = None,
    **topology_info: object,
) -> list[dict]:
    """One row per (ranks, size): median/min/max seconds, algbw and busbw in GB/s, and the raw timings.

    Parameters
    ----------
    sizes : bytes per rank (multiples of the dtype's size).
    ranks : rank counts (workers, for ps_push / ps_pull).
    progress : called with each row as soon as it is measured.
    **topology_info : passed to the schedule builder (``devices_per_node``, ``root``, ...).
    """
    check_arguments(device, collective, algorithm, dtype, mode, sizes, repeats)
    for p in ranks:   # before any rank starts: a call that cannot fit is one line, not an out-of-memory kill
        if mode == "process" and device == "cpu":
            check_processes(p)
        check_memory(p, max(sizes), processes=mode == "process" and device == "cpu")
    itemsize = np.dtype(dtype).itemsize
    rows = []
    for p in ranks:
        try:
            schedules = [element_schedule(algorithm, p, size // itemsize, dtype, collective, **topology_info)
                         for size in sizes]
        except ScheduleError as e:
            raise BenchInputError(f"--ranks {p}: {e}") from None
        with executor(device, schedules[0].ranks, mode=mode) as ex:
            for size, s in zip(sizes, schedules, strict=True):
                seconds = ex.time(s, dtype, repeats=repeats, warmup=warmup)
                # a median below the clock's resolution is reported as that resolution (never an infinite rate)
                median = max(float(np.median(seconds)), time.get_clock_info("perf_counter").resolution)
                algbw = size / median / 1e9
                row = {"device": device, "mode": ex.mode, "collective": collective, "algorithm": algorithm,
                       "ranks": p, "dtype": dtype, "size_bytes": int(size), "time_s": median,
                       "time_min_s": float(seconds.min()), "time_max_s": float(seconds.max()),
                       "algbw_GBps": algbw, "busbw_GBps": _busbw(collective, p, algbw),
                       "repeats": repeats, "times_s": seconds.tolist()}
                rows.append(row)
                if progress:
                    progress(row)
    return rows
