"""Hierarchical (2-D ring) allreduce, reduce-scatter and all-gather for ``nodes x devices_per_node`` ranks.

The reduce-scatter and all-gather (what ZeRO and all-gathering codecs run under
``communication.algorithm: hierarchical``) are at the end of this module: two levels each,
ordered so that the fewest bytes cross the nodes (:func:`hierarchical_reduce_scatter`,
:func:`hierarchical_allgather`). The allreduce:

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

Chosen phases (``inter``, ``intra``, ``pipeline_chunks``: algorithm options)
---------------------------------------------------------------------------
``inter`` (default ``ring``) is any of ``ring``, ``recursive_doubling``,
``rabenseifner``, ``double_binary_tree``: phase 2 is then that algorithm's own
allreduce schedule over the ``m`` nodes, built by its builder and run on shard
``l`` by the ``m`` ranks of local index ``l`` (all ``g`` of them in the same
steps). Its ``c`` chunks become chunks ``l * c .. l * c + c - 1``, so the
buffer has ``g * c`` chunks and phase 2 costs that algorithm's cost for
``n/g`` bytes on ``m`` ranks. ``pipeline_chunks`` goes to the inter
``double_binary_tree`` (``check_options`` refuses it with any other ``inter``). ``intra`` (default
``ring``) is ``ring`` (ring reduce-scatter and allgather) or ``rabenseifner``
(recursive halving, then recursive doubling: ``g`` a power of two), their
schedules lifted so that a shard is a range of ``c`` chunks. Given no option
(or both ``ring``), the schedule is the original 2-D ring above, step for step.

References
----------
X. Jia et al., "Highly scalable deep learning training system with
mixed-precision: training ImageNet in four minutes", arXiv:1807.11205, 2018
(hierarchical allreduce); H. Mikami et al., "Massively distributed SGD:
ImageNet/ResNet-50 training in a flash", arXiv:1811.05233, 2018 (2-D torus
allreduce); P. Patarasuk and X. Yuan, JPDC 69(2), 2009 (the rings).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._build import counts, flags, frozen, int_option, require_power_of_two
from .rabenseifner import halving_reduce_scatter_steps, rabenseifner_allreduce
from .recursive_doubling import doubling_allgather_steps, recursive_doubling_allreduce
from .ring import ring_allreduce, ring_steps
from .schedule import Schedule, ScheduleError, Step, split_evenly
from .tree import double_binary_tree_allreduce

__all__ = ["INTER", "INTRA", "PHASE_CHOICES", "hierarchical_allgather", "hierarchical_allreduce",
           "hierarchical_reduce_scatter"]

#: inter-node phase: the allreduce builders it may be composed from
INTER = {
    "ring": ring_allreduce,
    "recursive_doubling": recursive_doubling_allreduce,
    "rabenseifner": rabenseifner_allreduce,
    "double_binary_tree": double_binary_tree_allreduce,
}
#: intra-node phases: reduce-scatter and allgather (steps over g ranks, local l owning shard l)
INTRA = ("ring", "rabenseifner")


def hierarchical_allreduce(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Intra-node reduce-scatter, inter-node ring allreduce, intra-node allgather.

    Parameters
    ----------
    ranks : p, a multiple of ``devices_per_node``.
    size_bytes : bytes of each rank's buffer.
    devices_per_node : g (topology_info, required): ranks per node.
    inter, intra, pipeline_chunks : algorithm options (module docstring).
    """
    where = "hierarchical allreduce"
    per_node = int_option(options, "devices_per_node", None, where)
    if ranks % per_node:
        raise ScheduleError(
            f"{where} needs p to be a multiple of devices_per_node, got p={ranks}, "
            f"devices_per_node={per_node}"
        )
    nodes = ranks // per_node
    inter = _choice(options, "inter", tuple(INTER), where)
    intra = _choice(options, "intra", INTRA, where)
    if inter != "ring" or intra != "ring":
        return _composed(ranks, size_bytes, per_node, nodes, inter, intra, options)
    shards = split_evenly(size_bytes, per_node)
    chunk_bytes = [b for shard in shards for b in split_evenly(shard, nodes)]
    return Schedule("allreduce", "hierarchical", ranks, chunk_bytes, _ring_2d_steps(ranks, per_node))


@lru_cache(maxsize=2)
def _ring_2d_steps(ranks: int, per_node: int) -> tuple[Step, ...]:
    """The 2-D ring's steps, built once per shape: steps are frozen and do not depend on the bytes, so
    the schedules of every message size (a job's buckets) share them."""
    nodes = ranks // per_node
    node, local = np.divmod(np.arange(ranks, dtype=np.int32), per_node)
    return tuple(
        _intra(node, local, per_node, nodes, first_shift=1, reduce=True)
        + _inter(node, local, per_node, nodes, first_shift=1, reduce=True)
        + _inter(node, local, per_node, nodes, first_shift=0, reduce=False)
        + _intra(node, local, per_node, nodes, first_shift=0, reduce=False)
    )


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


