"""What one CPU rank executes: chunk kernels, a barrier, and the loop over a lowered schedule.

The executors in :mod:`kernels.cpu` start one of these per rank, as an OS
process (:func:`rank_main`, the MPI-like mode) or as a thread. A rank holds
views of every rank's workspace (shared memory in process mode) and, for each
step, executes the transfers it *receives*: it reads the peer's chunk and
copies or reduces it into its own workspace with an ``@njit(nogil=True)``
kernel. Steps are separated by barriers; a step with staged transfers (see
:mod:`kernels.lowering`) first copies those sources into the rank's private
receive buffer, waits at a barrier, then writes.

Kernels are compiled (or loaded from Numba's cache) for every dtype by
:func:`warm_up` when a rank starts, so no timed region ever compiles.

Barriers never block forever: :class:`SpinBarrier` (processes) and
:class:`ThreadBarrier` raise :class:`BarrierTimeout` after ``timeout_s`` and
:class:`Aborted` as soon as another party gives up, so a dead or stuck rank
turns into an error on every rank, never a hang.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np
from numba import njit

from . import _ops
from .lowering import DTYPES, Lowered

__all__ = [
    "Aborted",
    "BarrierTimeout",
    "Job",
    "RankRunner",
    "SpinBarrier",
    "ThreadBarrier",
    "copy_into",
    "rank_main",
    "warm_up",
]

# control segment layout (int64 words): [0] abort flag; flags of rank r at FLAGS + r * STRIDE
ABORT, FLAGS, STRIDE = 0, 8, 8  # one 64-byte cache line per rank's flag
EXIT_INJECTED = 17
PAGE = 4096  # bytes; one write per page faults a segment in


# --------------------------------------------------------------------------- kernels


@njit(nogil=True, cache=True)
def copy_into(dst, src):
    """``dst[:] = src`` (1-D, same length)."""
    for i in range(dst.shape[0]):
        dst[i] = src[i]


@njit(nogil=True, cache=True)
def sum_into(dst, src):
    """``dst[:] = dst + src``: reads 2n, writes n elements."""
    for i in range(dst.shape[0]):
        dst[i] = _ops.op_sum(dst[i], src[i])


@njit(nogil=True, cache=True)
def max_into(dst, src):
    """``dst[:] = max(dst, src)``."""
    for i in range(dst.shape[0]):
        dst[i] = _ops.op_max(dst[i], src[i])


@njit(nogil=True, cache=True)
def min_into(dst, src):
    """``dst[:] = min(dst, src)``."""
    for i in range(dst.shape[0]):
        dst[i] = _ops.op_min(dst[i], src[i])


REDUCERS = {"sum": sum_into, "max": max_into, "min": min_into}


@njit(nogil=True, cache=True)
def reached(flags, epoch):
    """True once every rank's barrier counter is at least ``epoch`` (a fresh load of each, every call)."""
    for i in range(flags.shape[0]):
        if flags[i] < epoch:
            return False
    return True


def warm_up() -> None:
    """Compile (or load from cache) every kernel for every dtype, on the array types ranks use."""
    for name in DTYPES:
        a = np.zeros(8, dtype=name)
        b = np.ones(8, dtype=name)
        for fn in (copy_into, *REDUCERS.values()):
            fn(a[:4], b[4:])
    reached(np.zeros(2 * STRIDE, dtype=np.int64)[::STRIDE], 0)


# --------------------------------------------------------------------------- barriers


class Aborted(Exception):
    """Another rank (or the executor) gave up; stop quietly."""


class BarrierTimeout(Exception):
    """A barrier waited longer than ``timeout_s``."""


class SpinBarrier:
    """A barrier over per-rank epoch counters in shared memory (no locks, no system calls).

    Rank ``r`` writes its own counter only, so no atomic operations are
    needed; a rank passes barrier ``e`` once every counter is ``>= e``.
    Counters only grow, so no reset or sense reversal is needed either. On
    x86-64 (total store order) the data a rank wrote before raising its counter
    is visible to any rank that sees the counter; that is the only ordering
    the executor relies on. Waiting checks ``spins`` times, then yields the CPU
    between checks, so oversubscribed ranks (more ranks than cores) still make
    progress: on 2 cores a 4-rank barrier costs about 5 us yielding at once
    and about 50 us after 64 spins.
    """

    def __init__(self, control: np.ndarray, rank: int, ranks: int, timeout_s: float, spins: int = 4) -> None:
        self.control = control
        self.flags = control[FLAGS:FLAGS + ranks * STRIDE:STRIDE]
        self.rank, self.timeout_s, self.spins = rank, timeout_s, spins
        self.epoch = int(self.flags[rank])

    def wait(self) -> None:
        self.epoch += 1
        epoch, flags = self.epoch, self.flags
        flags[self.rank] = epoch
        spins = 0
        deadline = 0.0
        while not reached(flags, epoch):
            spins += 1
            if spins < self.spins:
                continue
            os.sched_yield()
            if spins % 256:
                continue
            if self.control[ABORT]:
                raise Aborted
            now = time.monotonic()
            deadline = deadline or now + self.timeout_s
            if now > deadline:
                late = np.flatnonzero(flags < epoch).tolist()
                raise BarrierTimeout(f"rank {self.rank}: barrier {epoch} waited {self.timeout_s:g} s for ranks {late}")

    def abort(self) -> None:
        self.control[ABORT] = 1


