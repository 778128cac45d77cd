"""CPU executors: one OS process per rank over shared memory (as MPI ranks are), or one thread per rank.

Process model (``mode="process"``)
----------------------------------
``ProcessExecutor(ranks)`` starts ``ranks`` processes once (``forkserver``
context on Linux, so each starts from a server that has already imported
Numba and the kernels; ``spawn`` elsewhere). Each rank compiles or loads every
kernel for every dtype before it reports ready, so no call ever compiles.
Buffers live in ``multiprocessing.shared_memory``: one segment per rank,
``[initial | workspace | snapshot]``, created by the executor and grown when a
call needs more; a small control segment holds the barrier counters and an
abort flag. Each segment's name is unlinked as soon as every rank has mapped
it (the mappings stay valid), so a segment lives exactly as long as the
processes that map it: killing the whole process group, or the executor's
process, leaves nothing in ``/dev/shm``. A call sends every rank one :class:`~kernels._cpu_rank.Job` over a
pipe, each rank runs it (see :mod:`kernels._cpu_rank`) and replies with its
timings; the executor copies the snapshots out.

Failures never hang
-------------------
While it waits for replies the executor watches each rank's process sentinel
and the barrier counters. A rank that dies, reports an error or lets the
counters stand still for ``timeout_s`` turns into a :class:`KernelError`
naming the rank and the schedule; the executor then raises the abort flag (the
other ranks leave their barriers), stops every process and unlinks every
segment still named (also on ``close()``, garbage collection and interpreter
exit). Segment names start with :attr:`ProcessExecutor.shm_prefix`. Sending to
a rank that has died (``BrokenPipeError``) is the same failure as its death.

Thread model (``mode="thread"``)
--------------------------------
``ThreadExecutor`` runs the same rank loop in threads of this process (the
kernels release the GIL), with ``threading.Barrier``; it exists to compare
against the process model, not to replace it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import secrets
import sys
import threading
import time
import weakref
from multiprocessing.connection import wait as wait_any
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np

from . import _cpu_rank
from ._base import Executor, KernelError, check_memory
from ._cpu_rank import ABORT, FLAGS, STRIDE, Job, RankRunner, ThreadBarrier
from .lowering import Lowered

__all__ = ["ProcessExecutor", "ThreadExecutor"]

_POLL_S = 0.2
_START_LIMIT_S = 600.0  # a cold Numba cache compiles 12 kernels in every rank
_ALIGN = 4096


def _context() -> mp.context.BaseContext:
    if sys.platform == "linux":
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["kernels._cpu_rank"])
        return ctx
    return mp.get_context("spawn")


def _round_up(n: int) -> int:
    return max(_ALIGN, 1 << (int(n) - 1).bit_length())


class _Resources:
    """Everything a process executor must give back; released once, by close() or a finalizer."""

    def __init__(self) -> None:
        self.procs: list = []
        self.conns: list = []
        self.segments: list[SharedMemory] = []
        self.named: set[str] = set()  # segments whose names are not yet unlinked

    def release(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("stop",))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 2.0
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
        for proc in self.procs:
            if proc.is_alive():
                proc.kill()
                proc.join(2.0)
        for conn in self.conns:
            conn.close()
        for segment in self.segments:
            self.drop(segment)
        self.procs, self.conns, self.segments = [], [], []

    def create(self, size: int, name: str) -> SharedMemory:
        segment = SharedMemory(create=True, size=size, name=name)
        self.segments.append(segment)
        self.named.add(segment.name)
        return segment

    def unlink(self, segment: SharedMemory) -> None:
        """Remove the segment's name (every rank has mapped it; the memory goes with the last mapping)."""
        if segment.name in self.named:
            self.named.discard(segment.name)
            try:
                segment.unlink()
            except FileNotFoundError:
                pass

    def drop(self, segment: SharedMemory) -> None:
        try:
            segment.close()
        except BufferError:
            pass
        self.unlink(segment)


