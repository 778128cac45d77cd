"""CUDA executor: every rank is a buffer on one GPU; one kernel launch executes a whole step.

The ranks' workspaces are the rows of one ``(ranks, elems)`` device array, so
a single launch can reach every rank's buffer (one row per rank: separate
buffers as far as the schedule is concerned, one allocation as far as Numba
is). A step is executed by :func:`apply_step`, which walks the step's
*groups* (all the transfers that write one target cell, see
:mod:`kernels.lowering`): each element of the target is read once, combined
with every incoming contribution in schedule order with
:func:`kernels._ops.combine`, and written once, so concurrent reduces into
one target never race. A step whose sources are also written in that step
first copies them into a staging buffer with :func:`stage_step` (one more
launch), as the CPU ranks do with their receive buffers.

Launch geometry
---------------
2-D grid, 1-D blocks. ``blockDim.x = 256`` threads; ``gridDim.y`` = the step's
groups (transfers, for staging), at most 65,535, grid-strided; ``gridDim.x`` =
enough blocks of 256 for the largest group, at most ``1024 // gridDim.y``
(at least 1), and every thread walks its group with a grid-stride loop, so
any size is covered. Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``),
where every thread is a Python thread, the geometry shrinks to 4 threads per
block, at most 2 blocks in x and 4 in y: still grid-strided in both
dimensions, so the simulator exercises the same loops.

Timing uses CUDA events around the launches of one repetition (the simulator's
events read zero, so there the wall clock is used); resetting the buffers
between repetitions is a device-to-device copy outside the timed region.
Kernels are compiled for every dtype when the executor starts.
"""

from __future__ import annotations

import math
import time

import numpy as np
from numba import config, cuda

from . import _ops
from ._base import Executor, KernelError
from .lowering import DTYPES, Lowered

__all__ = ["CudaExecutor", "apply_step", "geometry", "stage_step"]

SIMULATED = bool(config.ENABLE_CUDASIM)
THREADS = 4 if SIMULATED else 256
MAX_BLOCKS_X = 2 if SIMULATED else 1024
MAX_BLOCKS_Y = 4 if SIMULATED else 65535
BLOCK_BUDGET = 8 if SIMULATED else 1024


@cuda.jit
def stage_step(bufs, stage, src, chunk, chunk_lo, chunk_n, stage_off, t0, t1):
    """Copy the staged sources of transfers ``t0..t1`` into ``stage`` (y: transfers, x: elements)."""
    start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    stride = cuda.gridDim.x * cuda.blockDim.x
    for t in range(t0 + cuda.blockIdx.y, t1, cuda.gridDim.y):
        off = stage_off[t]
        if off >= 0:
            lo = chunk_lo[chunk[t]]
            s = src[t]
            for i in range(start, chunk_n[chunk[t]], stride):
                stage[off + i] = bufs[s, lo + i]


@cuda.jit
def apply_step(bufs, stage, src, reduce, stage_off, grp_ptr, grp_dst, grp_lo, grp_n, g0, g1, op):
    """Write groups ``g0..g1``: each target element combined with all its incoming transfers, in order."""
    start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    stride = cuda.gridDim.x * cuda.blockDim.x
    for g in range(g0 + cuda.blockIdx.y, g1, cuda.gridDim.y):
        d, lo = grp_dst[g], grp_lo[g]
        for i in range(start, grp_n[g], stride):
            acc = bufs[d, lo + i]
            for t in range(grp_ptr[g], grp_ptr[g + 1]):
                off = stage_off[t]
                v = stage[off + i] if off >= 0 else bufs[src[t], lo + i]
                acc = _ops.combine(op, acc, v) if reduce[t] else v
            bufs[d, lo + i] = acc


