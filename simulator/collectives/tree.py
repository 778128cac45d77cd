"""Tree algorithms: binomial-tree reduce / broadcast / allreduce and NCCL's double binary tree.

Binomial tree (ranks numbered relative to the root, ``v = (r - root) mod p``):
reduce sends at the step with distance ``d = 1, 2, 4, ...`` from every ``v``
with ``v mod 2d == d`` to ``v - d``, which adds; broadcast runs the same tree
the other way with copies, largest distance first. The whole buffer is one
chunk, so with ``L = ceil(log2 p)``:

* broadcast ``L (alpha + n beta)``; reduce ``L (alpha + n beta + n gamma)``
* allreduce (reduce to rank 0, then broadcast) ``2L (alpha + n beta) + L n gamma``

Double binary tree: two binary trees over the same ranks, built as in NCCL so
that a rank that is an inner node of one is (nearly always) a leaf of the
other; each tree reduces and then broadcasts half of the buffer. Tree ``A`` is
NCCL's "lowest set bit" in-order tree rooted at 0; tree ``B`` is ``A`` mirrored
(``r -> p-1-r``) for even ``p`` and shifted by one for odd ``p``. A node sends
up once all its children have (at the step equal to its height) and the root
starts the broadcast right after its reduction completes.

With ``pipeline_chunks = q`` (topology_info, default 1) each half is cut into
``q`` pieces that follow one another through the tree one step apart, so the
schedule has ``2H + q - 1`` steps, ``H`` the taller tree's height (configs set
``q`` with ``communication.algorithm_options: {pipeline_chunks: q}``). For
``p = 2^j >= 4`` and ``q >= 2j - 1``, with pieces ``s = n / (2q)``, every rank is
an inner node of one tree and a leaf of the other, and the busiest port carries
2 pieces in the first and last ``j`` steps, 3 in steps ``j`` and ``q + j - 2``
and 4 in the ``q - 3`` between, so (``tests/simulator/test_collective_options.py``)

``(2j + q - 1) alpha + (4q + 4j - 6) s beta + (2q + 2j - 3) s gamma``
``= (2 log2 p + q - 1) alpha + (2 + (2 log2 p - 3) / q) n beta + ...``

On the fluid network that holds for ``p = 4``; from ``p = 8`` on, a rank sends
two pieces to the same peer in some steps (one tree's child is the other's
parent), which travel as one flow and share links differently.

With ``q = 1`` a parent receives ``n/2`` from each of two children in one step,
so each of the ``2H`` steps costs about ``alpha + n beta``: the
tree's advantage over the ring is latency (``H ~ log2 p``), and its bandwidth
term approaches ``2 n beta`` (the closed form above) only as ``q`` grows.

References
----------
R. Thakur, R. Rabenseifner and W. Gropp, "Optimization of collective
communication operations in MPICH", IJHPCA 19(1), 2005 (binomial trees).
P. Sanders, J. Speck and J. L. Traeff, "Two-tree algorithms for full bandwidth
broadcast, reduction and scan", Parallel Computing 35(12), 2009.
S. Jeaugey, "Massively scale your deep learning training with NCCL 2.4", NVIDIA
blog, 2019, and NCCL ``src/graph/trees.cc`` (double binary tree construction).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._build import concat_steps, int_option, root_option
from .schedule import Schedule, Step, split_evenly

__all__ = [
    "binomial_allreduce",
    "binomial_broadcast",
    "binomial_broadcast_steps",
    "binomial_reduce",
    "binomial_reduce_steps",
    "btree_parents",
    "double_binary_tree_allreduce",
]


def _levels(ranks: int) -> int:
    return (ranks - 1).bit_length()  # ceil(log2 p)


def binomial_reduce_steps(ranks: int, root: int, chunks: int) -> list[Step]:
    """Binomial reduce of all ``chunks`` to ``root``, smallest distance first."""
    v = np.arange(ranks)
    every = np.arange(chunks)
    steps = []
    for level in range(_levels(ranks)):
        mask = 1 << level
        senders = v[v % (2 * mask) == mask]
        steps.append(
            _tree_step((senders + root) % ranks, (senders - mask + root) % ranks, every, True)
        )
    return steps


def binomial_broadcast_steps(ranks: int, root: int, chunks: int) -> list[Step]:
    """Binomial broadcast of all ``chunks`` from ``root``, largest distance first."""
    v = np.arange(ranks)
    every = np.arange(chunks)
    steps = []
    for level in reversed(range(_levels(ranks))):
        mask = 1 << level
        senders = v[(v % (2 * mask) == 0) & (v + mask < ranks)]
        steps.append(
            _tree_step((senders + root) % ranks, (senders + mask + root) % ranks, every, False)
        )
    return steps


def _tree_step(src: np.ndarray, dst: np.ndarray, chunks: np.ndarray, reduce: bool) -> Step:
    """Every ``src[i] -> dst[i]`` pair moves every chunk in ``chunks``."""
    count = len(chunks)
    return concat_steps(
        [(np.repeat(src, count), np.repeat(dst, count), np.tile(chunks, len(src)), reduce)]
    )


def binomial_reduce(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Binomial-tree reduce to ``root`` (topology_info, default 0); any p >= 1."""
    root = root_option(options, ranks, "binomial_tree reduce")
    steps = binomial_reduce_steps(ranks, root, 1)
    return Schedule("reduce", "binomial_tree", ranks, (size_bytes,), tuple(steps), root=root)