class ProcessExecutor(Executor):
    """``ranks`` rank processes over shared memory; see the module docstring."""

    device, mode = "cpu", "process"

    def __init__(self, ranks: int, timeout_s: float = 60.0, *, pin: bool = False, flush_bytes: int = 0) -> None:
        super().__init__(ranks, timeout_s, flush_bytes=flush_bytes)
        check_memory(ranks, processes=True)
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
        self.oversubscribed = ranks > len(cpus)
        #: the CPU each rank is pinned to (rank r on the r-th CPU this process may use), or None: not pinned
        self.pinned: list[int] | None = cpus[:ranks] if pin and not self.oversubscribed else None
        self.shm_prefix = f"trainsim-{os.getpid()}-{secrets.token_hex(4)}-"
        self._res = _Resources()
        self._finalizer = weakref.finalize(self, self._res.release)
        self._fault: tuple[int, int, str] | None = None
        self._capacity, self._generation = 0, 0
        self._rank_segments: list[SharedMemory] = []
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        words = FLAGS + self.ranks * STRIDE
        control = self._res.create(words * 8, self.shm_prefix + "control")
        self._control = np.ndarray((words,), dtype=np.int64, buffer=control.buf)
        self._control[:] = 0
        ctx = _context()
        for rank in range(self.ranks):
            ours, theirs = ctx.Pipe()
            proc = ctx.Process(target=_cpu_rank.rank_main, name=f"trainsim-rank-{rank}", daemon=True,
                               args=(rank, self.ranks, control.name.lstrip("/"), theirs, self.timeout_s,
                                     None if self.pinned is None else self.pinned[rank]))
            proc.start()
            theirs.close()
            self._res.procs.append(proc)
            self._res.conns.append(ours)
        self.pids = [int(pid) for pid in self._await("starting (a script that starts an executor needs the "
                                                     "`if __name__ == '__main__':` guard)", _START_LIMIT_S)]
        self._res.unlink(control)  # every rank has mapped it

    def _send_all(self, message: tuple, what: str) -> None:
        """Send ``message`` to every rank; a rank gone (broken pipe) fails the call like its death."""
        for r, conn in enumerate(self._res.conns):
            try:
                conn.send(message)
            except (OSError, ValueError):
                proc = self._res.procs[r]
                proc.join(1.0)
                self._fail(f"rank {r} (pid {proc.pid}) died with exit code {proc.exitcode} while {what}", {}, what)

    # -- waiting for the ranks ----------------------------------------------------------

    def _flags(self) -> int:
        return int(self._control[FLAGS::STRIDE][: self.ranks].sum())

    def _await(self, what: str, stall_s: float) -> list:
        """Every rank's reply payload; a death, an error or ``stall_s`` without progress raises KernelError."""
        replies: dict[int, object] = {}
        progress, last = self._flags(), time.monotonic()
        while len(replies) < self.ranks:
            problem = self._poll(replies, what)
            now, flags = time.monotonic(), self._flags()
            if flags != progress:
                progress, last = flags, now
            elif problem is None and now - last > stall_s:
                waiting = [r for r in range(self.ranks) if r not in replies]
                problem = f"ranks {waiting} made no progress for {stall_s:g} s while {what} (timeout_s)"
            if problem is not None:
                self._fail(problem, replies, what)
        return [replies[r] for r in range(self.ranks)]

    def _poll(self, replies: dict[int, object], what: str) -> str | None:
        """Collect the replies that are ready; describe the first failure seen, if any."""
        conns, procs = self._res.conns, self._res.procs
        pending = [r for r in range(self.ranks) if r not in replies]
        ready = wait_any([conns[r] for r in pending] + [procs[r].sentinel for r in pending], _POLL_S)
        problem = None
        for r in pending:
            if conns[r] in ready and conns[r].poll():
                try:
                    status, payload = conns[r].recv()
                except (EOFError, OSError):
                    procs[r].join(1.0)
                    return f"rank {r} (pid {procs[r].pid}) died with exit code {procs[r].exitcode} while {what}"
                replies[r] = payload
                if status == "error":
                    return f"rank {r} failed while {what}: {str(payload).strip()}"
                if status == "aborted":
                    problem = problem or f"rank {r} was aborted while {what}"
            elif procs[r].sentinel in ready:
                return f"rank {r} (pid {procs[r].pid}) died with exit code {procs[r].exitcode} while {what}"
        return problem

    def _fail(self, problem: str, replies: dict[int, object], what: str) -> None:
        """Abort every rank, prefer a rank's own account of what went wrong, close, raise KernelError."""
        self._control[ABORT] = 1
        deadline = time.monotonic() + 2.0
        while problem.endswith("was aborted while " + what) and len(replies) < self.ranks:
            if time.monotonic() > deadline:
                break
            problem = self._poll(replies, what) or problem
        self.close()
        raise KernelError(f"{problem}; the executor is closed")

    # -- buffers ---------------------------------------------------------------------------

    def _segments_for(self, stride: int) -> tuple[str, ...]:
        if 3 * stride > self._capacity:
            for segment in self._rank_segments:
                self._res.segments.remove(segment)
                self._res.drop(segment)
            self._generation += 1
            self._capacity = _round_up(3 * stride)
            self._rank_segments = [self._res.create(self._capacity, f"{self.shm_prefix}r{r}-g{self._generation}")
                                   for r in range(self.ranks)]
            names = tuple(s.name.lstrip("/") for s in self._rank_segments)
            self._send_all(("attach", names), "attaching shared memory")
            self._await("attaching shared memory", self.timeout_s)
            for segment in self._rank_segments:
                self._res.unlink(segment)
            self._send_all(("prefault",), "faulting in shared memory")   # after the unlink: nothing left to leak
            self._await("faulting in shared memory", self.timeout_s)
        return tuple(s.name.lstrip("/") for s in self._rank_segments)

    def _view(self, rank: int, k: int, stride: int, low: Lowered, dtype: np.dtype) -> np.ndarray:
        return np.ndarray((low.elems,), dtype=dtype, buffer=self._rank_segments[rank].buf, offset=k * stride)

    def _stride(self, low: Lowered, dtype: np.dtype) -> int:
        return -(-max(1, low.elems * dtype.itemsize) // _ALIGN) * _ALIGN

    def _reserve(self, low: Lowered, dtype: np.dtype) -> None:
        """Size the shared segments for ``low`` now (each rank faults its own in, see ``_cpu_rank._Segments``)."""
        self._segments_for(self._stride(low, dtype))

    def _input_rows(self, low: Lowered, dtype: np.dtype) -> list[np.ndarray]:
        """The ranks' own ``initial`` regions: inputs written there are never copied again."""
        stride = self._stride(low, dtype)
        self._segments_for(stride)
        return [self._view(r, 0, stride, low, dtype) for r in range(self.ranks)]

    def _execute(self, low: Lowered, init: Any, op: str, warmup: int, repeats: int,
                 snapshot: bool) -> tuple[list[np.ndarray] | None, list[float]]:
        dtype = init[0].dtype
        stride = self._stride(low, dtype)
        names = self._segments_for(stride)
        for r in range(self.ranks):
            initial = self._view(r, 0, stride, low, dtype)
            if not np.may_share_memory(initial, init[r]):  # from _input_rows: already in place
                initial[:] = init[r]
        job = Job(low, dtype.name, op, warmup, repeats, snapshot, names, stride, self._fault, self.flush_bytes)
        self._send_all(("run", job), f"running {low.label()}")
        timings = self._await(f"running {low.label()}", self.timeout_s)
        work = None
        if snapshot:  # views of the snapshot regions, valid until the next call: no copy of every rank's buffer
            work = [self._view(r, 2, stride, low, dtype) for r in range(self.ranks)]
        return work, np.max(np.asarray(timings, dtype=np.float64), axis=0).tolist()

    def close(self) -> None:
        """Stop the rank processes and unlink every shared-memory segment; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._control = None
        self._rank_segments = []
        self._finalizer()


class ThreadExecutor(Executor):
    """``ranks`` threads of this process running the same rank loop (for comparison)."""

    device, mode = "cpu", "thread"

    def __init__(self, ranks: int, timeout_s: float = 60.0, *, flush_bytes: int = 0) -> None:
        super().__init__(ranks, timeout_s, flush_bytes=flush_bytes)
        _cpu_rank.warm_up()
        self._fault: tuple[int, int, str] | None = None
        self._barrier = ThreadBarrier(self.ranks, self.timeout_s)
        self._inbox: list[queue.Queue] = [queue.Queue() for _ in range(self.ranks)]
        self._outbox: queue.Queue = queue.Queue()
        self._threads = [threading.Thread(target=self._serve, args=(r,), daemon=True, name=f"trainsim-rank-{r}")
                         for r in range(self.ranks)]
        for t in self._threads:
            t.start()

    def _serve(self, rank: int) -> None:
        runner = RankRunner(rank, self._barrier, _raise_injected)
        while (item := self._inbox[rank].get()) is not None:
            job, initial, work, snapshot = item
            try:
                self._outbox.put((rank, "ok", runner.serve(job, initial, work, snapshot)))
            except _cpu_rank.Aborted:
                self._outbox.put((rank, "aborted", None))
            except Exception as e:  # noqa: BLE001 - reported to the caller as a KernelError
                self._barrier.abort()
                self._outbox.put((rank, "error", f"{type(e).__name__}: {e}"))

    def _execute(self, low: Lowered, init: np.ndarray, op: str, warmup: int, repeats: int,
                 snapshot: bool) -> tuple[np.ndarray | None, list[float]]:
        work = np.empty_like(init)
        out = np.empty_like(init) if snapshot else None
        job = Job(low, init.dtype.name, op, warmup, repeats, snapshot, fault=self._fault, flush_bytes=self.flush_bytes)
        rows = list(work)
        for r in range(self.ranks):
            self._inbox[r].put((job, init[r], rows, None if out is None else out[r]))
        timings: dict[int, list[float]] = {}
        failures: list[tuple[str, object]] = []
        while len(timings) + len(failures) < self.ranks:
            rank, status, payload = self._outbox.get()
            if status == "ok":
                timings[rank] = payload
            else:
                self._barrier.abort()
                failures.append((f"rank {rank}", payload))
        if failures:
            self.close()
            cause = next((f"{who}: {why}" for who, why in failures if why), f"{failures[0][0]}: aborted")
            raise KernelError(f"{cause} while running {low.label()}; the executor is closed")
        return out, np.max(np.asarray([timings[r] for r in range(self.ranks)]), axis=0).tolist()

    def close(self) -> None:
        """Stop the rank threads; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._barrier.abort()
        for q in self._inbox:
            q.put(None)
        for t in self._threads:
            t.join(1.0)


def _raise_injected(kind: str) -> None:
    raise RuntimeError(f"injected failure ({kind})")
