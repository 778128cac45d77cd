"""Collective algorithms, each written once as a schedule (see DESIGN.md, "The one idea").

``schedule(algorithm, ranks, size_bytes, collective="allreduce", **topology_info)``
returns a :class:`Schedule` (plain data: chunk sizes and steps of concurrent
transfers) that the simulator times on a network, ``kernels`` executes on real
buffers, and :func:`analytic_time` costs with the alpha-beta-gamma model.
:func:`verify` executes any schedule symbolically and checks its collective's
postcondition. :data:`ALGORITHMS` is the one table of what exists.

This package imports only the standard library and numpy (the Numba kernels
import it); it knows nothing of topologies, SimPy or configuration files.

Conventions callers rely on
---------------------------
* ``ranks`` is the number of participating ranks; for ``ps_push`` / ``ps_pull``
  it is the number of *workers* ``p`` and the schedule adds ``servers`` (k,
  default 1) server ranks ``p..p+k-1``, so ``Schedule.ranks == p + k``.
* ``ranks == 1`` gives a schedule with no steps (one chunk holding the whole
  buffer) for every collective except ps_push / ps_pull, which still move
  data between the one worker and its servers.
* ``recursive_halving`` reduce_scatter and ``recursive_doubling`` allgather
  need a power of two and raise :class:`ScheduleError` otherwise; allreduce by
  ``recursive_doubling`` / ``rabenseifner`` takes any p (MPICH folding);
  ``hierarchical`` needs ``devices_per_node`` dividing p.
* ``topology_info`` keys used: ``devices_per_node`` (hierarchical), ``root``
  (broadcast, reduce, binomial_tree allreduce), ``servers`` (ps_*),
  ``pipeline_chunks`` (double_binary_tree). Other keys are ignored, so a caller
  can pass everything it knows about the topology to any algorithm.
* *Algorithm options* are the keys a user chooses rather than the topology
  dictates: :data:`OPTIONS` lists them per algorithm (``pipeline_chunks`` of
  ``double_binary_tree``; ``inter``, ``intra``, ``pipeline_chunks`` of
  ``hierarchical``), and :func:`check_options` refuses, in one line, a key the
  algorithm does not take (config files and the CLI call it, so nothing a user
  types is ignored). They travel to the builder with the topology info.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from functools import lru_cache

from ._build import int_option
from .analytic import pipelined_cost, port_totals, step_maxima
from .bruck import bruck_allgather
from .hierarchical import hierarchical_allreduce
from .in_network import nvls_allreduce
from .pairwise import pairwise_alltoall, pairwise_reduce_scatter
from .parameter_server import sharded_pull, sharded_push
from .rabenseifner import rabenseifner_allreduce, recursive_halving_reduce_scatter
from .recursive_doubling import recursive_doubling_allgather, recursive_doubling_allreduce
from .ring import ring_allgather, ring_allreduce, ring_reduce_scatter
from .scatter_allgather import scatter_allgather_broadcast
from .schedule import COLLECTIVES, Schedule, ScheduleError, Step, Transfer, verify
from .tree import (
    binomial_allreduce,
    binomial_broadcast,
    binomial_reduce,
    double_binary_tree_allreduce,
)

__all__ = [
    "ALGORITHMS",
    "Schedule",
    "ScheduleError",
    "Step",
    "Transfer",
    "OPTIONS",
    "algorithms",
    "analytic_time",
    "check_options",
    "bus_factor",
    "schedule",
    "verify",
]

Builder = Callable[..., Schedule]

#: (collective, algorithm) -> builder(ranks, size_bytes, **topology_info) -> Schedule
ALGORITHMS: dict[tuple[str, str], Builder] = {
    ("allreduce", "ring"): ring_allreduce,
    ("allreduce", "recursive_doubling"): recursive_doubling_allreduce,
    ("allreduce", "rabenseifner"): rabenseifner_allreduce,
    ("allreduce", "binomial_tree"): binomial_allreduce,
    ("allreduce", "double_binary_tree"): double_binary_tree_allreduce,
    ("allreduce", "hierarchical"): hierarchical_allreduce,
    ("allreduce", "nvls"): nvls_allreduce,
    ("reduce_scatter", "ring"): ring_reduce_scatter,
    ("reduce_scatter", "recursive_halving"): recursive_halving_reduce_scatter,
    ("reduce_scatter", "pairwise"): pairwise_reduce_scatter,
    ("allgather", "ring"): ring_allgather,
    ("allgather", "recursive_doubling"): recursive_doubling_allgather,
    ("allgather", "bruck"): bruck_allgather,
    ("broadcast", "binomial_tree"): binomial_broadcast,
    ("broadcast", "scatter_allgather"): scatter_allgather_broadcast,
    ("reduce", "binomial_tree"): binomial_reduce,
    ("alltoall", "pairwise"): pairwise_alltoall,
    ("ps_push", "sharded"): sharded_push,
    ("ps_pull", "sharded"): sharded_pull,
}

_PARAMETER_SERVER = ("ps_push", "ps_pull")

#: (collective, algorithm) -> the algorithm options its builder takes (absent: none)
OPTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("allreduce", "double_binary_tree"): ("pipeline_chunks",),
    ("allreduce", "hierarchical"): ("inter", "intra", "pipeline_chunks"),
}
# ``slices`` (Schedule.slices: the schedule pipelined in c slices, reductions overlapping transfers)
# applies to every collective schedule; parameter-server pushes and pulls are not collectives
for _key in ALGORITHMS:
    if _key[0] not in ("ps_push", "ps_pull"):
        OPTIONS[_key] = (*OPTIONS.get(_key, ()), "slices")

#: options that mean something only with another option's value
_NEEDS: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
    ("allreduce", "hierarchical"): {"pipeline_chunks": ("inter", "double_binary_tree")},
}


def check_options(algorithm: str, options: dict, collective: str = "allreduce") -> None:
    """Raise :class:`ScheduleError` (one line) unless ``algorithm`` takes every key of ``options``.

    Values are checked by the builder itself (build a schedule to check them).

    Examples
    --------
    >>> check_options("double_binary_tree", {"pipeline_chunks": 8})
    >>> check_options("ring", {"pipeline_chunks": 8})
    Traceback (most recent call last):
    ...
    simulator.collectives.schedule.ScheduleError: ring allreduce takes no option 'pipeline_chunks'; it takes slices
    """
    takes = OPTIONS.get((collective, algorithm), ())
    unknown = [key for key in options if key not in takes]
    if not unknown:
        for key, (needs, value) in _NEEDS.get((collective, algorithm), {}).items():
            if key in options and options.get(needs, "ring") != value:
                raise ScheduleError(f"{algorithm} {collective}: {key} applies to {needs}: {value} only "
                                    f"({needs} is {options.get(needs, 'ring')})")
        return
    if not takes:
        raise ScheduleError(f"{algorithm} {collective} takes no options, got {', '.join(map(str, unknown))}")
    raise ScheduleError(f"{algorithm} {collective} takes no option {unknown[0]!r}; it takes "
                        f"{', '.join(takes)}")


def algorithms(collective: str = "allreduce") -> list[str]:
    """Names of the algorithms registered for ``collective``, in table order."""
    _check_collective(collective)
    return [name for (coll, name) in ALGORITHMS if coll == collective]


def _check_collective(collective: str) -> None:
    if collective not in COLLECTIVES:
        raise ValueError(
            f"unknown collective {collective!r}; expected one of {', '.join(COLLECTIVES)}"
        )


def schedule(
    algorithm: str,
    ranks: int,
    size_bytes: int,
    collective: str = "allreduce",
    **topology_info: object,
) -> Schedule:
    """The schedule of ``algorithm`` for ``collective`` over ``ranks`` ranks.

    Parameters
    ----------
    algorithm : a name from ``algorithms(collective)``.
    ranks : number of ranks p >= 1 (workers, for ps_push / ps_pull).
    size_bytes : bytes of each rank's buffer (alltoall: one rank's send buffer;
        ps_*: the whole model).
    collective : one of :data:`COLLECTIVES`.
    **topology_info : ``devices_per_node``, ``root``, ``servers``,
        ``pipeline_chunks`` where the algorithm uses them; others are ignored.

    Raises
    ------
    ValueError
        Unknown collective or algorithm (the message lists the valid ones), or a
        negative size.
    ScheduleError
        The algorithm cannot serve this rank count or option (it says why).

    Examples
    --------
    >>> s = schedule("ring", 4, 1000)
    >>> len(s.steps), s.chunk_bytes.tolist()
    (6, [250, 250, 250, 250])
    """
    _check_collective(collective)
    builder = ALGORITHMS.get((collective, algorithm))
    if builder is None:
        raise ValueError(
            f"unknown {collective} algorithm {algorithm!r}; expected one of "
            f"{', '.join(algorithms(collective))}"
        )
    ranks = _whole(ranks, "ranks")
    size_bytes = _whole(size_bytes, "size_bytes")
    if size_bytes < 0:
        raise ValueError(f"size_bytes must be >= 0, got {size_bytes}")
    if ranks < 1:
        raise ScheduleError(f"{algorithm} {collective} needs ranks >= 1, got {ranks}")
    if ranks == 1 and collective not in _PARAMETER_SERVER:
        return _single_rank(algorithm, collective, size_bytes, **topology_info)
    built = builder(ranks, size_bytes, **topology_info)
    if "slices" in topology_info and collective not in _PARAMETER_SERVER:
        slices = int_option(topology_info, "slices", 1, f"{algorithm} {collective}")
        if slices != built.slices:
            built = dataclasses.replace(built, slices=slices)
    return built


def _whole(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        whole = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    return whole


def _single_rank(algorithm: str, collective: str, size_bytes: int, **info: object) -> Schedule:
    """One rank: nothing to communicate (the postcondition already holds)."""
    root = info.get("root", 0)
    if collective in ("broadcast", "reduce") and root != 0:
        raise ScheduleError(f"{algorithm} {collective}: root {root!r} out of range 0..0")
    return Schedule(collective, algorithm, 1, (size_bytes,), ())


def analytic_time(
    algorithm: str,
    ranks: int,
    size_bytes: int,
    alpha: float,
    beta: float,
    gamma: float = 0.0,
    collective: str = "allreduce",
    **topology_info: object,
) -> float:
    """Alpha-beta-gamma time in seconds of the schedule ``schedule(...)`` would return.

    Parameters
    ----------
    alpha : seconds per message. beta : seconds per byte. gamma : seconds per byte reduced.
    Other parameters as :func:`schedule`.

    Notes
    -----
    Exactly :func:`~.analytic.schedule_cost` of the schedule; the three
    per-schedule byte totals are cached, so sweeps over alpha/beta/gamma are free.

    Examples
    --------
    >>> t = analytic_time("ring", 8, 8 * 2**20, alpha=1e-6, beta=1e-9)
    >>> round(t, 12) == round(14 * 1e-6 + 1.75 * 8 * 2**20 * 1e-9, 12)  # 2(p-1)a + 2(p-1)/p nb
    True
    """
    try:
        key = tuple(sorted(topology_info.items()))
        hash(key)
    except TypeError:  # unhashable or unorderable options: skip the cache
        maxima, totals, slices = _maxima(schedule(algorithm, ranks, size_bytes, collective, **topology_info))
    else:
        maxima, totals, slices = _cached_maxima(algorithm, ranks, size_bytes, collective, key)
    if slices == 1:
        busy, moved, reduced = maxima
        return alpha * busy + beta * moved + gamma * reduced
    return pipelined_cost(maxima, totals, slices, alpha, beta, gamma)


def _maxima(s: Schedule) -> tuple[tuple[int, int, int], tuple[int, int, int] | None, int]:
    return step_maxima(s), port_totals(s) if s.slices > 1 else None, s.slices


@lru_cache(maxsize=4096)
def _cached_maxima(
    algorithm: str,
    ranks: int,
    size_bytes: int,
    collective: str,
    info: tuple[tuple[str, object], ...],
) -> tuple[tuple[int, int, int], tuple[int, int, int] | None, int]:
    return _maxima(schedule(algorithm, ranks, size_bytes, collective, **dict(info)))


_BUS_FACTORS: dict[str, Callable[[int], float]] = {
    "allreduce": lambda p: 2 * (p - 1) / p,
    "reduce_scatter": lambda p: (p - 1) / p,
    "allgather": lambda p: (p - 1) / p,
    "alltoall": lambda p: (p - 1) / p,
    "broadcast": lambda p: 1.0,
    "reduce": lambda p: 1.0,
}


def bus_factor(collective: str, ranks: int) -> float:
    """nccl-tests' bus-bandwidth factor: ``busbw = algbw * bus_factor``.

    allreduce ``2(p-1)/p``; reduce_scatter, allgather, alltoall ``(p-1)/p``;
    broadcast, reduce ``1``. Parameter-server traffic has no nccl-tests
    convention and raises ValueError.

    References
    ----------
    NVIDIA nccl-tests, ``doc/PERFORMANCE.md``.
    """
    if collective not in _BUS_FACTORS:
        raise ValueError(
            f"bus_factor: no bus-bandwidth convention for {collective!r}; expected one of "
            f"{', '.join(_BUS_FACTORS)}"
        )
    if ranks < 1:
        raise ValueError(f"bus_factor: ranks must be >= 1, got {ranks}")
    return float(_BUS_FACTORS[collective](ranks))