def _choice(options: dict, key: str, allowed: tuple[str, ...], where: str) -> str:
    value = options.get(key, "ring")
    if value not in allowed:
        raise ScheduleError(f"{where}: {key} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _composed(ranks: int, size_bytes: int, g: int, m: int, inter: str, intra: str,
              options: dict) -> Schedule:
    """Intra reduce-scatter, the ``inter`` builder's allreduce per local index, intra allgather."""
    # pipeline_chunks is the inter tree's (check_options refuses it with another inter; like all
    # topology_info, the builder ignores what does not apply)
    use = inter == "double_binary_tree" and "pipeline_chunks" in options
    extra = {"pipeline_chunks": options["pipeline_chunks"]} if use else {}
    shards = split_evenly(size_bytes, g)
    inner = {n: INTER[inter](m, n, **extra) for n in sorted(set(shards))}  # steps depend on m only
    c = inner[shards[0]].chunks
    local = np.arange(g, dtype=np.int32)
    across = np.arange(m, dtype=np.int32)[None, :] * g + local[:, None]       # [g, m]: (local, node) -> rank
    within = np.arange(m, dtype=np.int32)[:, None] * g + local[None, :]       # [m, g]: (node, local) -> rank
    if intra == "ring":
        rs = ring_steps(local, [(1, g - 1, True)])
        ag = ring_steps(local, [(0, g - 1, False)])
    else:
        require_power_of_two(g, "hierarchical", "allreduce with intra: rabenseifner (devices_per_node)", "intra: ring")
        rs, ag = halving_reduce_scatter_steps(local), doubling_allgather_steps(local)
    steps = (
        [_lift(st, within, np.zeros(m, dtype=np.int32), c) for st in rs]
        + [_lift(st, across, local * c, 1) for st in inner[shards[0]].steps]
        + [_lift(st, within, np.zeros(m, dtype=np.int32), c) for st in ag]
    )
    chunk_bytes = [b for n in shards for b in inner[n].chunk_bytes.tolist()]
    return Schedule("allreduce", "hierarchical", ranks, chunk_bytes, tuple(steps))


def _lift(step: Step, ranks: np.ndarray, offset: np.ndarray, scale: int) -> Step:
    """``step`` (over sub-ranks ``0..R-1``) run by every group ``k`` at once on real ranks ``ranks[k]``.

    Sub-chunk ``j`` of group ``k`` is the range of ``scale`` real chunks from ``offset[k] + j * scale``.
    """
    assert step.wrap is None  # no composed builder wraps chunk ranges
    src, dst, red = step.messages()
    k = ranks.shape[0]
    count = step.count
    lifted = None if count is None and scale == 1 else np.tile(
        (np.ones(len(src), dtype=np.int32) if count is None else count) * scale, k)
    first = (offset[:, None] + step.first[None, :].astype(np.int32) * scale).ravel()
    return Step(ranks[:, src].ravel(), ranks[:, dst].ravel(), first, np.tile(red, k), count=lifted)


# ---------------------------------------------------------------------------- reduce-scatter and all-gather

#: phases the reduce-scatter / all-gather may be built from, per collective (``inter`` and ``intra`` alike)
PHASE_CHOICES = {
    "reduce_scatter": ("ring", "rabenseifner"),
    "allgather": ("ring", "rabenseifner", "recursive_doubling"),
}


