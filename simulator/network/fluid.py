"""Flow-level model: concurrent flows share each link max-min fairly.

Progressive filling (Bertsekas & Gallager, *Data Networks*, §6.5.2): raise every
unfrozen flow's rate together until some link saturates; freeze the flows on it;
repeat. When a flow finishes, its bandwidth is re-shared among the survivors
(the next "epoch"). Every flow also pays its path latency once, as a fixed delay
(so an uncontended flow takes exactly α_path + bytes/bandwidth, like Hockney's model).

Everything is vectorised over the flow-link incidence with ``np.bincount``; the
number of Python-level iterations is the number of distinct bottleneck levels
times the number of distinct finishing times, both small for collective steps.
"""

from __future__ import annotations

import numpy as np

from .base import FlowBatch, alone_finish_times, digest

__all__ = ["Fluid", "bundles", "max_min_rates"]

_EPS = 1e-12
_MAX_RATE_FLOATS = 1 << 23   # rates kept per alive set, in all (64 MB); then the memo starts again
_MAX_BUNDLE_KINDS = 8        # distinct (capacity, flows) bundles ``bundles`` groups a step's flows into


def max_min_rates(flow_of: np.ndarray, link_of: np.ndarray, n_flows: int,
                  capacity: np.ndarray) -> np.ndarray:
    """Max-min fair rates for flows on links.

    Parameters
    ----------
    flow_of, link_of : int arrays of equal length
        Incidence entries: flow ``flow_of[e]`` crosses link ``link_of[e]``.
    n_flows : int
        Number of flows (a flow with no links gets rate ``inf``).
    capacity : float64[n_links]
        Link capacities, bytes/s.

    Returns
    -------
    float64[n_flows], bytes/s.
    """
    n_links = len(capacity)
    rate = np.full(n_flows, np.inf)
    remaining = capacity.astype(float).copy()      # capacity minus the rates of frozen flows
    flows, links = np.asarray(flow_of), np.asarray(link_of)   # the incidence entries of unfrozen flows
    counts = np.bincount(links, minlength=n_links)            # unfrozen flows on each link
    newly = np.zeros(n_flows, dtype=bool)
    share = np.empty(n_links)
    while len(flows):
        used = counts > 0
        share.fill(np.inf)
        np.divide(remaining, counts, out=share, where=used)
        level = share.min()
        saturated = share <= level * (1 + _EPS)    # read only at links some unfrozen flow crosses
        newly[flows[saturated[links]]] = True      # every flow crossing a saturated link freezes
        rate[newly] = level
        done = newly[flows]
        freed = np.bincount(links[done], minlength=n_links)
        remaining -= level * freed
        np.maximum(remaining, 0.0, out=remaining)
        counts -= freed
        newly[flows[done]] = False
        keep = ~done
        flows, links = flows[keep], links[keep]
    return rate


