r"""Hierarchical: multi-GPU servers on a fast intra-node switch, joined by a network.

The shape of a DGX/HGX cluster: inside a server, devices talk over NVLink through
an NVSwitch-class crossbar; between servers, traffic leaves through the server's
NICs into an inter-node fabric (one switch, a leaf-spine or a fat tree). The
two bandwidths differ by an order of magnitude, which is what hierarchical
collectives exploit (Jia et al. 2018, Sergeev & Del Balso 2018).

The inter-node fabric is wired by the same code as the stand-alone families
(the ``attach`` functions of the ``switch``, ``leaf_spine`` and ``fat_tree``
modules), with the NICs as
its hosts.

References
----------
.. [1] X. Jia et al., "Highly scalable deep learning training system with
   mixed-precision: training ImageNet in four minutes", arXiv:1807.11205, 2018.
.. [2] NVIDIA, "NVIDIA DGX H100 system architecture" (whitepaper), 2023.
"""

from __future__ import annotations

import networkx as nx

from . import _params
from .fat_tree import attach as attach_fat_tree
from .fat_tree import smallest_k
from .graph import TopologyError, add_devices, add_link, new_graph
from .leaf_spine import attach as attach_leaf_spine
from .leaf_spine import fabric_params
from .link_classes import mark_reducing
from .switch import attach as attach_switch

__all__ = ["hierarchical"]

#: inter_kind -> the extra keyword parameters it accepts
INTER_PARAMS: dict[str, tuple[str, ...]] = {
    "switch": (),
    "leaf_spine": ("hosts_per_leaf", "spines", "uplink_bandwidth", "oversubscription"),
    "fat_tree": ("k", "oversubscription"),
}

#: leaf-spine defaults inside a hierarchical cluster: 8 NIC ports per leaf, 2 spines,
#: uplinks sized so that the fabric is non-blocking (oversubscription 1)
LEAF_SPINE_DEFAULTS = {"hosts_per_leaf": 8, "spines": 2}