class ThreadBarrier:
    """``threading.Barrier`` with the same interface as :class:`SpinBarrier`."""

    def __init__(self, ranks: int, timeout_s: float) -> None:
        self.barrier = threading.Barrier(ranks)
        self.timeout_s = timeout_s

    def wait(self) -> None:
        start = time.monotonic()
        try:
            self.barrier.wait(self.timeout_s)
        except threading.BrokenBarrierError:
            if time.monotonic() - start >= self.timeout_s:
                raise BarrierTimeout(f"a thread barrier waited {self.timeout_s:g} s") from None
            raise Aborted from None

    def abort(self) -> None:
        self.barrier.abort()


# --------------------------------------------------------------------------- one rank


@dataclass(frozen=True)
class Job:
    """One command for every rank: run ``low`` ``warmup + repeats`` times.

    ``segments`` (process mode) names each rank's shared-memory segment; a
    segment holds ``[initial | workspace | snapshot]``, each ``stride`` bytes.
    ``fault`` is a test hook ``(rank, step, kind)`` with kind ``"exit"`` (the
    rank dies) or ``"hang"`` (it stops responding) at that step. ``flush_bytes``
    > 0: before each repetition (after its inputs are copied into place) the rank
    reads and writes a private buffer of that many bytes, evicting its workspace
    from the caches it fits in (a *cold-cache* measurement).
    """

    low: Lowered
    dtype: str
    op: str
    warmup: int
    repeats: int
    snapshot: bool
    segments: tuple[str, ...] = ()
    stride: int = 0
    fault: tuple[int, int, str] | None = None
    flush_bytes: int = 0


Op = tuple[Callable, np.ndarray, np.ndarray]


def build_program(low: Lowered, rank: int, work: list[np.ndarray], op: str) -> list[tuple[list[Op], list[Op], bool]]:
    """Per step: (staging copies, writes, staged?) for ``rank``; ``work`` holds every rank's workspace."""
    stage = np.empty(low.stage_rank_elems, dtype=work[rank].dtype)
    reducer = REDUCERS[op]
    program = []
    for s in range(low.steps):
        stage_ops: list[Op] = []
        write_ops: list[Op] = []
        for t in range(low.rank_ptr[s, rank], low.rank_ptr[s, rank + 1]):
            c = low.chunk[t]
            lo, n = low.chunk_lo[c], low.chunk_n[c]
            if n == 0:
                continue
            source = work[low.src[t]][lo:lo + n]
            if low.staged[t]:
                buf = stage[low.stage_rank_off[t]:low.stage_rank_off[t] + n]
                stage_ops.append((copy_into, buf, source))
                source = buf
            write_ops.append((reducer if low.reduce[t] else copy_into, work[rank][lo:lo + n], source))
        if low.step_ptr[s + 1] > low.step_ptr[s]:  # every rank skips the same empty steps
            program.append((stage_ops, write_ops, bool(low.step_staged[s])))
    return program