def bundles(link_ptr: np.ndarray, links: np.ndarray, capacity: np.ndarray) -> list[np.ndarray] | None:
    r"""The flows of these routes as *bundles* when the max-min solve sees nothing else, or None.

    A bundle is a link :math:`b` and the :math:`k_b \ge 2` flows crossing it; the bundles found here
    share no flow, and every other link :math:`l` of their flows is either a *twin* of its flows'
    bundle link (the same flows, the same capacity) or *dominated* by it: its flows are among
    :math:`b`'s and :math:`c_l > c_b (1 + 10^{-9} n)` (``n`` flows). Returned: per kind of bundle
    (capacity, :math:`k_b`), an int array ``[bundles of that kind, k_b]`` of flow indices.

    Why it matters (``Network`` solves one step per class of steps this makes equivalent):
    ``finish_times`` then gives exactly, float for float, what the same solve gives on the bundle
    links alone, and the bundle links alone are symmetric under any permutation of the flows that
    maps bundles to bundles of the same kind. Proof, for any set of alive flows (every flow busy:
    each shares its bundle link, so all of them take ``finish_times_coupled``): in
    ``max_min_rates`` a twin starts at its bundle link's capacity and loses the same
    ``level * freed`` at every iteration, so it holds the same floats, saturates when its bundle
    link does and freezes the same flows. A dominated link :math:`l` never saturates: its unfrozen
    flows are among :math:`b`'s (:math:`k_l \le k_b`), its frozen ones too, so its remaining
    capacity is at least :math:`c_l - c_b` plus :math:`b`'s (up to the rounding of at most ``n``
    subtractions, :math:`< 10^{-15} n c_l`), and its share exceeds :math:`b`'s, itself at least the
    level, by :math:`(c_l - c_b) / k_b > 10^{-9} c_b \ge 10^{-9}` level, far above the
    :math:`(1 + 10^{-12})` tolerance of a saturated link. So the level (a minimum over the links),
    the saturated links that count and the frozen flows are those of the bundle links alone, at
    every iteration, and the rates are the same floats; the epoch loop reads only the rates and the
    sizes. Every operation of both loops is elementwise per flow or per link, or a minimum, so a
    relabelling of flows and links that preserves the incidence and the capacities permutes every
    result exactly: steps whose sizes are such a permutation of each other have permuted finish
    times (``tests/simulator/test_bundles.py`` checks both claims against full solves).
    """
    n = len(link_ptr) - 1
    per_flow = np.diff(link_ptr)
    if n < 2 or not len(links) or (per_flow == 0).any():
        return None
    flow_of = np.repeat(np.arange(n), per_flow)
    used, where = np.unique(links, return_inverse=True)
    where = where.ravel()
    cap, k = capacity[used], np.bincount(where)
    # each flow's candidate bundle link: its slowest link, the most shared of those, the lowest index
    order = np.lexsort((where, -k[where], cap[where], flow_of))
    designated = where[order[link_ptr[:-1]]]
    on_entry = designated[flow_of]
    lo, hi = np.full(len(used), len(used)), np.full(len(used), -1)
    np.minimum.at(lo, where, on_entry)
    np.maximum.at(hi, where, on_entry)
    if (lo != hi).any():          # a link carrying flows of two bundles
        return None
    owner = lo
    is_bundle = owner == np.arange(len(used))
    if (k[is_bundle] < 2).any():
        return None
    c_own = cap[owner]
    fine = is_bundle | (cap > c_own * (1.0 + 1e-9 * n)) | ((cap == c_own) & (k == k[owner]))
    if not fine.all():
        return None
    # kinds of bundle links by (capacity, flows); not np.unique(axis=...), which imports numpy.ma
    bc, bk = cap[is_bundle], k[is_bundle]
    order = np.lexsort((bk, bc))
    new = np.ones(len(order), dtype=bool)
    new[1:] = (bc[order][1:] != bc[order][:-1]) | (bk[order][1:] != bk[order][:-1])
    if int(new.sum()) > _MAX_BUNDLE_KINDS:
        return None
    kind_of = np.empty(len(order), dtype=np.int64)
    kind_of[order] = np.cumsum(new) - 1
    kind_of_link = np.full(len(used), -1)
    kind_of_link[np.flatnonzero(is_bundle)] = kind_of
    by_bundle = np.argsort(designated, kind="stable")         # flows of one bundle together, in index order
    kind_of_flow = kind_of_link[designated[by_bundle]]
    return [by_bundle[kind_of_flow == j].reshape(-1, int(size)) for j, size in enumerate(bk[order][new].tolist())]


