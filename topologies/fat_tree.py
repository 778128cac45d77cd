r"""Fat tree: the three-level k-ary Clos network of Al-Fares, Loukissas & Vahdat.

Built from identical k-port switches, it gives every host full bisection
bandwidth: ``k`` pods, each of ``k/2`` edge and ``k/2`` aggregation switches, and
``(k/2)^2`` core switches, serving ``k^3/4`` hosts. Uplinks can be thinned by an
oversubscription ratio to model the cheaper fabrics most clusters buy.

References
----------
.. [1] M. Al-Fares, A. Loukissas and A. Vahdat, "A scalable, commodity data
   center network architecture", SIGCOMM 2008.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from . import _params
from .graph import TopologyError, add_devices, add_link, new_graph

__all__ = ["fat_tree"]


def fat_tree(
    k: int,
    *,
    bandwidth: float | str,
    latency: float | str = 0.0,
    oversubscription: float = 1.0,
) -> nx.Graph:
    r"""Return the k-ary fat tree with ``k^3/4`` devices as its hosts.

    ::

                core0 ... core((k/2)^2 - 1)        (k/2)^2 core switches
                 |   \___________ ...               core j -- agg j // (k/2) of every pod
           agg0 ... agg(k/2-1)    ...              k pods x k/2 aggregation switches
             |    X    |                            full bipartite inside a pod
          edge0 ... edge(k/2-1)   ...              k pods x k/2 edge switches
          /    \                                    k/2 hosts per edge switch
        d0 ... d(k/2-1)           ...              k^3/4 hosts

    A message between hosts of different pods climbs edge -> agg -> core and back
    down: six hops.

    Parameters
    ----------
    k : int
        Switch radix: an even integer >= 2. Every switch has degree ``k``.
    bandwidth : float or str
        Bytes/s in each direction of a host link, or a string like ``"100Gbps"``.
    latency : float or str, optional
        Seconds per hop, or a string like ``"1us"`` (default 0).
    oversubscription : float, optional
        ``o >= 1``: edge-agg and agg-core links get ``bandwidth / o``, so an edge
        switch's uplink capacity is ``1/o`` of its downlink capacity ("o:1
        oversubscribed"). Default 1 (full bisection bandwidth).

    Returns
    -------
    networkx.Graph
        Devices ``d0 .. d{k^3/4-1}`` (``host == rank``, ``pod``), then per pod its
        edge switches ``edge{i}`` and aggregation switches ``agg{i}`` (global
        index ``i = pod * k/2 + j``, attributes ``level`` and ``pod``), then the
        core switches ``core{j}`` (``level == "core"``). ``5k^2/4`` switches.

    Examples
    --------
    >>> G = fat_tree(4, bandwidth="100Gbps", oversubscription=4)
    >>> G.number_of_nodes(), G.number_of_edges()
    (36, 48)
    >>> G.edges["d0", "edge0"]["bandwidth"] / G.edges["edge0", "agg0"]["bandwidth"]
    4.0
    """
    k = _params.integer("fat_tree", "k", k, minimum=2, even=True)
    _params.devices("fat_tree", k**3 // 4, f"k³/4 = {k}³/4")
    bw = _params.bandwidth("fat_tree", "bandwidth", bandwidth)
    lat = _params.duration("fat_tree", "latency", latency)
    o = _params.ratio("fat_tree", "oversubscription", oversubscription)
    hosts = k**3 // 4
    G = new_graph("fat_tree", hosts=hosts, devices_per_host=1, k=k, oversubscription=o)
    attach(G, add_devices(G, hosts), k=k, bandwidth=bw, latency=lat, oversubscription=o)
    return G


def smallest_k(endpoints: int) -> int:
    """Return the smallest even ``k`` whose fat tree has ``k^3/4 >= endpoints`` host ports.

    >>> smallest_k(16), smallest_k(17)
    (4, 6)
    """
    k = 2
    while k**3 // 4 < endpoints:
        k += 2
    return k


def attach(
    G: nx.Graph,
    endpoints: Sequence[str],
    *,
    k: int,
    bandwidth: float,
    latency: float,
    oversubscription: float,
    where: str = "fat_tree",
) -> None:
    """Add a k-ary fat tree's switches to ``G`` with ``endpoints`` on its host ports.

    Endpoint ``i`` takes host port ``i`` (edge switch ``i // (k/2)``); when there
    are fewer endpoints than ``k^3/4`` ports, the last ports stay empty. Each
    endpoint gets the attribute ``pod``. Quantities are SI floats.
    """
    half = k // 2
    if len(endpoints) > k**3 // 4:
        raise TopologyError(
            f"{where}: k: a k={k} fat tree has {k**3 // 4} host ports, {len(endpoints)} are needed"
        )
    up = bandwidth / oversubscription
    for pod in range(k):
        for j in range(half):
            G.add_node(f"edge{pod * half + j}", role="switch", level="edge", pod=pod)
        for j in range(half):
            G.add_node(f"agg{pod * half + j}", role="switch", level="agg", pod=pod)
        for e in range(pod * half, (pod + 1) * half):
            for a in range(pod * half, (pod + 1) * half):
                add_link(G, f"edge{e}", f"agg{a}", up, latency)
    for c in range(half * half):
        G.add_node(f"core{c}", role="switch", level="core")
        for pod in range(k):
            add_link(G, f"agg{pod * half + c // half}", f"core{c}", up, latency)
    for i, name in enumerate(endpoints):
        G.nodes[name]["pod"] = i // (half * half)
        add_link(G, name, f"edge{i // half}", bandwidth, latency)