def binomial_broadcast(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Binomial-tree broadcast from ``root`` (topology_info, default 0); any p >= 1."""
    root = root_option(options, ranks, "binomial_tree broadcast")
    steps = binomial_broadcast_steps(ranks, root, 1)
    return Schedule("broadcast", "binomial_tree", ranks, (size_bytes,), tuple(steps), root=root)


def binomial_allreduce(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Binomial reduce to ``root`` (default 0) followed by binomial broadcast from it."""
    root = root_option(options, ranks, "binomial_tree allreduce")
    steps = binomial_reduce_steps(ranks, root, 1) + binomial_broadcast_steps(ranks, root, 1)
    return Schedule("allreduce", "binomial_tree", ranks, (size_bytes,), tuple(steps))


# --------------------------------------------------------------------------- double binary tree


def btree_parents(ranks: int) -> np.ndarray:
    """NCCL's binary tree: ``parents[r]`` (``-1`` for the root, rank 0).

    ``r`` with lowest set bit ``b`` hangs under ``(r xor b) | 2b``, or under
    ``r xor b`` when that is out of range; the lowest set bit grows along every
    path, so every path ends at 0.
    """
    parents = np.full(ranks, -1, dtype=np.int64)
    for r in range(1, ranks):
        bit = r & -r
        up = (r ^ bit) | (bit << 1)
        parents[r] = up if up < ranks else r ^ bit
    return parents


def _complementary_parents(ranks: int) -> tuple[np.ndarray, np.ndarray]:
    """Tree A and tree B (mirrored for even p, shifted by one for odd p)."""
    a = btree_parents(ranks)
    r = np.arange(ranks)
    if ranks % 2 == 0:
        image = ranks - 1 - r  # an involution: B's rank r plays A's rank p-1-r
        b = np.where(a[image] < 0, -1, ranks - 1 - a[image])
    else:
        image = (r - 1) % ranks
        b = np.where(a[image] < 0, -1, (a[image] + 1) % ranks)
    return a, b


def _heights_and_depths(parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ranks = len(parents)
    depth = np.zeros(ranks, dtype=np.int64)
    order = []  # ranks sorted so that every parent precedes its children
    children: list[list[int]] = [[] for _ in range(ranks)]
    for r, up in enumerate(parents.tolist()):
        if up >= 0:
            children[up].append(r)
    stack = [int(np.flatnonzero(parents < 0)[0])]
    while stack:
        node = stack.pop()
        order.append(node)
        for child in children[node]:
            depth[child] = depth[node] + 1
            stack.append(child)
    height = np.zeros(ranks, dtype=np.int64)
    for node in reversed(order):
        if children[node]:
            height[node] = 1 + max(height[c] for c in children[node])
    return height, depth


def double_binary_tree_allreduce(ranks: int, size_bytes: int, **options: object) -> Schedule:
    """Allreduce over two complementary binary trees, half of the buffer each; any p >= 1.

    Chunk ``t * q + j`` is piece ``j`` of tree ``t``'s half (``q`` = pipeline_chunks).
    """
    pieces = int_option(options, "pipeline_chunks", 1, "double_binary_tree allreduce")
    halves = split_evenly(size_bytes, 2)
    chunk_bytes = split_evenly(halves[0], pieces) + split_evenly(halves[1], pieces)
    return Schedule("allreduce", "double_binary_tree", ranks, chunk_bytes, _dbt_steps(ranks, pieces))


@lru_cache(maxsize=4)
def _dbt_steps(ranks: int, pieces: int) -> tuple[Step, ...]:
    """The two trees' steps, built once per shape: steps are frozen and do not depend on the bytes, so
    the schedules of every message size (a job's buckets) share them."""
    trees = []
    for t, parents in enumerate(_complementary_parents(ranks)):
        height, depth = _heights_and_depths(parents)
        root = int(np.flatnonzero(parents < 0)[0])
        trees.append((t, parents, height, depth, int(height[root])))
    total = max(2 * tree_height for *_, tree_height in trees) + pieces - 1 if ranks > 1 else 0
    return tuple(_dbt_step(trees, pieces, k) for k in range(total))


def _dbt_step(trees: list, pieces: int, k: int) -> Step:
    """Step ``k``: pieces moving up (node at height h sends piece k-h) and down.

    Node ``x`` receives piece ``j`` from its parent at step ``H + j + depth[x] - 1``.
    """
    parts = []
    for t, parents, height, depth, tree_height in trees:
        child = np.flatnonzero(parents >= 0)
        up = k - height[child]
        going_up = (up >= 0) & (up < pieces)
        parts.append((child[going_up], parents[child][going_up], t * pieces + up[going_up], True))
        down = k - tree_height - depth[child] + 1
        going_down = (down >= 0) & (down < pieces)
        parts.append(
            (parents[child][going_down], child[going_down], t * pieces + down[going_down], False)
        )
    return concat_steps(parts)