def hierarchical_reduce_scatter(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Intra-node reduce-scatter of the whole buffer, then inter-node reduce-scatter per local index.

    Rank ``r = node * g + local`` ends with chunk ``r`` (``n/p`` bytes) reduced over all ``p`` ranks,
    the collective's contract. Phase 1 (over the ``g`` ranks of every node) leaves local rank ``l``
    with *shard* ``l`` reduced over its node: the ``m`` chunks ``l, g + l, 2g + l, ...`` its
    column of nodes will own (a message of phase 1 carries a whole shard, ``m`` chunks); phase 2
    (over the ``m`` ranks of local index ``l``, all ``g`` rings in the same steps) reduce-scatters
    shard ``l``, so rank ``(node, l)`` keeps chunk ``node * g + l``. With one alpha-beta-gamma and
    ``p`` dividing ``n`` (ring phases):

    ``(g-1) alpha + (g-1)/g n (beta + gamma) + (m-1) alpha + (m-1)/m (n/g) (beta + gamma)``

    Intra first is the order that sends the fewest bytes across the nodes: each rank's NIC carries
    ``(m-1)/m n/g`` (inter first would carry ``(m-1)/m n``, ``g`` times more, and leave the cheap
    intra-node links the small part). That is the gain with a NIC per device; where a node's ``g``
    devices share one NIC it carries ``(m-1)/m n``, about a flat ring's ``(p-1)/p n``, and the gain
    is the ``m - 1`` inter-node steps in place of ``p - 1``. ``inter`` / ``intra`` (options, default
    ``ring``): ``rabenseifner`` makes that phase recursive halving (``log2`` steps in place of ``m-1`` or
    ``g-1``; ``m`` or ``g`` a power of two).
    """
    return _two_level("reduce_scatter", ranks, size_bytes, options)


def hierarchical_allgather(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Inter-node all-gather per local index, then intra-node all-gather of the ``m``-chunk shards.

    Rank ``r = node * g + local`` starts with chunk ``r``. Phase 1 (over the ``m`` ranks of local
    index ``l``, all ``g`` rings in the same steps) gathers shard ``l`` (chunks ``l, g + l, ...``)
    on each of them; phase 2 (inside every node) all-gathers the ``g`` shards, one message a shard.
    With one alpha-beta and ``p`` dividing ``n`` (ring phases):

    ``(m-1) alpha + (m-1)/m (n/g) beta + (g-1) alpha + (g-1)/g n beta``

    Inter first is the order that sends the fewest bytes across the nodes: each rank's NIC carries
    ``(m-1)/m n/g``; intra first would make every rank hold its node's ``g`` chunks before crossing,
    and carry ``(m-1)/m n``, ``g`` times more (one NIC shared by a node's ``g`` devices: as for the
    reduce-scatter, :func:`hierarchical_reduce_scatter`). ``inter`` / ``intra`` (options, default ``ring``):
    ``rabenseifner`` or ``recursive_doubling`` makes that phase recursive doubling (``log2`` steps;
    ``m`` or ``g`` a power of two).
    """
    return _two_level("allgather", ranks, size_bytes, options)


def _two_level(collective: str, ranks: int, size_bytes: int, options: dict) -> Schedule:
    where = f"hierarchical {collective}"
    g = int_option(options, "devices_per_node", None, where)
    if ranks % g:
        raise ScheduleError(f"{where} needs p to be a multiple of devices_per_node, got p={ranks}, "
                            f"devices_per_node={g}")
    choices = PHASE_CHOICES[collective]
    inter, intra = (_choice(options, key, choices, where) for key in ("inter", "intra"))
    steps = _two_level_steps(collective, ranks, g, inter, intra)
    return Schedule(collective, "hierarchical", ranks, split_evenly(size_bytes, ranks), steps)


@lru_cache(maxsize=8)
def _two_level_steps(collective: str, ranks: int, g: int, inter: str, intra: str) -> tuple[Step, ...]:
    """The steps of :func:`_two_level`, built once per shape: they are frozen, so the schedules of every
    message size (a job's buckets) share them, as the ring's do."""
    m = ranks // g
    node, local = np.arange(m, dtype=np.int32), np.arange(g, dtype=np.int32)
    by_node = node[:, None] * g + local[None, :]                  # [m, g]: (node, local) -> rank, and chunk
    # intra: group = node, sub-rank = local, sub-chunk j = shard j = chunks j, g + j, ... (every node alike)
    intra_steps = [_spread(st, by_node, np.broadcast_to(by_node.T, (m, g, m))) for st in
                   _phase(collective, intra, g, f"{collective} with intra: {intra} (devices_per_node)", "intra: ring")]
    # inter: group = local l, sub-rank = node, sub-chunk j = chunk j * g + l
    inter_steps = [_spread(st, by_node.T, by_node.T[:, :, None]) for st in
                   _phase(collective, inter, m, f"{collective} with inter: {inter} (nodes)", "inter: ring")]
    return tuple(intra_steps + inter_steps if collective == "reduce_scatter" else inter_steps + intra_steps)


def _phase(collective: str, name: str, size: int, what: str, instead: str) -> list[Step]:
    """The steps of one level over sub-ranks ``0..size-1``: sub-rank ``v`` ends with (starts with) chunk v."""
    order = np.arange(size, dtype=np.int32)
    if name == "ring":
        return ring_steps(order, [(1, size - 1, True)] if collective == "reduce_scatter" else [(0, size - 1, False)])
    require_power_of_two(size, "hierarchical", what, instead)
    return halving_reduce_scatter_steps(order) if collective == "reduce_scatter" else doubling_allgather_steps(order)


def _spread(step: Step, ranks: np.ndarray, chunks: np.ndarray) -> Step:
    """``step`` (over sub-ranks) run by every group ``k`` at once: sub-rank ``v`` is rank ``ranks[k, v]``, sub-chunk
    ``j`` the real chunks ``chunks[k, j, :]`` (a strided set: one message per pair, which the network and the
    alpha-beta-gamma cost see as one, since they sum a step's bytes per pair)."""
    src, dst, chunk, red = step.src, step.dst, step.chunk, step.reduce    # per chunk moved
    k, spread = chunks.shape[0], chunks.shape[2]
    shape = (k, len(src), spread)
    return Step(np.broadcast_to(ranks[:, src][:, :, None], shape).ravel(),
                np.broadcast_to(ranks[:, dst][:, :, None], shape).ravel(),
                chunks[:, chunk, :].ravel(),
                np.broadcast_to(red[None, :, None], shape).ravel())
