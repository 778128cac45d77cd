"""Hierarchical (2-D ring) allreduce for ``nodes x devices_per_node`` ranks.

Ranks are host-major: ``rank = node * g + local`` with ``g = devices_per_node``
and ``m = p / g`` nodes. Three phases, each a ring:

1. intra-node ring reduce-scatter among the ``g`` ranks of every node: local
   rank ``l`` ends with shard ``l`` (``n/g`` bytes) reduced over its node;
2. inter-node ring allreduce of shard ``l`` among the ``m`` ranks with local
   index ``l`` (all ``g`` rings run in the same steps);
3. intra-node ring allgather of the shards.

Chunk ``l * m + i`` is piece ``i`` of shard ``l``, so there are ``p`` chunks.
With one alpha-beta-gamma for every link and ``p`` dividing ``n``:

``2(g-1) alpha + 2(g-1)/g n beta + (g-1)/g n gamma``
``+ 2(m-1) alpha + 2(m-1)/m (n/g) beta + (m-1)/m (n/g) gamma``

The point is that only ``n/g`` bytes per rank cross the slower inter-node
network; the simulator, which knows the two link classes, shows it.

References
----------
X. Jia et al., "Highly scalable deep learning training system with
mixed-precision: training ImageNet in four minutes", arXiv:1807.11205, 2018
(hierarchical allreduce); H. Mikami et al., "Massively distributed SGD:
ImageNet/ResNet-50 training in a flash", arXiv:1811.05233, 2018 (2-D torus
allreduce); P. Patarasuk and X. Yuan, JPDC 69(2), 2009 (the rings).
"""

from __future__ import annotations

import numpy as np

from ._build import counts, flags, frozen, int_option
from .schedule import Schedule, ScheduleError, Step, split_evenly

__all__ = ["hierarchical_allreduce"]


def hierarchical_allreduce(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Intra-node reduce-scatter, inter-node ring allreduce, intra-node allgather.

    Parameters
    ----------
    ranks : p, a multiple of ``devices_per_node``.
    size_bytes : bytes of each rank's buffer.
    devices_per_node : g (topology_info, required): ranks per node.
    """
    where = "hierarchical allreduce"
    per_node = int_option(options, "devices_per_node", None, where)
    if ranks % per_node:
        raise ScheduleError(
            f"{where} needs p to be a multiple of devices_per_node, got p={ranks}, "
            f"devices_per_node={per_node}"
        )
    nodes = ranks // per_node
    node, local = np.divmod(np.arange(ranks, dtype=np.int32), per_node)
    steps = (
        _intra(node, local, per_node, nodes, first_shift=1, reduce=True)
        + _inter(node, local, per_node, nodes, first_shift=1, reduce=True)
        + _inter(node, local, per_node, nodes, first_shift=0, reduce=False)
        + _intra(node, local, per_node, nodes, first_shift=0, reduce=False)
    )
    shards = split_evenly(size_bytes, per_node)
    chunk_bytes = [b for shard in shards for b in split_evenly(shard, nodes)]
    return Schedule("allreduce", "hierarchical", ranks, chunk_bytes, tuple(steps))


def _intra(
    node: np.ndarray, local: np.ndarray, g: int, m: int, first_shift: int, reduce: bool
) -> list[Step]:
    """Ring steps inside every node; each message moves a whole shard (m consecutive chunks)."""
    src = frozen(node * g + local)
    dst = frozen(node * g + (local + 1) % g)
    red = flags(len(src), reduce)
    many = counts(len(src), m)
    steps = []
    for k in range(g - 1):
        shard = (local - first_shift - k) % g
        steps.append(Step(src, dst, shard * m, red, count=many))
    return steps


def _inter(
    node: np.ndarray, local: np.ndarray, g: int, m: int, first_shift: int, reduce: bool
) -> list[Step]:
    """Ring steps across nodes, one ring per local index, over that shard's m pieces."""
    src = frozen(node * g + local)
    dst = frozen(((node + 1) % m) * g + local)
    red = flags(len(src), reduce)
    steps = []
    for k in range(m - 1):
        piece = (node - first_shift - k) % m
        steps.append(Step(src, dst, local * m + piece, red))
    return steps
