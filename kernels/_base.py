"""What every executor shares: the error type, argument checks, test data and the numpy oracle.

An executor (:mod:`kernels.cpu`, :mod:`kernels.cuda`) implements one method,
``_execute``: run a :class:`~kernels.lowering.Lowered` plan on initial
workspaces, ``warmup + repeats`` times, and return the workspaces after the
first timed repetition plus the seconds of each timed one. ``run`` and ``time``
are written here once, on top of it.

The oracle (:func:`expected`) states each collective's postcondition on real
values, mirroring ``simulator.collectives.schedule.verify``'s symbolic one: the
reduction over all (worker) ranks for the summing collectives, the owner's
data for the copying ones.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from simulator.collectives import Schedule

from .lowering import DTYPES, Lowered, collect_outputs, fill_inputs, lower, place_inputs

__all__ = ["SEED", "Executor", "KernelError", "check", "expected", "random_buffers"]

#: seed of the buffers ``Executor.time`` fills
SEED = 20240605
_SUMMING = ("allreduce", "reduce", "reduce_scatter", "ps_push")
_OPS = ("sum", "max", "min")


class KernelError(RuntimeError):
    """A collective could not be executed, or produced a wrong result.

    Raised when a rank process dies or hangs (the message names the rank and
    what was running), when a barrier times out, when the device is
    unavailable, and when ``Executor.time(check=True)`` finds a result that
    differs from numpy's.
    """


BUFFERS_PER_RANK = 6                # inputs, placed inputs, workspace, snapshot, oracle and its tolerance
RANK_PROCESS_BYTES = 80 * 2**20     # a rank process's own memory (Numba + numpy: ~57 MB anonymous, measured)
MEMORY_SHARE = 0.8                  # of what the machine has available, at most this much for one call


def available_bytes() -> int:
    """Memory the machine can still give (``MemAvailable``), else its physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_memory(ranks: int, nbytes: int = 0, *, processes: bool = False) -> None:
    """Refuse (one-line :class:`KernelError`) a call whose buffers — and rank processes — would not fit in memory."""
    need = BUFFERS_PER_RANK * ranks * int(nbytes) + (RANK_PROCESS_BYTES * ranks if processes else 0)
    have = available_bytes()
    if need > MEMORY_SHARE * have:
        what = f"{ranks} ranks" + (f" × {int(nbytes):,} bytes" if nbytes else " (one process each)")
        raise KernelError(f"{what} need about {need / 1e9:.1f} GB of memory; {have / 1e9:.1f} GB are available "
                          "(fewer ranks or smaller sizes)")


PROCESSES_PER_CPU = 4               # rank processes per CPU beyond which a timing measures the OS scheduler


