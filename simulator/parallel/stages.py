"""Pipeline stages from a layer list: contiguous ranges balanced by compute.

A pipeline runs as fast as its slowest stage, so the layers (in forward order)
are cut into ``parts`` contiguous, non-empty ranges that minimise the largest
range cost — the classic linear-partition problem, solved exactly by dynamic
programming over prefix sums (O(parts · n²) with numpy over the last cut; n is a
few hundred layers at most). Memory is not balanced here; :mod:`.memory` checks
every stage afterwards.

With interleaving (``v`` chunks per stage) there are ``P·v`` *virtual* stages;
virtual stage ``c·P + s`` is chunk ``c`` of stage ``s`` (Narayanan et al. 2021, §2.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["balance"]


def balance(costs: Sequence[float], parts: int) -> tuple[range, ...]:
    """Split ``costs`` (one per layer, in order) into ``parts`` contiguous ranges.

    Returns the ranges of layer indices, in order; the largest range sum is as small
    as any contiguous split allows (ties: the first optimal last cut, scanning left).

    Examples
    --------
    >>> [list(r) for r in balance([1, 1, 1, 1, 4], 2)]
    [[0, 1, 2, 3], [4]]
    """
    n = len(costs)
    if not 1 <= parts <= n:
        raise ValueError(f"cannot cut {n} layers into {parts} non-empty stages")
    prefix = np.concatenate([[0.0], np.cumsum(np.asarray(costs, dtype=float))])
    best = np.full((parts + 1, n + 1), np.inf)
    cut = np.zeros((parts + 1, n + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for k in range(1, parts + 1):
        for i in range(k, n - (parts - k) + 1):
            j = np.arange(k - 1, i)                       # the last range is layers j..i-1
            candidates = np.maximum(best[k - 1, j], prefix[i] - prefix[j])
            pick = int(np.argmin(candidates))
            best[k, i], cut[k, i] = candidates[pick], j[pick]
    bounds = [n]
    for k in range(parts, 0, -1):
        bounds.append(int(cut[k, bounds[-1]]))
    bounds.reverse()
    return tuple(range(a, b) for a, b in zip(bounds, bounds[1:], strict=False))
