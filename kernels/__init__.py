"""The collectives of :mod:`simulator.collectives`, executed by real Numba kernels on CPUs and GPUs.

A :class:`~simulator.collectives.Schedule` is lowered to flat arrays
(:mod:`kernels.lowering`) and executed step by step on one buffer per rank:

* ``device="cpu"``: one OS process per rank over shared memory (or one thread
  per rank, ``mode="thread"``), ``@njit(nogil=True)`` copy/reduce kernels,
  a barrier between steps (:mod:`kernels.cpu`);
* ``device="cuda"``: one device buffer per rank on one GPU, one kernel launch
  per step (:mod:`kernels.cuda`); runs under ``NUMBA_ENABLE_CUDASIM=1`` too.

Results equal numpy's reduction (the tests check every registered algorithm),
which is what lets ``validation`` time them to calibrate the simulator.

>>> import numpy as np, kernels
>>> from simulator.collectives import schedule
>>> bufs = [np.arange(6, dtype=np.int32) * (r + 1) for r in range(3)]
>>> out = kernels.run_collective(schedule("ring", 3, bufs[0].nbytes), bufs)
>>> out[2].tolist()
[0, 6, 12, 18, 24, 30]

``import kernels`` imports numpy and :mod:`simulator.collectives` only; Numba
is imported when an executor starts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulator.collectives import Schedule

from ._base import Executor, KernelError
from .lowering import DTYPES

__all__ = ["DTYPES", "Executor", "KernelError", "devices_available", "executor", "run_collective"]

DEVICES = ("cpu", "cuda")
MODES = ("process", "thread")


def devices_available() -> list[str]:
    """``["cpu"]``, plus ``"cuda"`` when ``numba.cuda.is_available()`` (also true under the CUDA simulator)."""
    from numba import cuda

    return ["cpu", "cuda"] if cuda.is_available() else ["cpu"]


def executor(device: str = "cpu", ranks: int = 2, *, mode: str = "process", timeout_s: float = 60.0,
             pin: bool = False, flush_bytes: int = 0) -> Executor:
    """Start an executor for ``ranks`` ranks; use it as a context manager.

    Parameters
    ----------
    device : ``"cpu"`` or ``"cuda"``.
    ranks : number of ranks (for parameter-server schedules: workers + servers).
    mode : CPU only: ``"process"`` (one OS process per rank, shared memory) or
        ``"thread"`` (one thread per rank, for comparison).
    timeout_s : seconds a rank may wait at a barrier (and the executor for any
        sign of progress) before the call fails with :class:`KernelError`.
    pin : CPU processes only: pin rank ``r`` to the ``r``-th CPU this process may
        run on, when there are at least ``ranks`` of them (``Executor.pinned``
        says whether it did; ``Executor.oversubscribed`` when there are fewer).
    flush_bytes : CPU only: before each repetition every rank sweeps a private
        buffer this large, so the collective starts with cold caches (0: warm,
        the inputs were just copied into place).

    Examples
    --------
    >>> from simulator.collectives import schedule
    >>> with executor("cpu", 2, mode="thread") as ex:
    ...     seconds = ex.time(schedule("ring", 2, 4096), "float32", repeats=3)
    >>> len(seconds)
    3
    """
    if device not in DEVICES:
        raise ValueError(f"device: expected one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda":
        from .cuda import CudaExecutor

        if pin or flush_bytes:
            raise ValueError("pin and flush_bytes: CPU executors only (a GPU's ranks share one device)")
        return CudaExecutor(ranks, timeout_s)
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    from .cpu import ProcessExecutor, ThreadExecutor

    if mode == "thread":
        if pin:
            raise ValueError("pin: process mode only (threads of one process share its affinity)")
        return ThreadExecutor(ranks, timeout_s, flush_bytes=flush_bytes)
    return ProcessExecutor(ranks, timeout_s, pin=pin, flush_bytes=flush_bytes)


def run_collective(
    schedule: Schedule, buffers: Sequence[np.ndarray], device: str = "cpu", *, op: str = "sum"
) -> list[np.ndarray]:
    """Execute ``schedule`` once on ``buffers`` (one array per rank) and return each rank's output.

    Opens an executor for ``schedule.ranks`` ranks (one process per rank on the
    CPU), runs, and closes it; for repeated calls keep an :func:`executor` open.
    The inputs are not modified. ``buffers[r].nbytes`` must equal
    ``schedule.size_bytes``; see :func:`kernels.lowering.collect_outputs` for
    what each rank's output holds per collective.
    """
    with executor(device, schedule.ranks) as ex:
        return ex.run(schedule, buffers, op=op)
