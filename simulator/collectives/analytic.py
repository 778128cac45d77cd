"""The alpha-beta-gamma cost of a schedule, derived from the schedule itself.

Hockney's model, as used by Thakur, Rabenseifner & Gropp (2005): a message of
``m`` bytes costs ``alpha + m beta``, reducing ``m`` bytes costs ``m gamma``.
A step's transfers run concurrently and every rank has one full-duplex port,
so a step costs

``alpha + beta * max_r max(sent_r, received_r) + gamma * max_r reduced_r``

where ``sent_r`` / ``received_r`` are the bytes rank ``r`` sends / receives in
the step and ``reduced_r`` the bytes reduced into it; a step with no transfers
costs nothing. A schedule costs the sum of its steps. Because the cost is
computed from the schedule, the textbook closed forms (in each algorithm's
module docstring and, independently, in ``tests/simulator/test_analytic.py``)
are checked against the very algorithm the simulator times and the kernels run.

This module knows nothing of topologies: contention between steps' flows on
shared links is the network model's business.

Two refinements, both said by the schedule itself:

* switch ranks (``Schedule.switches``, in-switch reduction) have a port per link, so their
  bytes are not held against one port, and reduce in the switch (no ``gamma``);
* a schedule of ``c = Schedule.slices > 1`` runs as ``c`` pipelined slices (each a ``1/c``
  share of every chunk), so one slice's reduction overlaps the next slice's transfer. It costs
  the pipeline fill, one slice through every step, plus ``c - 1`` slices at the pace of the
  busiest resource (a rank's send port, its receive port, its reductions, over all steps)::

      alpha busy + (beta moved + gamma reduced) / c
          + (c - 1) / c * max(beta max_r sent_r, beta max_r received_r, gamma max_r reduced_r)

  with ``sent_r`` etc. summed over the steps. ``c = 1`` is the step-after-step sum above.
"""

from __future__ import annotations

import numpy as np

from .schedule import Schedule, Step

__all__ = ["Cache", "cache_term", "per_rank_bytes", "physical_features", "pipelined_cost", "port_totals",
           "reads_written", "schedule_cost", "step_maxima"]


