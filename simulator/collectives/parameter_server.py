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

Shards need not be even: ``shard_bytes=(b_0, ..., b_{k-1})`` (summing to
``size_bytes``) gives each server its own share, as key-value servers that place
whole layers do; :func:`shard_layout` computes which bytes of which layer live on
which server, for ``even`` (every layer split across all servers) and ``layer``
(whole layers, largest first, to the least-loaded server) sharding. A
message that is one part of the model (a gradient bucket, one stage's layers) is a
schedule of its own whose shard bytes are that part's share on each server.

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

__all__ = ["SHARDINGS", "shard_layout", "sharded_pull", "sharded_push"]

SHARDINGS = ("even", "layer")


def shard_layout(layer_bytes: np.ndarray, servers: int, sharding: str) -> np.ndarray:
    """Bytes of each layer held by each server, shape ``(layers, servers)``; rows sum to ``layer_bytes``.

    ``even``: every layer split evenly across the servers, as MXNet's KVStore splits big
    arrays and BytePS partitions tensors, so any part of the model is pushed to (and pulled
    from) all servers at once and the shards are equal. ``layer``: each layer whole on one
    server, largest first to the least-loaded (ties: the lower server; equal layers keep
    model order), as key-value servers that hash whole keys do; shards are uneven.

    >>> shard_layout(np.array([4.0, 4.0, 8.0]), 2, "even").tolist()
    [[2.0, 2.0], [2.0, 2.0], [4.0, 4.0]]
    >>> shard_layout(np.array([4.0, 4.0, 8.0]), 2, "layer").tolist()
    [[0.0, 4.0], [0.0, 4.0], [8.0, 0.0]]
    """
    layer_bytes = np.asarray(layer_bytes, dtype=float)
    if sharding not in SHARDINGS:
        raise ScheduleError(f"sharding must be one of {', '.join(SHARDINGS)}, got {sharding!r}")
    if servers < 1:
        raise ScheduleError(f"shard_layout needs at least one server, got {servers}")
    out = np.zeros((len(layer_bytes), servers))
    if sharding == "even" or servers == 1:
        out[:] = (layer_bytes / servers)[:, None]
        return out
    load = np.zeros(servers)
    for i in sorted(range(len(layer_bytes)), key=lambda i: -layer_bytes[i]):
        j = int(np.argmin(load))
        out[i, j] = layer_bytes[i]
        load[j] += layer_bytes[i]
    return out


def _servers(options: dict[str, object], where: str) -> int:
    return int_option(options, "servers", 1, where)


def _shards(size_bytes: int, servers: int, options: dict[str, object], where: str) -> tuple[int, ...]:
    """Each shard's bytes: ``shard_bytes`` when given (must sum to ``size_bytes``), else even."""
    given = options.get("shard_bytes")
    if given is None:
        return split_evenly(size_bytes, servers)
    shards = tuple(int(b) for b in given)  # type: ignore[union-attr]
    if len(shards) != servers or min(shards) < 0 or sum(shards) != size_bytes:
        raise ScheduleError(f"{where}: shard_bytes must be {servers} non-negative sizes summing to "
                            f"{size_bytes}, got {list(shards)}")
    return shards


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
        _shards(size_bytes, servers, options, "sharded ps_push"),
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
        _shards(size_bytes, servers, options, "sharded ps_pull"),
        (step,),
        servers=servers,
    )


def _check_workers(ranks: int, where: str) -> None:
    if ranks < 1:
        raise ScheduleError(f"{where} needs at least one worker, got {ranks}")
