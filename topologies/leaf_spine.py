r"""Leaf-spine: the two-level folded Clos network of most GPU clusters.

Hosts hang off leaf (top-of-rack) switches; every leaf links to every spine, so
any two hosts on different leaves are four hops apart through any spine. The
ratio of a leaf's downlink to uplink capacity is its oversubscription.

References
----------
.. [1] C. Clos, "A study of non-blocking switching networks", Bell System
   Technical Journal 32(2), 1953.
.. [2] M. Alizadeh and T. Edsall, "On the data path performance of leaf-spine
   datacenter fabrics", IEEE HOTI 2013.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from . import _params
from .graph import TopologyError, add_devices, add_link, new_graph

__all__ = ["leaf_spine"]


def leaf_spine(
    leaves: int,
    spines: int,
    hosts_per_leaf: int,
    *,
    bandwidth: float | str,
    latency: float | str = 0.0,
    uplink_bandwidth: float | str | None = None,
    oversubscription: float | None = None,
) -> nx.Graph:
    r"""Return a leaf-spine fabric with ``leaves * hosts_per_leaf`` devices as hosts.

    ::

           spine0 ---- spine1 ... spine(S-1)      every leaf -- every spine
            |  \       /   |                       (uplink_bandwidth)
           leaf0      leaf1  ...  leaf(L-1)
           / | \      / | \                       hosts_per_leaf per leaf
         d0 d1 d2   d3 d4 d5 ...                  (bandwidth)

    Parameters
    ----------
    leaves, spines, hosts_per_leaf : int
        Numbers of leaf switches, spine switches and hosts on each leaf, all >= 1.
    bandwidth : float or str
        Bytes/s in each direction of a host-leaf link, or a string like ``"100Gbps"``.
    latency : float or str, optional
        Seconds per hop on every link, or a string like ``"1us"`` (default 0).
    uplink_bandwidth : float or str, optional
        Bytes/s of each leaf-spine link. Default: ``bandwidth``.
    oversubscription : float, optional
        Instead of ``uplink_bandwidth``: the ratio ``o >= 1`` of a leaf's host
        capacity to its uplink capacity, giving
        ``uplink_bandwidth = hosts_per_leaf * bandwidth / (spines * o)``.
        ``o = 1`` is non-blocking. Give at most one of the two.

    Returns
    -------
    networkx.Graph
        Devices ``d{rank}`` with ``rank = leaf * hosts_per_leaf + i``,
        ``host == rank`` and attribute ``leaf``; then ``leaf0 ..`` and
        ``spine0 ..`` (``role == "switch"``, ``level`` "leaf" / "spine").

    Examples
    --------
    >>> G = leaf_spine(2, 2, 4, bandwidth="100Gbps", oversubscription=1)
    >>> G.number_of_nodes(), G.number_of_edges()
    (12, 12)
    >>> G.edges["leaf0", "spine0"]["bandwidth"] / G.edges["d0", "leaf0"]["bandwidth"]
    2.0
    """
    leaves = _params.integer("leaf_spine", "leaves", leaves, minimum=1)
    hosts_per_leaf = _params.integer("leaf_spine", "hosts_per_leaf", hosts_per_leaf, minimum=1)
    _params.devices("leaf_spine", leaves * hosts_per_leaf, "leaves × hosts_per_leaf")
    bw = _params.bandwidth("leaf_spine", "bandwidth", bandwidth)
    lat = _params.duration("leaf_spine", "latency", latency)
    n = leaves * hosts_per_leaf
    G = new_graph("leaf_spine", hosts=n, devices_per_host=1, leaves=leaves)
    shape = fabric_params(
        "leaf_spine",
        n,
        bandwidth=bw,
        hosts_per_leaf=hosts_per_leaf,
        spines=spines,
        uplink_bandwidth=uplink_bandwidth,
        oversubscription=oversubscription,
    )
    G.graph.update(spines=shape["spines"], hosts_per_leaf=hosts_per_leaf)
    attach(G, add_devices(G, n), bandwidth=bw, latency=lat, **shape)
    return G


def fabric_params(
    where: str,
    endpoints: int,
    *,
    bandwidth: float,
    hosts_per_leaf: object,
    spines: object,
    uplink_bandwidth: object = None,
    oversubscription: object = None,
) -> dict:
    """Check leaf-spine shape parameters and resolve the uplink bandwidth (SI floats).

    Returns the keyword arguments of :func:`attach` other than ``bandwidth`` and
    ``latency``. ``where`` prefixes error messages.
    """
    hpl = _params.integer(where, "hosts_per_leaf", hosts_per_leaf, minimum=1)
    spines = _params.integer(where, "spines", spines, minimum=1)
    if uplink_bandwidth is not None and oversubscription is not None:
        raise TopologyError(
            f"{where}: oversubscription: give either uplink_bandwidth or oversubscription, not both"
        )
    if oversubscription is not None:
        o = _params.ratio(where, "oversubscription", oversubscription)
        up = hpl * bandwidth / (spines * o)
    elif uplink_bandwidth is not None:
        up = _params.bandwidth(where, "uplink_bandwidth", uplink_bandwidth)
    else:
        up = bandwidth
    leaves = -(-endpoints // hpl)
    return {"hosts_per_leaf": hpl, "spines": spines, "uplink_bandwidth": up, "leaves": leaves}


def attach(
    G: nx.Graph,
    endpoints: Sequence[str],
    *,
    leaves: int,
    spines: int,
    hosts_per_leaf: int,
    bandwidth: float,
    latency: float,
    uplink_bandwidth: float,
) -> None:
    """Add ``leaves`` leaf and ``spines`` spine switches to ``G``, ``endpoints`` on the leaves.

    Endpoint ``i`` goes on leaf ``i // hosts_per_leaf`` and gets the attribute
    ``leaf``; the last leaf may have empty ports. Quantities are SI floats.
    """
    for leaf in range(leaves):
        G.add_node(f"leaf{leaf}", role="switch", level="leaf")
    for spine in range(spines):
        G.add_node(f"spine{spine}", role="switch", level="spine")
        for leaf in range(leaves):
            add_link(G, f"leaf{leaf}", f"spine{spine}", uplink_bandwidth, latency)
    for i, name in enumerate(endpoints):
        G.nodes[name]["leaf"] = i // hosts_per_leaf
        add_link(G, name, f"leaf{i // hosts_per_leaf}", bandwidth, latency)