class RankRunner:
    """Executes jobs for one rank; ``fault_action(kind)`` implements the test hook."""

    def __init__(self, rank: int, barrier: SpinBarrier | ThreadBarrier, fault_action: Callable[[str], None]):
        self.rank, self.barrier, self.fault_action = rank, barrier, fault_action
        self._flush = np.zeros(0)

    def flush(self, nbytes: int) -> None:
        """Read and write ``nbytes`` of a private buffer (kept between jobs): what was cached is evicted."""
        if self._flush.nbytes < nbytes:
            self._flush = np.zeros(-(-nbytes // 8))
        self._flush += 1.0

    def serve(self, job: Job, initial: np.ndarray, work: list[np.ndarray], snapshot: np.ndarray | None) -> list[float]:
        """Run the job; return the seconds of each timed repetition (barrier exit to barrier exit)."""
        program = build_program(job.low, self.rank, work, job.op)
        fault_step = job.fault[1] if job.fault and job.fault[0] == self.rank else -1
        mine, wait = work[self.rank], self.barrier.wait
        seconds = []
        for rep in range(job.warmup + job.repeats):
            copy_into(mine, initial)
            if job.flush_bytes:
                self.flush(job.flush_bytes)
            wait()
            start = time.perf_counter()
            for i, (stage_ops, write_ops, staged) in enumerate(program):
                if i == fault_step:
                    self.fault_action(job.fault[2])
                for fn, dst, src in stage_ops:
                    fn(dst, src)
                if staged:
                    wait()
                for fn, dst, src in write_ops:
                    fn(dst, src)
                wait()
            stop = time.perf_counter()
            if rep >= job.warmup:
                seconds.append(stop - start)
            if rep == job.warmup and snapshot is not None:
                copy_into(snapshot, mine)
        return seconds


# --------------------------------------------------------------------------- process mode


def attach(name: str) -> SharedMemory:
    """Open an existing segment without registering it with the resource tracker.

    Python 3.11 registers segments a process merely *opens*, and the tracker
    would unlink them when that process exits; the executor's own process owns
    (and unlinks) every segment, so ranks must not.
    """
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def _release(segment: SharedMemory) -> None:
    try:
        segment.close()
    except BufferError:  # a view is still alive somewhere; the mapping goes with the process
        pass


class _Segments:
    """The rank's mapped view of every rank's segment, re-attached when the executor grows them."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.open: list[SharedMemory] = []

    def attach(self, names: tuple[str, ...]) -> None:
        """Map the executor's new segments (it unlinks their names once every rank has: so this step is short,
        and a kill of the whole process group while it runs leaves the fewest names behind)."""
        for segment in self.open:
            _release(segment)
        self.open = [attach(name) for name in names]
        self.names = names

    def prefault(self, rank: int) -> None:
        """Fault in this rank's own segment now, one write per page from this rank's core (first touch: its pages
        are placed here, and no timed repetition pays a page fault)."""
        mine = np.ndarray((self.open[rank].size,), dtype=np.uint8, buffer=self.open[rank].buf)
        mine[::PAGE] = 0
        del mine

    def views(self, job: Job, rank: int) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
        if job.segments != self.names:
            raise RuntimeError(f"job for segments {job.segments}, but this rank has mapped {self.names}")
        elems = job.low.elems

        def view(r: int, k: int) -> np.ndarray:
            return np.ndarray((elems,), dtype=job.dtype, buffer=self.open[r].buf, offset=k * job.stride)

        work = [view(r, 1) for r in range(len(self.open))]
        return view(rank, 0), work, view(rank, 2) if job.snapshot else None


def _one_line(e: BaseException) -> str:
    """``Type: message (file:line)`` of the innermost frame: a rank's failure as one line."""
    frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" ({Path(frame.filename).name}:{frame.lineno})" if frame else ""
    return f"{type(e).__name__}: {' '.join(str(e).split())}{where}"


def _die(kind: str) -> None:
    if kind == "exit":
        os._exit(EXIT_INJECTED)
    time.sleep(3600)


def rank_main(rank: int, ranks: int, control_name: str, conn, timeout_s: float, cpu: int | None = None) -> None:
    """Entry point of a rank process: pin to ``cpu`` (when given), warm up, then serve jobs from ``conn``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    control_segment = attach(control_name)
    control = np.ndarray((FLAGS + ranks * STRIDE,), dtype=np.int64, buffer=control_segment.buf)
    warm_up()
    barrier = SpinBarrier(control, rank, ranks, timeout_s, spins=4 if ranks <= cores else 1)
    runner = RankRunner(rank, barrier, _die)
    segments = _Segments()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the executor went away
            break
        if message[0] in ("attach", "prefault"):
            try:
                if message[0] == "attach":
                    segments.attach(message[1])
                else:
                    segments.prefault(rank)
                conn.send(("ok", None))
            except Exception as e:  # noqa: BLE001 - reported to the executor as a KernelError
                conn.send(("error", _one_line(e)))
            continue
        if message[0] != "run":
            break
        job, initial, work, snapshot = message[1], None, None, None
        try:
            initial, work, snapshot = segments.views(job, rank)
            reply = ("ok", runner.serve(job, initial, work, snapshot))
        except Aborted:
            reply = ("aborted", None)
        except BarrierTimeout as e:
            barrier.abort()
            reply = ("error", str(e))
        except Exception as e:  # noqa: BLE001 - reported to the executor as a KernelError
            barrier.abort()
            reply = ("error", _one_line(e))
        del initial, work, snapshot
        conn.send(reply)
