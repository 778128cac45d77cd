"""The truth the kernel tests compare against: numpy, per collective, written independently of ``kernels``.

Postconditions follow ``simulator/collectives/schedule.py`` (its module
docstring and ``verify``), restated on values:

allreduce        every rank, every element: the reduction over all ranks (nvls: over the workers, on
                 the workers; the switch rank's input is not part of it)
reduce           the root: the reduction
reduce_scatter   rank ``chunk_owner[c]``, chunk ``c``: the reduction
ps_push          server ``p + s``, shard ``s``: the reduction over the p workers
broadcast        every rank: the root's buffer
allgather        every rank, chunk ``c``: rank ``chunk_owner[c]``'s chunk ``c``
alltoall         rank ``j``: block ``j`` of every rank ``i``'s buffer, in order of ``i``
ps_pull          every worker, shard ``s``: server ``p + s``'s shard ``s``

Schedules here are built with ``element_schedule``, so chunk ``c`` is exactly
the elements ``bounds[c]:bounds[c+1]`` with ``bounds = cumsum(chunk_bytes) / itemsize``.
"""

from __future__ import annotations

import numpy as np

REDUCE = {"sum": np.sum, "max": np.max, "min": np.min}
SUMMING = ("allreduce", "reduce", "reduce_scatter", "ps_push")

# Every (collective, algorithm) registered, with the options the tests pass it.
OPTIONS = {
    "hierarchical": lambda p: {"devices_per_node": 2 if p % 2 == 0 else p},
    "double_binary_tree": lambda p: {"pipeline_chunks": 3},
}


def options(collective: str, algorithm: str, ranks: int) -> dict:
    """topology_info for a test case: non-zero roots, two servers, pipelined trees."""
    opts = dict(OPTIONS.get(algorithm, lambda p: {})(ranks))
    if collective in ("broadcast", "reduce") or (collective, algorithm) == ("allreduce", "binomial_tree"):
        opts["root"] = ranks - 1
    if collective in ("ps_push", "ps_pull"):
        opts["servers"] = 2 if ranks <= 3 else 1
    return opts


def inputs(ranks: int, nelems: int, dtype: str, seed: int) -> list[np.ndarray]:
    """Random buffers; int32 small enough that no sum overflows."""
    rng = np.random.default_rng(seed)
    if dtype == "int32":
        return [rng.integers(-10_000, 10_000, nelems, dtype=np.int32) for _ in range(ranks)]
    return [rng.standard_normal(nelems).astype(dtype) for _ in range(ranks)]


def chunk_ranges(schedule, itemsize: int) -> list[slice]:
    bounds = np.concatenate([[0], np.cumsum(schedule.chunk_bytes)])
    assert (bounds % itemsize == 0).all(), "tests build element-aligned schedules"
    bounds //= itemsize
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def expectations(schedule, bufs: list[np.ndarray], op: str) -> list[tuple[int, slice | None, np.ndarray]]:
    """``(rank, elements, expected values)`` triples; elements None means the whole output."""
    coll, p = schedule.collective, schedule.ranks
    workers = p - schedule.servers - schedule.switches
    chunks = chunk_ranges(schedule, bufs[0].itemsize)
    owner = schedule.chunk_owner
    if coll in SUMMING:
        total = REDUCE[op](np.stack(bufs[:workers]), axis=0).astype(bufs[0].dtype)  # numpy sums int32 in int64
        if coll == "allreduce":
            return [(r, None, total) for r in range(workers)]
        if coll == "reduce":
            return [(schedule.root, None, total)]
        return [(int(owner[c]), sl, total[sl]) for c, sl in enumerate(chunks)]
    if coll == "broadcast":
        return [(r, None, bufs[schedule.root]) for r in range(p)]
    if coll == "allgather":
        return [(r, sl, bufs[int(owner[c])][sl]) for r in range(p) for c, sl in enumerate(chunks)]
    if coll == "ps_pull":
        return [(w, sl, bufs[int(owner[c])][sl]) for w in range(workers) for c, sl in enumerate(chunks)]
    if coll == "alltoall":
        blocks = chunks[:p]  # chunk i*p + j has block j's size; block j of a send buffer is blocks[j]
        return [(j, None, np.concatenate([b[blocks[j]] for b in bufs])) for j in range(p)]
    raise AssertionError(f"no oracle for {coll}")


def tolerance(schedule, bufs: list[np.ndarray], op: str) -> np.ndarray | float:
    """Allowed |error| per element.

    Integer arithmetic, max, min and copies are exact. A float sum of ``p``
    terms evaluated in some order differs from the exact sum by at most
    ``(p - 1) eps sum|x_i|`` (Higham 2002, eq. 4.4); the kernels and numpy add
    in different orders (ring vs tree vs numpy's pairwise), so they may differ
    by twice that. We allow ``2 p eps sum|x_i|`` per element.
    """
    if op != "sum" or schedule.collective not in SUMMING or bufs[0].dtype.kind != "f":
        return 0.0
    workers = schedule.ranks - schedule.servers - schedule.switches
    eps = np.finfo(bufs[0].dtype).eps
    return 2 * workers * eps * np.abs(np.stack(bufs[:workers]).astype(np.float64)).sum(axis=0)


def assert_matches(schedule, bufs: list[np.ndarray], outputs: list[np.ndarray], op: str, case: str) -> None:
    """Every expectation holds: int32/max/min/copies exactly, float sums within :func:`tolerance`."""
    tol = tolerance(schedule, bufs, op)
    assert len(outputs) == schedule.ranks, case
    for rank, where, want in expectations(schedule, bufs, op):
        got = outputs[rank] if where is None else outputs[rank][where]
        assert got.shape == want.shape, f"{case}: rank {rank} shape {got.shape} != {want.shape}"
        assert got.dtype == want.dtype, case
        if np.isscalar(tol) and tol == 0:
            np.testing.assert_array_equal(got, want, err_msg=f"{case}: rank {rank} {where}")
        else:
            t = tol if where is None else tol[where]
            err = np.abs(got.astype(np.float64) - want.astype(np.float64))
            assert (err <= t).all(), f"{case}: rank {rank} {where}: max error {err.max()} over tolerance"
