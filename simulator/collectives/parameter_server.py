"""Sharded parameter server: push (workers -> servers, reduce) and pull (servers -> workers).

``p`` workers are ranks ``0..p-1``; ``k`` servers are ranks ``p..p+k-1``
(``Schedule.ranks == p + k``, ``Schedule.servers == k``). The model's
``size_bytes`` are cut into ``k`` shards (:func:`~.schedule.split_evenly`);
shard ``s`` lives on server ``p + s``.

push
    One step: every worker sends every shard to its server, which adds it into
    a buffer that starts at zero. Server ``p + s`` receives ``p`` copies of
    shard ``s``, so with ``k`` dividing ``n`` the step costs
    ``alpha + max(n, p n/k) beta + p n/k gamma``: the servers' links are the
    bottleneck until ``k >= p``.
pull
    One step: every server sends its shard to every worker (copies):
    ``alpha + max(n, p n/k) beta``.

References
----------
M. Li et al., "Scaling distributed machine learning with the parameter
server", OSDI 2014. J. Dean et al., "Large scale distributed deep networks",
NeurIPS 2012.
"""

from __future__ import annotations

import numpy as np

from ._build import flags, int_option
from .schedule import Schedule, ScheduleError, Step, split_evenly

__all__ = ["sharded_pull", "sharded_push"]


def _servers(options: dict[str, object], where: str) -> int:
    return int_option(options, "servers", 1, where)


def sharded_push(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Every worker reduces shard ``s`` into server ``ranks + s``; one step."""
    servers = _servers(options, "sharded ps_push")
    _check_workers(ranks, "sharded ps_push")
    workers = np.arange(ranks, dtype=np.int32)
    shards = np.arange(servers, dtype=np.int32)
    step = Step(
        np.repeat(workers, servers),
        np.tile(ranks + shards, ranks),
        np.tile(shards, ranks),
        flags(ranks * servers, True),
    )
    return Schedule(
        "ps_push",
        "sharded",
        ranks + servers,
        split_evenly(size_bytes, servers),
        (step,),
        servers=servers,
    )


def sharded_pull(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Every server ``ranks + s`` copies shard ``s`` to every worker; one step."""
    servers = _servers(options, "sharded ps_pull")
    _check_workers(ranks, "sharded ps_pull")
    workers = np.arange(ranks, dtype=np.int32)
    shards = np.arange(servers, dtype=np.int32)
    step = Step(
        np.repeat(ranks + shards, ranks),
        np.tile(workers, servers),
        np.repeat(shards, ranks),
        flags(ranks * servers, False),
    )
    return Schedule(
        "ps_pull",
        "sharded",
        ranks + servers,
        split_evenly(size_bytes, servers),
        (step,),
        servers=servers,
    )


def _check_workers(ranks: int, where: str) -> None:
    if ranks < 1:
        raise ScheduleError(f"{where} needs at least one worker, got {ranks}")