def per_rank_bytes(
    step: Step, chunk_bytes: np.ndarray, ranks: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bytes each rank sends, receives and has reduced into it during ``step``.

    Parameters
    ----------
    step : the step.
    chunk_bytes : bytes of each chunk (``Schedule.chunk_bytes``).
    ranks : length of the returned arrays (default: just enough for the step).

    Returns
    -------
    (sent, received, reduced) : three int64 arrays indexed by rank, in bytes.
    """
    size = (
        ranks
        if ranks is not None
        else int(max(step.messages()[0].max(initial=-1), step.messages()[1].max(initial=-1)) + 1)
    )
    src, dst, red = step.messages()
    weights = step.message_bytes(chunk_bytes)
    sent = np.bincount(src, weights=weights, minlength=size)
    received = np.bincount(dst, weights=weights, minlength=size)
    reduced = np.bincount(dst[red], weights=weights[red], minlength=size)
    return sent.astype(np.int64), received.astype(np.int64), reduced.astype(np.int64)


def step_maxima(s: Schedule) -> tuple[int, int, int]:
    """``(busy_steps, sum of per-step max bytes moved, sum of per-step max bytes reduced)``.

    ``schedule_cost(s, a, b, g) == a * busy + b * moved + g * reduced``; the
    three integers are exact, so the cost is as exact as one float product.
    Steps built from the same arrays are costed once; when a step's sources
    (destinations) are all distinct the per-rank sums are the chunk sizes
    themselves and no bincount is needed, which keeps a ring over thousands of
    ranks cheap.
    """
    chunk_bytes = s.chunk_bytes
    distinct: dict[int, bool] = {}  # id(array) -> all entries distinct (never, for a switch's)
    memo: dict[tuple[int, int, int, int], tuple[int, int]] = {}
    busy = moved = reduced = 0
    for step in s.steps:
        if len(step) == 0:
            continue
        src, dst, red = step.messages()
        key = (id(src), id(dst), id(step.first), id(red), id(step.count), step.wrap)
        if key not in memo:
            memo[key] = _step_max(step, chunk_bytes, s.ranks, distinct, s.switches)
        busy += 1
        moved += memo[key][0]
        reduced += memo[key][1]
    return busy, moved, reduced


def _step_max(
    step: Step, chunk_bytes: np.ndarray, ranks: int, distinct: dict[int, bool], switches: int = 0
) -> tuple[int, int]:
    src, dst, red = step.messages()
    for arr in (src, dst):
        if id(arr) not in distinct:
            distinct[id(arr)] = bool(np.bincount(arr, minlength=ranks).max() <= 1)
    if switches:
        sent, received, into_rank = (a[: ranks - switches] for a in per_rank_bytes(step, chunk_bytes, ranks))
        return int(max(sent.max(), received.max())), int(into_rank.max())
    if step.count is None:
        sizes = chunk_bytes[step.chunk]
    else:
        sizes = step.message_bytes(chunk_bytes).astype(np.int64)
    if distinct[id(src)] and distinct[id(dst)]:
        moved = int(sizes.max())
        into = sizes[red]
        return moved, int(into.max()) if len(into) else 0
    sent, received, into_rank = per_rank_bytes(step, chunk_bytes, ranks)
    return int(max(sent.max(), received.max())), int(into_rank.max())


def schedule_cost(s: Schedule, alpha: float, beta: float, gamma: float = 0.0) -> float:
    """Alpha-beta-gamma time of ``s`` in seconds.

    Parameters
    ----------
    s : the schedule.
    alpha : seconds per message (per step).
    beta : seconds per byte moved.
    gamma : seconds per byte reduced.

    Notes
    -----
    ``sum over non-empty steps of alpha + beta max_r max(sent_r, recv_r) + gamma max_r reduced_r``
    (Hockney; Thakur, Rabenseifner & Gropp 2005).

    Examples
    --------
    >>> from simulator.collectives import schedule
    >>> schedule_cost(schedule("ring", 4, 400), alpha=1.0, beta=0.01, gamma=0.001)
    12.3
    """
    busy, moved, reduced = step_maxima(s)
    if s.slices == 1:
        return alpha * busy + beta * moved + gamma * reduced
    return pipelined_cost((busy, moved, reduced), port_totals(s), s.slices, alpha, beta, gamma)


def port_totals(s: Schedule) -> tuple[int, int, int]:
    """Over all steps, the most bytes any rank sends, receives, and has reduced into it.

    Switch ranks (``Schedule.switches``) are left out: they have a port per link and reduce
    in the switch. The busiest resource of a pipelined schedule (:func:`pipelined_cost`).
    """
    keep = s.ranks - s.switches
    sent = np.zeros(s.ranks, dtype=np.int64)
    received = np.zeros(s.ranks, dtype=np.int64)
    reduced = np.zeros(s.ranks, dtype=np.int64)
    memo: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for step in s.steps:
        if len(step) == 0:
            continue
        src, dst, red = step.messages()
        key = (id(src), id(dst), id(step.first), id(red), id(step.count), step.wrap or 0)
        if key not in memo:
            memo[key] = per_rank_bytes(step, s.chunk_bytes, s.ranks)
        a, b, c = memo[key]
        sent += a
        received += b
        reduced += c
    return int(sent[:keep].max()), int(received[:keep].max()), int(reduced[:keep].max())


def pipelined_cost(maxima: tuple[float, float, float], totals: tuple[float, float, float], slices: int,
                   alpha: float, beta: float, gamma: float) -> float:
    """Seconds of a schedule pipelined in ``slices`` slices (see the module docstring).

    ``maxima``: :func:`step_maxima`'s ``(busy, moved, reduced)``; ``totals``: :func:`port_totals`.
    ``slices == 1`` gives exactly ``alpha busy + beta moved + gamma reduced``.
    """
    busy, moved, reduced = maxima
    if slices == 1:
        return alpha * busy + beta * moved + gamma * reduced
    fill = alpha * busy + (beta * moved + gamma * reduced) / slices
    pace = max(beta * totals[0], beta * totals[1], gamma * totals[2]) / slices
    return fill + (slices - 1) * pace


# --- physical terms: bytes staged, and each step's working set against the caches ----------------------------


def reads_written(src: np.ndarray, dst: np.ndarray, chunk: np.ndarray, chunks: int) -> np.ndarray:
    """bool per transfer of one step: its source cell ``(src, chunk)`` is also written in that step.

    Such a transfer must be *staged* — read into a receive buffer before any rank writes (recursive
    doubling's pairwise exchange, an MPI ``sendrecv`` into a temporary): the kernels do exactly this
    (:mod:`kernels.lowering`), and the physical cost model charges its bytes (:func:`physical_features`).
    """
    return np.isin(src.astype(np.int64) * chunks + chunk, dst.astype(np.int64) * chunks + chunk)


#: a cache level as the physical model sees it: (name, bytes of one instance, CPUs sharing one instance)
Cache = tuple[str, int, int]


def physical_features(s: Schedule, caches: tuple[Cache, ...] = ()) -> dict[str, float]:
    """The schedule's physical cost terms (bytes are those of the slowest rank of each step).

    ``steps``, ``moved``, ``reduced``: as :func:`step_maxima`; ``staged``: Σ over steps of the most bytes any
    rank stages (:func:`reads_written`) — exact integers. Then one term per cache ``(name, size, shared_by)``,
    from each step's *working set*: a rank's own buffer (``size_bytes``: every step writes into it) plus the
    bytes it receives and stages in that step (the largest rank's), ``W``:

    * a **shared** cache (``shared_by > 1``), ``beyond_<name>``: Σ over steps of ``moved + staged`` times the
      fraction of the ranks' working sets that does not fit it, ``max(0, 1 - size / (min(ranks, shared_by)·W))``
      — the bytes that come from the next level (memory) instead;
    * a **private** cache (``shared_by == 1``), ``peer_<name>``: Σ over steps of ``moved + staged`` times the
      fraction of the sender's working set still in its private cache, ``min(1, size / W)`` — the bytes a rank
      reads out of a peer's private cache (a cache-to-cache transfer, which costs more per byte than a read
      from the shared cache: 0.031 against 0.015-0.022 ns/B at 2 ranks on an AMD EPYC VM).

    Both start changing exactly where the schedule's data stop fitting a cache the machine reports, and
    change gradually past it, as a cache with a real replacement policy does (an LRU cliff would be a step).
    """
    busy, moved, reduced = step_maxima(s)
    out: dict[str, float] = {"steps": busy, "moved": moved, "reduced": reduced, "staged": 0}
    out.update({cache_term(name, shared_by): 0.0 for name, _, shared_by in caches})
    chunk_bytes = np.asarray(s.chunk_bytes, dtype=np.int64)
    memo: dict[tuple[int, ...], tuple[int, int, int]] = {}
    for step in s.steps:
        if len(step) == 0:
            continue
        src, dst, chunk = step.src, step.dst, step.chunk
        key = (id(src), id(dst), id(chunk))
        if key not in memo:
            b = chunk_bytes[chunk]
            staged = reads_written(src, dst, chunk, len(chunk_bytes))
            recv = np.bincount(dst, weights=b, minlength=s.ranks)
            stage = np.bincount(dst[staged], weights=b[staged], minlength=s.ranks)
            sent, received, _ = per_rank_bytes(step, chunk_bytes, s.ranks)
            memo[key] = (int(stage.max()), int(max(sent.max(), received.max())),
                         int(s.size_bytes + (recv + stage).max()))
        staged_max, moved_max, working_set = memo[key]
        out["staged"] += staged_max
        for name, size, shared_by in caches:
            if shared_by > 1:
                spilled = max(0.0, 1.0 - size / (working_set * min(s.ranks, shared_by)))
                out[f"beyond_{name}"] += (moved_max + staged_max) * spilled
            else:
                out[f"peer_{name}"] += (moved_max + staged_max) * min(1.0, size / working_set)
    return out


def cache_term(name: str, shared_by: int) -> str:
    """The :func:`physical_features` key of a cache level: ``beyond_<name>`` (shared) or ``peer_<name>`` (private)."""
    return f"beyond_{name}" if shared_by > 1 else f"peer_{name}"