def canonical_sizes(groups: list[np.ndarray], nbytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``nbytes`` in a canonical order of ``bundles``' groups, and the flow at each position.

    Within a bundle the sizes are sorted, the bundles of one kind sorted by those sorted sizes; two
    steps with the same canonical sizes differ by a permutation that maps bundles to bundles of their
    kind, so their finish times are the same floats at the same positions (``bundles``).
    """
    values, flows = [], []
    for group in groups:
        v = nbytes[group]
        # ties: flows of equal size in a bundle are interchangeable; flat indices, not take_along_axis
        # (the same gather, a third of the time: this runs once per coupled step)
        within = (np.argsort(v, axis=1) + np.arange(0, v.size, v.shape[1])[:, None]).ravel()
        v = v.ravel()[within].reshape(v.shape)
        rows = np.lexsort(v.T[::-1]) if v.shape[1] > 1 else np.argsort(v[:, 0])
        values.append(v[rows].ravel())
        flows.append(group.ravel()[within].reshape(v.shape)[rows].ravel())
    if len(groups) == 1:
        return values[0], flows[0]
    return np.concatenate(values), np.concatenate(flows)


class Fluid:
    """Max-min fair sharing with re-allocation whenever a flow completes."""

    name = "fluid"
    #: flows on one link share its capacity (``Network.schedule_floor`` counts a link's bytes)
    shares_links = True
    #: finish times are latency + a function of the sizes that scales with them (Network memoises on it)
    scales_linearly = True
    #: flows grouped as ``bundles`` finish at the same times under permutations that keep the groups
    bundles = staticmethod(bundles)

    def __init__(self) -> None:
        # max-min rates depend on which flows are alive, not on their bytes: steps of the same
        # routes with other sizes (a job's buckets) meet the same alive sets again
        self._rates: dict[bytes, np.ndarray] = {}
        self._rate_floats = 0

    def finish_times(self, flows: FlowBatch, capacity: np.ndarray) -> np.ndarray:
        n = flows.n
        finish = np.zeros(n)
        if n == 0:
            return finish
        flow_of_all = flows.flow_of_entry()
        # A flow that shares none of its links runs at its bottleneck from start to end;
        # only flows coupled through a shared link need the epoch loop below.
        busy = (flows.nbytes > 0)[flow_of_all]
        sharing = np.bincount(flows.links[busy], minlength=len(capacity))[flows.links] > 1
        coupled = np.zeros(n, dtype=bool)
        coupled[flow_of_all[sharing & busy]] = True
        if not coupled.any():
            return alone_finish_times(flows, capacity)
        if not coupled.all():
            finish = alone_finish_times(flows, capacity)
            sub = _subset(flows, np.flatnonzero(coupled))
            finish[coupled] = self.finish_times_coupled(sub, capacity)
            return finish
        return self.finish_times_coupled(flows, capacity)

    def last_finish_lower_bound(self, flows: FlowBatch, capacity: np.ndarray) -> float:
        r"""A lower bound on ``finish_times(flows, capacity).max()`` that solves no max-min allocation.

        Flow :math:`i` (bytes :math:`b_i`, path latency :math:`\lambda_i`, links :math:`L_i`) finishes
        at :math:`\lambda_i + F_i`, where :math:`F_i` is when its last byte has crossed at rates
        :math:`r_i(t)` that every allocation here keeps feasible:
        :math:`\sum_{i \ni l} r_i(t) \le c_l` on every link :math:`l` at every instant. Hence

        1. :math:`r_i \le \min_{l \in L_i} c_l`, so :math:`F_i \ge b_i / \min_{l \in L_i} c_l`: each
           flow alone on its path (``alone_finish_times``) is no later than under sharing;
        2. by :math:`M_l = \max_{i \ni l} F_i` link :math:`l` has carried every byte of its flows, at
           most :math:`c_l` per second, so :math:`M_l \ge \sum_{i \ni l} b_i / c_l`; the flow that
           finishes at :math:`M_l` has a latency of at least :math:`\min_{i \ni l} \lambda_i`.

        The bound is the larger of :math:`\max_i (\lambda_i + b_i / \min_{l \in L_i} c_l)` and
        :math:`\max_l (\min_{i \ni l} \lambda_i + \sum_{i \ni l} b_i / c_l)`. It holds for the exact
        fluid times; the epoch loop of ``finish_times_coupled`` retires a flow within 1e-9 of an
        epoch's end, so its times may fall short of the exact ones by that order (``tuner`` allows
        for it). No two flows share a link: the first term is the exact time.
        """
        if flows.n == 0:
            return 0.0
        alone = float(alone_finish_times(flows, capacity).max())
        flow_of = flows.flow_of_entry()
        load = np.bincount(flows.links, weights=flows.nbytes[flow_of], minlength=len(capacity))
        first = np.full(len(capacity), np.inf)           # the smallest latency among each link's flows
        np.minimum.at(first, flows.links, flows.latency[flow_of])
        used = load > 0
        return max(alone, float((first[used] + load[used] / capacity[used]).max(initial=0.0)))

    def finish_times_coupled(self, flows: FlowBatch, capacity: np.ndarray) -> np.ndarray:
        """The general case: epochs of max-min allocation between flow completions."""
        n = flows.n
        finish = np.zeros(n)
        flow_of_all = flows.flow_of_entry()
        left = flows.nbytes.astype(float).copy()
        alive = left > 0
        now = 0.0
        structure = digest(flows.link_ptr, flows.links, capacity)
        if self._rate_floats > _MAX_RATE_FLOATS:
            self._rates.clear()
            self._rate_floats = 0
        while alive.any():
            ids = np.flatnonzero(alive)
            key = structure + np.packbits(alive).tobytes()
            rate = self._rates.get(key)
            if rate is None:
                keep = alive[flow_of_all]
                remap = np.full(n, -1)
                remap[ids] = np.arange(len(ids))
                rate = self._rates[key] = max_min_rates(remap[flow_of_all[keep]], flows.links[keep], len(ids),
                                                        capacity)
                rate.flags.writeable = False
                self._rate_floats += len(rate)
            dt = left[ids] / rate
            step = dt.min()
            left[ids] -= rate * step
            now += step
            done = ids[(dt <= step * (1 + 1e-9)) | (left[ids] <= _EPS * flows.nbytes[ids])]
            finish[done] = now
            left[done] = 0.0
            alive[done] = False
        return finish + flows.latency


def _subset(flows: FlowBatch, ids: np.ndarray) -> FlowBatch:
    counts = np.diff(flows.link_ptr)[ids]
    ptr = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    chosen = np.zeros(flows.n, dtype=bool)
    chosen[ids] = True                      # ids are sorted (flatnonzero), so entries keep their order
    links = flows.links[np.repeat(chosen, np.diff(flows.link_ptr))]
    return FlowBatch(ptr, links, flows.nbytes[ids], flows.latency[ids])