def geometry(rows: int, longest: int) -> tuple[tuple[int, int], int]:
    """``((blocks_x, blocks_y), threads)`` for ``rows`` groups whose largest has ``longest`` elements."""
    blocks_y = max(1, min(rows, MAX_BLOCKS_Y))
    blocks_x = max(1, min(math.ceil(longest / THREADS), MAX_BLOCKS_X, BLOCK_BUDGET // blocks_y))
    return (blocks_x, blocks_y), THREADS


class _DevicePlan:
    """The lowered arrays on the device and, per step, its launches."""

    NAMES = ("src", "chunk", "reduce", "stage_off", "chunk_lo", "chunk_n", "grp_ptr", "grp_dst", "grp_lo", "grp_n")

    def __init__(self, low: Lowered) -> None:
        self.arrays = {name: cuda.to_device(_nonempty(getattr(low, name))) for name in self.NAMES}
        self.steps = []
        for s in range(low.steps):
            t0, t1 = int(low.step_ptr[s]), int(low.step_ptr[s + 1])
            g0, g1 = int(low.grp_step_ptr[s]), int(low.grp_step_ptr[s + 1])
            if g1 == g0:
                continue
            staged_n = low.chunk_n[low.chunk[t0:t1]][low.staged[t0:t1]]
            stage = geometry(t1 - t0, int(staged_n.max())) if staged_n.size else None
            apply = geometry(g1 - g0, int(low.grp_n[g0:g1].max()))
            self.steps.append((t0, t1, g0, g1, stage, apply))

    def launch(self, bufs, stage, op: int) -> None:
        a = self.arrays
        for t0, t1, g0, g1, stage_geom, apply_geom in self.steps:
            if stage_geom is not None:
                grid, threads = stage_geom
                stage_step[grid, threads](bufs, stage, a["src"], a["chunk"], a["chunk_lo"], a["chunk_n"],
                                          a["stage_off"], t0, t1)
            grid, threads = apply_geom
            apply_step[grid, threads](bufs, stage, a["src"], a["reduce"], a["stage_off"], a["grp_ptr"],
                                      a["grp_dst"], a["grp_lo"], a["grp_n"], g0, g1, op)


class _EventClock:
    """Seconds between two CUDA events recorded on the default stream."""

    def __init__(self) -> None:
        self.begin, self.end = cuda.event(), cuda.event()

    def start(self) -> None:
        self.begin.record()

    def stop(self) -> float:
        self.end.record()
        self.end.synchronize()
        return self.begin.elapsed_time(self.end) / 1e3  # ms -> s


class _WallClock:
    """The simulator's events report zero; time it by the wall clock instead (meaningless, but not zero)."""

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def stop(self) -> float:
        cuda.synchronize()
        return time.perf_counter() - self.t0


def _nonempty(arr: np.ndarray) -> np.ndarray:
    """Device arrays of length 0 are awkward to pass; pad to one (never read)."""
    return arr if arr.size else np.zeros(1, dtype=arr.dtype)


class CudaExecutor(Executor):
    """Executes schedules on one GPU (or on the CUDA simulator); see the module docstring.

    ``timeout_s`` is accepted for symmetry with the CPU executors; GPU kernels
    of a schedule cannot wait on each other, so there is nothing to time out.
    """

    device, mode = "cuda", "device"

    def __init__(self, ranks: int, timeout_s: float = 60.0) -> None:
        super().__init__(ranks, timeout_s)
        if not cuda.is_available():
            raise KernelError("CUDA is not available (no GPU or driver; set NUMBA_ENABLE_CUDASIM=1 to simulate)")
        self.simulated = SIMULATED
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile both kernels for every dtype, so no timed region compiles."""
        from .lowering import element_schedule, lower

        staged = element_schedule("recursive_doubling", 2, 2, "int32")  # both kernels launch
        gathered = element_schedule("sharded", 2, 2, "int32", "ps_push")  # two reduces into one target
        for name in DTYPES:
            for s in (staged, gathered):
                low = lower(s, np.dtype(name).itemsize)
                self._launch(low, np.zeros((s.ranks, low.elems), dtype=name), _ops.SUM, 0, 1, False)

    def _launch(self, low: Lowered, init: np.ndarray, op: int, warmup: int, repeats: int,
                snapshot: bool) -> tuple[np.ndarray | None, list[float]]:
        plan = _DevicePlan(low)
        d_init = cuda.to_device(init)
        bufs = cuda.device_array_like(d_init)
        stage = cuda.device_array(max(1, low.stage_elems), dtype=init.dtype)
        clock = _WallClock() if SIMULATED else _EventClock()
        work, seconds = None, []
        for rep in range(warmup + repeats):
            bufs.copy_to_device(d_init)
            clock.start()
            plan.launch(bufs, stage, op)
            elapsed = clock.stop()
            if rep >= warmup:
                seconds.append(elapsed)
            if rep == warmup and snapshot:
                work = bufs.copy_to_host()
        return work, seconds

    def _execute(self, low: Lowered, init: np.ndarray, op: str, warmup: int, repeats: int,
                 snapshot: bool) -> tuple[np.ndarray | None, list[float]]:
        if self.closed:
            raise KernelError(f"{self!r}: the executor is closed")
        return self._launch(low, init, _ops.OPS[op], warmup, repeats, snapshot)

    def close(self) -> None:
        """Nothing to stop: device buffers are freed with their last reference; idempotent."""
        self.closed = True