def hierarchical(
    nodes: int,
    devices_per_node: int,
    *,
    intra_bandwidth: float | str,
    intra_latency: float | str = 0.0,
    inter_bandwidth: float | str,
    inter_latency: float | str = 0.0,
    inter_kind: str = "leaf_spine",
    nics_per_node: int = 1,
    intra_reduce_efficiency: float | None = None,
    **inter_params: object,
) -> nx.Graph:
    r"""Return ``nodes`` servers of ``devices_per_node`` devices joined by an inter-node fabric.

    ::

          inter-node fabric (inter_kind: switch | leaf_spine | fat_tree)
            |                         |                  inter_bandwidth
           n0                        n1        ...       NIC(s) of each server
            |  inter_bandwidth        |
          intra0                    intra1     ...       intra-node switch
          /  |  \  intra_bandwidth  /  |  \
        d0  d1  d2  d3            d4  d5 ...             devices_per_node per server

    Devices of one server reach each other in two hops through their intra
    switch; a message to another server goes device -> intra -> NIC -> fabric ->
    NIC -> intra -> device.

    Parameters
    ----------
    nodes : int
        Number of servers (hosts), >= 1.
    devices_per_node : int
        Devices in each server, >= 1.
    intra_bandwidth, intra_latency : float or str
        Bytes/s per direction and seconds per hop of the device-intra switch links
        (NVLink-class), or strings like ``"450GB/s"``, ``"1us"``.
    inter_bandwidth, inter_latency : float or str
        The NIC's rate (bytes/s per direction) and the latency per hop of the
        inter-node fabric. The NIC-intra switch link also has ``inter_bandwidth``
        (so nothing inside the server limits a NIC below its rate) and latency 0.
    inter_kind : {"leaf_spine", "switch", "fat_tree"}
        The fabric between the NICs.
    nics_per_node : int, optional
        NICs per server, >= 1 (default 1).
    intra_reduce_efficiency : float, optional
        Given, every intra-node switch reduces (``reduces: true``: an NVSwitch with NVLS, the
        ``nvls`` allreduce inside a server) at this fraction (0, 1] of its ports' rate.
    **inter_params
        For ``"leaf_spine"``: ``hosts_per_leaf`` (NIC ports per leaf, default 8),
        ``spines`` (default 2) and either ``uplink_bandwidth`` or
        ``oversubscription`` (default: oversubscription 1, i.e. uplinks of
        ``hosts_per_leaf * inter_bandwidth / spines``: non-blocking).
        For ``"fat_tree"``: ``k`` (default: the smallest even k with
        ``k^3/4 >= nodes * nics_per_node``; unused host ports stay empty) and
        ``oversubscription`` (default 1). ``"switch"`` takes none.

    Returns
    -------
    networkx.Graph
        Devices ``d{rank}``, ``rank = host * devices_per_node + i``, attribute
        ``host``; then per host the switch ``intra{host}`` (``level == "intra"``)
        and its NICs ``n{host}`` (or ``n{host}.{i}`` when ``nics_per_node > 1``,
        ``role == "nic"``, attribute ``host``); then the fabric's switches.
        ``G.graph`` adds ``inter_kind`` and ``nics_per_node``.

    Examples
    --------
    >>> G = hierarchical(2, 4, intra_bandwidth="450GB/s", inter_bandwidth="400Gbps",
    ...                  inter_kind="switch")
    >>> [n for n in G if not n.startswith("d")]
    ['intra0', 'n0', 'intra1', 'n1', 's0']
    >>> nx.shortest_path(G, "d0", "d5")
    ['d0', 'intra0', 'n0', 's0', 'n1', 'intra1', 'd5']
    """
    where = "hierarchical"
    nodes = _params.integer(where, "nodes", nodes, minimum=1)
    per = _params.integer(where, "devices_per_node", devices_per_node, minimum=1)
    _params.devices(where, nodes * per, "nodes × devices_per_node")
    nics = _params.integer(where, "nics_per_node", nics_per_node, minimum=1)
    intra_bw = _params.bandwidth(where, "intra_bandwidth", intra_bandwidth)
    intra_lat = _params.duration(where, "intra_latency", intra_latency)
    inter_bw = _params.bandwidth(where, "inter_bandwidth", inter_bandwidth)
    inter_lat = _params.duration(where, "inter_latency", inter_latency)
    reduce = _params.fraction(where, "intra_reduce_efficiency", intra_reduce_efficiency)
    _check_inter_params(inter_kind, inter_params)

    G = new_graph(
        "hierarchical",
        hosts=nodes,
        devices_per_host=per,
        inter_kind=inter_kind,
        nics_per_node=nics,
    )
    names = add_devices(G, nodes * per, per_host=per)
    endpoints = []
    for host in range(nodes):
        intra = f"intra{host}"
        G.add_node(intra, role="switch", level="intra", host=host)
        for d in names[host * per : (host + 1) * per]:
            add_link(G, d, intra, intra_bw, intra_lat)
        for i in range(nics):
            nic = f"n{host}" if nics == 1 else f"n{host}.{i}"
            G.add_node(nic, role="nic", host=host)
            add_link(G, intra, nic, inter_bw, 0.0)
            endpoints.append(nic)
    _attach_fabric(G, inter_kind, endpoints, inter_bw, inter_lat, inter_params)
    if reduce is not None:
        mark_reducing(G, [f"intra{host}" for host in range(nodes)], reduce)
    return G


def _check_inter_params(inter_kind: object, inter_params: dict) -> None:
    if inter_kind not in INTER_PARAMS:
        raise TopologyError(
            f"hierarchical: inter_kind: expected one of {', '.join(INTER_PARAMS)}, "
            f"got {inter_kind!r}"
        )
    accepted = INTER_PARAMS[inter_kind]
    for name in inter_params:
        if name not in accepted:
            raise TopologyError(
                f"hierarchical: unexpected parameter {name!r} for inter_kind {inter_kind!r} "
                f"(accepts: {', '.join(accepted) or 'none'})"
            )


def _attach_fabric(
    G: nx.Graph, kind: str, endpoints: list[str], bw: float, lat: float, params: dict
) -> None:
    where = "hierarchical"
    if kind == "switch":
        attach_switch(G, endpoints, bandwidth=bw, latency=lat)
    elif kind == "leaf_spine":
        given = {**LEAF_SPINE_DEFAULTS, **params}
        if "uplink_bandwidth" not in given:
            given.setdefault("oversubscription", 1.0)
        shape = fabric_params(where, len(endpoints), bandwidth=bw, **given)
        G.graph.update(spines=shape["spines"], hosts_per_leaf=shape["hosts_per_leaf"])
        attach_leaf_spine(G, endpoints, bandwidth=bw, latency=lat, **shape)
    else:
        k = params.get("k")
        k = smallest_k(len(endpoints)) if k is None else k
        k = _params.integer(where, "k", k, minimum=2, even=True)
        _params.devices(where, k**3 // 4, f"the inter-node fat tree's k³/4 = {k}³/4 host ports")
        o = _params.ratio(where, "oversubscription", params.get("oversubscription", 1.0))
        G.graph.update(k=k, oversubscription=o)
        attach_fat_tree(
            G, endpoints, k=k, bandwidth=bw, latency=lat, oversubscription=o, where=where
        )
