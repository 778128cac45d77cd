"""Lowering: a :class:`~simulator.collectives.Schedule` becomes flat integer arrays.

Numba cannot iterate dataclasses or tuples of :class:`Step` objects, so the
executors never see a schedule: they see a :class:`Lowered` plan, a handful of
int64/bool arrays that say, step by step, which rank reads which element range
from which peer and whether it copies or reduces.

What lowering decides
---------------------
* **Elements, not bytes.** A schedule's chunks are byte ranges; a kernel moves
  elements. Chunk ``c`` becomes the element range
  ``chunk_lo[c] : chunk_lo[c] + chunk_n[c]`` of every rank's *workspace*
  (``elems`` elements: the buffer, or for alltoall ``p`` send buffers laid out
  row by row). When every chunk boundary falls on a whole element the mapping
  is exact. When it does not (``split_evenly`` cuts bytes, so a float32 buffer
  of 40 bytes over 4 ranks gives 10-byte chunks) the boundaries are rounded
  down to whole elements (``realigned``): the chunk count and the steps are
  unchanged, so the schedule's semantics (and :func:`verify`) still hold, and
  each chunk differs from the schedule by less than one element. To execute a
  schedule whose chunk sizes are exact, build it with :func:`element_schedule`.
* **Who executes a transfer.** The destination: it reads the source's chunk
  and copies or reduces it into its own workspace (a *pull*, as MPI's receiver
  does the reduction). Writes therefore never race between ranks, and several
  reduces into the same ``(dst, chunk)`` in one step are run one after another
  by that destination.
* **Step semantics.** Within a step every source is read before any
  destination is written (``schedule.verify``). A transfer whose source cell
  ``(src, chunk)`` is also written in the same step (recursive doubling's
  pairwise exchange, a tree's up and down traffic meeting) is *staged*: its
  data is first copied into a receive buffer, and only after every rank has
  done that does any rank write, exactly like an MPI ``sendrecv`` into a
  temporary buffer. Steps without such transfers need no staging and execute
  in a single phase.

Transfers are sorted by ``(step, dst, chunk)``, so the transfers of one step
that one rank executes are contiguous (``rank_ptr``) and so are those that
write one target cell (a *group*, ``grp_ptr``), which is what a GPU thread
block walks.

This module imports only numpy and :mod:`simulator.collectives`; it moves no
data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.collectives import Schedule, schedule
from simulator.collectives.analytic import reads_written

__all__ = [
    "DTYPES",
    "Lowered",
    "collect_outputs",
    "element_schedule",
    "lower",
    "place_inputs",
    "fill_inputs",
]

#: dtypes the kernels are compiled for
DTYPES = ("float32", "float64", "int32")


@dataclass(frozen=True, eq=False)
class Lowered:
    """A schedule as flat arrays; every offset and length is in elements.

    Attributes
    ----------
    collective, algorithm, ranks, itemsize : from the schedule and the dtype.
    elems : elements of one rank's workspace.
    realigned : True when chunk boundaries were rounded down to whole elements.
    chunk_lo, chunk_n : int64[chunks], element offset and length of each chunk.
    step_ptr : int64[steps + 1], transfers of step ``s`` are ``step_ptr[s]:step_ptr[s+1]``.
    rank_ptr : int64[steps, ranks + 1], within step ``s``, rank ``r`` executes the
        transfers ``rank_ptr[s, r]:rank_ptr[s, r+1]`` (those with ``dst == r``).
    src, dst, chunk : int64[transfers]; ``reduce`` : bool[transfers].
    staged : bool[transfers], the source must be read into a receive buffer first.
    stage_off : int64[transfers], offset of a staged transfer's data in the step's
        staging buffer (all ranks' staged transfers, packed; -1 when not staged).
    stage_rank_off : int64[transfers], the same offset within the destination rank's
        own staging buffer (what a CPU rank uses).
    stage_elems, stage_rank_elems : largest staging buffer any step needs, in total
        and per rank.
    step_staged : bool[steps], the step has staged transfers (two phases, two barriers).
    grp_step_ptr : int64[steps + 1], groups of step ``s``.
    grp_ptr : int64[groups + 1], transfers of group ``g`` (one target cell).
    grp_dst, grp_lo, grp_n : int64[groups], the target's rank and element range.
    """

    collective: str
    algorithm: str
    ranks: int
    itemsize: int
    elems: int
    realigned: bool
    chunk_lo: np.ndarray
    chunk_n: np.ndarray
    step_ptr: np.ndarray
    rank_ptr: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    chunk: np.ndarray
    reduce: np.ndarray
    staged: np.ndarray
    stage_off: np.ndarray
    stage_rank_off: np.ndarray
    stage_elems: int
    stage_rank_elems: int
    step_staged: np.ndarray
    grp_step_ptr: np.ndarray
    grp_ptr: np.ndarray
    grp_dst: np.ndarray
    grp_lo: np.ndarray
    grp_n: np.ndarray
    root: int = 0
    servers: int = 0
    chunk_owner: np.ndarray | None = None
    switches: int = 0

    @property
    def steps(self) -> int:
        """Number of steps."""
        return int(self.step_ptr.shape[0] - 1)

    @property
    def workers(self) -> int:
        """Ranks that are neither parameter servers nor switches (``Schedule.switches``)."""
        return self.ranks - self.servers - self.switches

    def label(self) -> str:
        """``ring allreduce, 4 ranks`` for messages."""
        return f"{self.algorithm} {self.collective}, {self.ranks} ranks"


def element_schedule(
    algorithm: str,
    ranks: int,
    nelems: int,
    dtype: str | np.dtype,
    collective: str = "allreduce",
    **topology_info: object,
) -> Schedule:
    """``schedule(...)`` for a buffer of ``nelems`` elements whose chunks split only between elements.

    The schedule is built for ``nelems`` "bytes" and its chunk sizes are then
    multiplied by the item size, so the result describes ``nelems * itemsize``
    bytes with every chunk a whole number of elements. Steps, owners, root and
    servers are those ``schedule`` builds; only the split differs (by less than
    one element per chunk) from ``schedule(algorithm, ranks, nelems * itemsize)``.

    Examples
    --------
    >>> s = element_schedule("ring", 4, 10, "float32")
    >>> s.chunk_bytes.tolist(), s.size_bytes
    ([12, 12, 8, 8], 40)
    """
    itemsize = np.dtype(dtype).itemsize
    base = schedule(algorithm, ranks, int(nelems), collective, **topology_info)
    return Schedule(
        base.collective,
        base.algorithm,
        base.ranks,
        np.asarray(base.chunk_bytes, dtype=np.int64) * itemsize,
        base.steps,
        root=base.root,
        chunk_owner=base.chunk_owner,
        servers=base.servers,
        switches=base.switches,
        slices=base.slices,
    )


def _element_bounds(s: Schedule, itemsize: int) -> tuple[np.ndarray, bool]:
    bounds = np.zeros(s.chunks + 1, dtype=np.int64)
    np.cumsum(s.chunk_bytes, out=bounds[1:])
    if bounds[-1] % itemsize:
        raise ValueError(
            f"{s.algorithm} {s.collective}: {int(bounds[-1])} bytes of chunks is not a whole "
            f"number of {itemsize}-byte elements"
        )
    realigned = bool((bounds % itemsize).any())
    return bounds // itemsize, realigned


def _check_transfers(s: Schedule, src: np.ndarray, dst: np.ndarray, chunk: np.ndarray, red: np.ndarray) -> None:
    """The checks without which a kernel would write out of bounds or race (verify does more)."""
    where = f"{s.algorithm} {s.collective}"
    if ((src < 0) | (src >= s.ranks) | (dst < 0) | (dst >= s.ranks)).any():
        raise ValueError(f"{where}: a transfer names a rank outside 0..{s.ranks - 1}")
    if ((chunk < 0) | (chunk >= s.chunks)).any() or (src == dst).any():
        raise ValueError(f"{where}: a transfer names a chunk outside 0..{s.chunks - 1} or sends to itself")


def _sorted_transfers(s: Schedule) -> tuple[np.ndarray, ...]:
    """All transfers as int64 arrays sorted by (step, dst, chunk), keeping schedule order on ties."""
    lengths = np.array([len(step) for step in s.steps], dtype=np.int64)
    step_ptr = np.zeros(len(s.steps) + 1, dtype=np.int64)
    np.cumsum(lengths, out=step_ptr[1:])
    if step_ptr[-1] == 0:
        empty = np.zeros(0, dtype=np.int64)
        return step_ptr, empty, empty, empty, empty, np.zeros(0, dtype=bool)
    step_of = np.repeat(np.arange(len(s.steps), dtype=np.int64), lengths)
    src = np.concatenate([st.src for st in s.steps]).astype(np.int64)
    dst = np.concatenate([st.dst for st in s.steps]).astype(np.int64)
    chunk = np.concatenate([st.chunk for st in s.steps]).astype(np.int64)
    red = np.concatenate([st.reduce for st in s.steps]).astype(bool)
    _check_transfers(s, src, dst, chunk, red)
    order = np.lexsort((chunk, dst, step_of))  # lexsort is stable
    return step_ptr, step_of[order], src[order], dst[order], chunk[order], red[order]


def _staging(
    s: Schedule, step_ptr: np.ndarray, src: np.ndarray, dst: np.ndarray, chunk: np.ndarray, n: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which transfers read a cell written in the same step, and where their data goes."""
    staged = np.zeros(src.shape[0], dtype=bool)
    for a, b in zip(step_ptr[:-1], step_ptr[1:], strict=True):
        staged[a:b] = reads_written(src[a:b], dst[a:b], chunk[a:b], s.chunks)
    sizes = np.where(staged, n, 0)
    glob = np.full(src.shape[0], -1, dtype=np.int64)
    local = np.full(src.shape[0], -1, dtype=np.int64)
    for a, b in zip(step_ptr[:-1], step_ptr[1:], strict=True):
        ends = np.cumsum(sizes[a:b])
        glob[a:b] = np.where(staged[a:b], ends - sizes[a:b], -1)
        # per destination: subtract the running total at the start of that destination's run
        first = np.searchsorted(dst[a:b], dst[a:b], side="left")
        start = (ends - sizes[a:b])[first]
        local[a:b] = np.where(staged[a:b], ends - sizes[a:b] - start, -1)
    return staged, glob, local


def _groups(s: Schedule, step_ptr: np.ndarray, dst: np.ndarray, chunk: np.ndarray) -> tuple[np.ndarray, ...]:
    """Runs of transfers with the same (step, dst, chunk): one target cell each."""
    key_step = np.repeat(np.arange(step_ptr.shape[0] - 1), np.diff(step_ptr))
    if dst.shape[0] == 0:
        return np.zeros(step_ptr.shape[0], dtype=np.int64), np.zeros(1, dtype=np.int64)
    new = np.ones(dst.shape[0], dtype=bool)
    new[1:] = (key_step[1:] != key_step[:-1]) | (dst[1:] != dst[:-1]) | (chunk[1:] != chunk[:-1])
    starts = np.flatnonzero(new)
    grp_ptr = np.append(starts, dst.shape[0]).astype(np.int64)
    grp_step_ptr = np.searchsorted(starts, step_ptr).astype(np.int64)
    return grp_step_ptr, grp_ptr


def _check_copy_races(s: Schedule, grp_ptr: np.ndarray, red: np.ndarray) -> None:
    sizes = np.diff(grp_ptr)
    copies = np.add.reduceat((~red).astype(np.int64), grp_ptr[:-1]) if red.shape[0] else np.zeros(0, np.int64)
    if ((copies > 0) & (sizes > 1)).any():
        raise ValueError(
            f"{s.algorithm} {s.collective}: a copy shares its target with another transfer of the "
            "same step; the result would depend on order"
        )


def lower(s: Schedule, itemsize: int) -> Lowered:
    """Lower ``s`` for elements of ``itemsize`` bytes (see the module docstring).

    Raises
    ------
    ValueError
        The chunks do not add up to whole elements, a transfer is out of range or
        sends to itself, or a copy races another write of its step.
    """
    bounds, realigned = _element_bounds(s, itemsize)
    chunk_lo, chunk_n = bounds[:-1].copy(), np.diff(bounds)
    step_ptr, step_of, src, dst, chunk, red = _sorted_transfers(s)
    n = chunk_n[chunk]
    staged, stage_off, stage_rank_off = _staging(s, step_ptr, src, dst, chunk, n)
    grp_step_ptr, grp_ptr = _groups(s, step_ptr, dst, chunk)
    _check_copy_races(s, grp_ptr, red)
    rank_ptr = np.zeros((len(s.steps), s.ranks + 1), dtype=np.int64)
    for i, (a, b) in enumerate(zip(step_ptr[:-1], step_ptr[1:], strict=True)):
        rank_ptr[i] = a + np.searchsorted(dst[a:b], np.arange(s.ranks + 1), side="left")
    per_step = [int(np.where(staged[a:b], n[a:b], 0).sum()) for a, b in zip(step_ptr[:-1], step_ptr[1:], strict=True)]
    per_rank = np.zeros((len(s.steps), s.ranks), dtype=np.int64)
    np.add.at(per_rank, (step_of, dst), np.where(staged, n, 0))
    first = grp_ptr[:-1]
    return Lowered(
        collective=s.collective, algorithm=s.algorithm, ranks=s.ranks, itemsize=itemsize,
        elems=int(bounds[-1]), realigned=realigned, chunk_lo=chunk_lo, chunk_n=chunk_n,
        step_ptr=step_ptr, rank_ptr=rank_ptr, src=src, dst=dst, chunk=chunk, reduce=red,
        staged=staged, stage_off=stage_off, stage_rank_off=stage_rank_off,
        stage_elems=max(per_step, default=0), stage_rank_elems=int(per_rank.max(initial=0)),
        step_staged=np.array([staged[a:b].any() for a, b in zip(step_ptr[:-1], step_ptr[1:], strict=True)],
                             dtype=bool),
        grp_step_ptr=grp_step_ptr, grp_ptr=grp_ptr, grp_dst=dst[first], grp_lo=chunk_lo[chunk[first]],
        grp_n=chunk_n[chunk[first]], root=s.root, servers=s.servers,
        chunk_owner=None if s.chunk_owner is None else np.asarray(s.chunk_owner, dtype=np.int64),
        switches=s.switches,
    )


# --------------------------------------------------------------------------- buffers <-> workspaces


def identity(op: str, dtype: np.dtype) -> float | int:
    """The value ``x`` with ``op(x, y) == y`` (what a parameter server's buffer starts at)."""
    if op == "sum":
        return 0
    if np.issubdtype(dtype, np.floating):
        return -np.inf if op == "max" else np.inf
    info = np.iinfo(dtype)
    return info.min if op == "max" else info.max


def place_inputs(low: Lowered, buffers: list[np.ndarray], op: str = "sum") -> np.ndarray:
    """The workspaces every rank starts with, as one ``(ranks, elems)`` array.

    allreduce, reduce, reduce_scatter, allgather, broadcast, ps_pull: rank ``r``'s
    workspace is its buffer. alltoall: rank ``i``'s send buffer is row ``i`` of
    its workspace (chunks ``i*p .. i*p+p-1``), the rest is zero. ps_push: the
    servers' buffers start at the identity of ``op`` (zero for sum), whatever
    was passed for them.
    """
    dtype = buffers[0].dtype
    flat = [np.ascontiguousarray(b).reshape(-1) for b in buffers]
    work = np.zeros((low.ranks, low.elems), dtype=dtype)
    if low.collective == "alltoall":
        n = flat[0].shape[0]
        for i, b in enumerate(flat):
            work[i, i * n:(i + 1) * n] = b
        return work
    for r, b in enumerate(flat):
        work[r] = b
    if low.collective == "ps_push" or low.switches:
        work[low.workers:] = identity(op, dtype)   # servers and in-network reducers hold no input
    return work


def fill_inputs(low: Lowered, rows: Any, fills: Iterable[Callable[[np.ndarray], None]], op: str = "sum") -> None:
    """Write :func:`place_inputs`' workspaces into ``rows`` (per-rank 1-D arrays) without building them.

    ``fills`` yields, in rank order, one function per rank that writes that rank's buffer into the array
    it is given, so no rank's buffer exists twice: it is generated straight into its workspace.
    """
    fills = iter(fills)
    for r in range(low.ranks):
        rows[r][:] = 0
    if low.collective == "alltoall":
        n = low.elems // low.ranks
        for i in range(low.ranks):
            next(fills)(rows[i][i * n:(i + 1) * n])
        return
    for r in range(low.ranks):
        next(fills)(rows[r])
    if low.collective == "ps_push" or low.switches:
        for r in range(low.workers, low.ranks):
            rows[r][:] = identity(op, rows[r].dtype)


def collect_outputs(low: Lowered, work: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray]:
    """Each rank's output from the final workspaces (copies, in the input's shape).

    alltoall: rank ``j`` receives chunk ``i*p + j`` from every ``i``, in order of
    ``i`` (its receive buffer); when ``p`` does not divide the buffer these are
    ``p`` blocks of rank ``j``'s block size, a 1-D array not of the input's shape.
    Every other collective: the workspace itself. Only the cells the collective
    defines are meaningful (allreduce: all; reduce: the root's; reduce_scatter:
    each rank's own chunks; ps_push: each server's shard; ps_pull: the workers').
    """
    if low.collective != "alltoall":
        return [work[r].reshape(shape).copy() for r in range(low.ranks)]
    p = low.ranks
    out = []
    for j in range(p):
        parts = [work[j][low.chunk_lo[c]:low.chunk_lo[c] + low.chunk_n[c]] for c in range(j, p * p, p)]
        got = np.concatenate(parts)
        out.append(got.reshape(shape) if got.size == int(np.prod(shape)) else got)
    return out