def check_processes(ranks: int) -> None:
    """Refuse to *time* more rank processes than ``PROCESSES_PER_CPU`` per CPU this process may run on (one
    line); running a schedule to check its result with more is fine (the tests do)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if ranks > PROCESSES_PER_CPU * cpus:
        raise KernelError(f"{ranks} ranks: at most {PROCESSES_PER_CPU * cpus} rank processes on this machine's "
                          f"{cpus} CPU(s) ({PROCESSES_PER_CPU} per CPU; more would time the OS scheduler, "
                          "not the collective)")


def random_buffers(ranks: int, nelems: int, dtype: str, seed: int = SEED) -> list[np.ndarray]:
    """One seeded buffer per rank: floats uniform in [-1, 1), int32 in [-1000, 1000]."""
    out = []
    for buf in _random_rows(ranks, nelems, dtype, seed):
        out.append(np.empty(nelems, dtype=dtype))
        buf(out[-1])
    return out


_BLOCK = 1 << 20  # elements per block when filling or checking big buffers (bounded temporaries)


def _random_rows(ranks: int, nelems: int, dtype: str, seed: int = SEED):
    """Per rank, in rank order, a function that fills a buffer with :func:`random_buffers`' data for that rank.

    Floats are drawn in blocks (the generator's stream is the same as one call's), so filling a 64 MiB
    buffer needs no 128 MiB float64 temporary; integers in one call, as before.
    """
    rng = np.random.default_rng(seed)
    for _ in range(ranks):
        def fill(out: np.ndarray) -> None:
            if np.dtype(dtype).kind == "i":
                out[:] = rng.integers(-1000, 1001, nelems).astype(dtype)
                return
            for lo in range(0, nelems, _BLOCK):
                out[lo:lo + _BLOCK] = rng.uniform(-1.0, 1.0, min(_BLOCK, nelems - lo))
        yield fill


def _reduce(op: str, rows: np.ndarray) -> np.ndarray:
    if op == "sum":
        return np.sum(rows, axis=0, dtype=rows.dtype)  # int32 sums wrap, as the kernels' do
    return (np.max if op == "max" else np.min)(rows, axis=0)


def _cells(low: Lowered) -> tuple[np.ndarray, np.ndarray]:
    """(rank, chunk) pairs whose final contents the collective defines."""
    chunks = np.arange(low.chunk_n.shape[0])
    every = np.repeat(np.arange(low.workers), chunks.shape[0]), np.tile(chunks, low.workers)  # not switches
    owner = low.chunk_owner
    match low.collective:
        case "allreduce" | "broadcast" | "allgather":
            return every
        case "reduce":
            return np.full(chunks.shape[0], low.root), chunks
        case "reduce_scatter" | "ps_push":
            return owner, chunks
        case "alltoall":
            return chunks % low.ranks, chunks
        case "ps_pull":
            return np.repeat(np.arange(low.workers), chunks.shape[0]), np.tile(chunks, low.workers)
    raise ValueError(f"no oracle for collective {low.collective!r}")


def expected(low: Lowered, init: np.ndarray, op: str) -> tuple[np.ndarray, np.ndarray]:
    """Expected final workspaces and a mask of the elements the collective defines.

    ``init`` is :func:`~kernels.lowering.place_inputs`' ``(ranks, elems)`` array.
    """
    want = np.zeros_like(init)
    mask = np.zeros(init.shape, dtype=bool)
    if low.collective in _SUMMING:
        source = _reduce(op, init[: low.workers])
    else:
        source = None
    for r, c in zip(*_cells(low), strict=True):
        lo, hi = low.chunk_lo[c], low.chunk_lo[c] + low.chunk_n[c]
        if source is not None:
            want[r, lo:hi] = source[lo:hi]
        else:
            origin = low.root if low.collective == "broadcast" else low.chunk_owner[c]
            want[r, lo:hi] = init[origin, lo:hi]
        mask[r, lo:hi] = True
    return want, mask


def tolerance(low: Lowered, init: np.ndarray, op: str) -> np.ndarray | float:
    """Allowed absolute error per element (0 where the result must be exact).

    Integers, max, min and copies are exact. A float sum of ``p`` terms added in
    another order than numpy's differs from it by at most ``(p - 1) eps sum|x_i|``
    for each order (Higham, *Accuracy and Stability of Numerical Algorithms*,
    2002, eq. 4.4), so two orders differ by at most twice that; we allow
    ``2 p eps sum|x_i|``.
    """
    if op != "sum" or low.collective not in _SUMMING or np.dtype(init.dtype).kind != "f":
        return 0.0
    eps = np.finfo(init.dtype).eps
    p = low.workers
    return 2 * p * eps * np.abs(init[:p].astype(np.float64)).sum(axis=0)


def check(low: Lowered, init: Sequence[np.ndarray], got: Sequence[np.ndarray], op: str) -> None:
    """Raise :class:`KernelError` unless ``got`` (final workspaces) matches the oracle.

    ``init`` and ``got`` are per-rank rows (a ``(ranks, elems)`` array or a list of views of the
    executor's buffers). The comparison is :func:`expected` and :func:`tolerance` applied block by
    block (:data:`_BLOCK` elements of one cell at a time), so checking 4 ranks x 64 MiB needs a few
    MiB of temporaries, not copies of every rank's buffer; the first wrong element (lowest rank, then
    element) and the count are what the whole-array comparison reports.
    """
    first: tuple[int, int, object, object] | None = None
    wrong = 0
    summing = low.collective in _SUMMING
    p = low.workers
    for r, c in zip(*_cells(low), strict=True):
        lo, hi = int(low.chunk_lo[c]), int(low.chunk_lo[c] + low.chunk_n[c])
        for b in range(lo, hi, _BLOCK):
            e = min(hi, b + _BLOCK)
            if summing:
                block = np.stack([init[w][b:e] for w in range(p)])
                want = _reduce(op, block)
                tol = tolerance(low, block, op)
            else:
                origin = low.root if low.collective == "broadcast" else int(low.chunk_owner[c])
                want, tol = init[origin][b:e], 0.0
            mine = got[r][b:e]
            bad = np.abs(mine.astype(np.float64) - want.astype(np.float64)) > tol
            if bad.any():
                wrong += int(bad.sum())
                i = int(np.argmax(bad))
                if first is None or (r, b + i) < first[:2]:
                    first = (r, b + i, mine[i], want[i])
    if first is not None:
        r, i, value, want_i = first
        raise KernelError(
            f"{low.label()}, op {op}: rank {r} element {i} is {value!r}, numpy says "
            f"{want_i!r} ({wrong} wrong elements)"
        )


class Executor(abc.ABC):
    """Runs schedules on ``ranks`` ranks of one device; use as a context manager.

    Subclasses implement :meth:`_execute` and :meth:`close`.
    """

    device: str = ""
    mode: str = ""

    #: ranks are pinned one per CPU (the CPU of each rank), or None
    pinned: list[int] | None = None
    #: more ranks than CPUs this process may use (timings then include the scheduler's time slices)
    oversubscribed: bool = False

    def __init__(self, ranks: int, timeout_s: float, *, flush_bytes: int = 0) -> None:
        if int(ranks) < 1:
            raise ValueError(f"executor: ranks must be >= 1, got {ranks}")
        if not timeout_s > 0:
            raise ValueError(f"executor: timeout_s must be > 0, got {timeout_s}")
        if int(flush_bytes) < 0:
            raise ValueError(f"executor: flush_bytes must be >= 0, got {flush_bytes}")
        self.ranks = int(ranks)
        self.timeout_s = float(timeout_s)
        self.flush_bytes = int(flush_bytes)
        self.closed = False

    def reserve(self, schedule: Schedule, dtype: str = "float32") -> None:
        """Allocate (and fault in) the buffers of ``schedule`` now, so that later calls up to its size reuse them
        (no buffer regrown or page first touched between two timed points). A no-op where buffers are not kept."""
        dt = np.dtype(dtype)
        self._reserve(self._lower(schedule, dt, "sum"), dt)

    def _reserve(self, low: Lowered, dtype: np.dtype) -> None:  # noqa: B027 - optional for a backend
        """What :meth:`reserve` does for this backend (default: nothing)."""

    # -- what a backend provides -------------------------------------------------

    @abc.abstractmethod
    def _execute(
        self, low: Lowered, init: np.ndarray, op: str, warmup: int, repeats: int, snapshot: bool
    ) -> tuple[np.ndarray | None, list[float]]:
        """Run ``warmup + repeats`` times from ``init``; (workspaces after the first timed one, seconds)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the ranks and free every buffer; idempotent."""

    # -- shared -------------------------------------------------------------------

    def _input_rows(self, low: Lowered, dtype: np.dtype) -> Any:
        """Writable ``(ranks, elems)`` rows that :meth:`_execute` accepts as ``init``."""
        return np.zeros((low.ranks, low.elems), dtype=dtype)

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<{type(self).__name__} device={self.device} mode={self.mode} ranks={self.ranks} {state}>"

    def _lower(self, s: Schedule, dtype: np.dtype, op: str) -> Lowered:
        if self.closed:
            raise KernelError(f"{self!r}: the executor is closed")
        if op not in _OPS:
            raise ValueError(f"op: expected one of {', '.join(_OPS)}, got {op!r}")
        if dtype.name not in DTYPES:
            raise ValueError(f"dtype: expected one of {', '.join(DTYPES)}, got {dtype.name!r}")
        if s.ranks != self.ranks:
            raise ValueError(f"{s!r} addresses {s.ranks} ranks; this executor has {self.ranks}")
        return lower(s, dtype.itemsize)

    def run(self, schedule: Schedule, buffers: Sequence[np.ndarray], op: str = "sum") -> list[np.ndarray]:
        """Execute ``schedule`` once on ``buffers`` (one per rank); return each rank's output.

        The inputs are not modified. See :func:`~kernels.lowering.collect_outputs`
        for what each rank's output holds per collective.
        """
        buffers = [np.asarray(b) for b in buffers]
        if len(buffers) != self.ranks:
            raise ValueError(f"expected {self.ranks} buffers (one per rank), got {len(buffers)}")
        shape, dtype = buffers[0].shape, buffers[0].dtype
        if any(b.shape != shape or b.dtype != dtype for b in buffers):
            raise ValueError("every rank's buffer must have the same shape and dtype")
        low = self._lower(schedule, dtype, op)
        if buffers[0].nbytes != schedule.size_bytes:
            raise ValueError(f"{schedule!r} is for {schedule.size_bytes} bytes per rank, the buffers have "
                             f"{buffers[0].nbytes}")
        check_memory(self.ranks, low.elems * dtype.itemsize)
        init = place_inputs(low, buffers, op)
        work, _ = self._execute(low, init, op, 0, 1, True)
        assert work is not None
        return collect_outputs(low, work, shape)

    def time(
        self,
        schedule: Schedule,
        dtype: str = "float32",
        *,
        repeats: int = 5,
        warmup: int = 2,
        op: str = "sum",
        check: bool = True,
    ) -> np.ndarray:
        """Seconds of each of ``repeats`` timed executions, after ``warmup`` untimed ones.

        Buffers of ``schedule.size_bytes`` bytes are filled with seeded random
        data (:func:`random_buffers`); every repetition starts from them. With
        ``check``, the first timed repetition's result is compared with numpy's
        and a mismatch raises :class:`KernelError`. Kernels are compiled when the
        executor starts, never inside a timed repetition.
        """
        dt = np.dtype(dtype)
        if repeats < 1 or warmup < 0:
            raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
        low = self._lower(schedule, dt, op)
        if schedule.size_bytes % dt.itemsize:
            raise ValueError(f"{schedule!r}: {schedule.size_bytes} bytes is not a whole number of {dt.name}")
        check_memory(self.ranks, low.elems * dt.itemsize)
        init = self._input_rows(low, dt)  # the process executor's shared buffers: no private copy
        fill_inputs(low, init, _random_rows(self.ranks, schedule.size_bytes // dt.itemsize, dt.name), op)
        work, seconds = self._execute(low, init, op, warmup, repeats, check)
        if check:
            assert work is not None
            _check(low, init, work, op)
        return np.asarray(seconds, dtype=np.float64)


_check = check
