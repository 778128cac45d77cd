"""The graph conventions every topology follows, and ``check`` that enforces them.

A topology is an undirected ``networkx.Graph``. This module is the one place that
says what such a graph must hold, so that builders, file loaders and the simulator
agree on it:

* every edge is a full-duplex link with ``bandwidth`` (float, bytes/s in each
  direction) and ``latency`` (float, seconds per hop);
* an edge may declare a link ``class`` and override its ``efficiency`` and
  ``software_latency`` (:mod:`topologies.link_classes`); without them it runs at line rate;
* every node has a ``role`` in ``ROLES``; switches may add a ``level`` ("edge",
  "agg", "core", "leaf", "spine", "intra"), and NICs the ``host`` they sit in;
* device nodes are named ``"d{rank}"`` by the builders and carry an integer
  ``rank`` (0..n-1, each once) and an integer ``host`` (the server they sit in;
  ``host == rank`` on flat topologies);
* ``G.graph`` holds ``kind``, ``hosts`` and ``devices_per_host``.

It deliberately knows nothing about routing or timing: which path a message takes
and how fast it goes is the simulator's business.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import networkx as nx

from . import link_classes

__all__ = ["ROLES", "TopologyError", "add_devices", "add_link", "check", "devices", "new_graph"]

#: the node roles a topology may use
ROLES = ("device", "nic", "switch")


class TopologyError(ValueError):
    """A topology that cannot be built or loaded.

    The message is one line naming the parameter, node or edge at fault and what
    was expected, e.g. ``topology.yaml: edge (h3, s1): missing 'bandwidth'``.
    """


def new_graph(kind: str, *, hosts: int, devices_per_host: int, **extra: object) -> nx.Graph:
    """Return an empty topology graph with the ``G.graph`` keys every topology has."""
    return nx.Graph(kind=kind, hosts=hosts, devices_per_host=devices_per_host, **extra)


def add_devices(G: nx.Graph, n: int, *, per_host: int = 1) -> list[str]:
    """Add devices ``d0 .. d{n-1}`` in rank order, ``per_host`` to a host; return their names."""
    names = []
    for rank in range(n):
        name = f"d{rank}"
        G.add_node(name, role="device", rank=rank, host=rank // per_host)
        names.append(name)
    return names


def add_link(G: nx.Graph, u: str, v: str, bandwidth: float, latency: float) -> None:
    """Add the full-duplex link ``(u, v)``; a link that already exists is left as it is."""
    if not G.has_edge(u, v):
        G.add_edge(u, v, bandwidth=float(bandwidth), latency=float(latency))


def devices(G: nx.Graph) -> list:
    """Return the device nodes of ``G`` in rank order.

    >>> from topologies import build
    >>> devices(build("ring", n=3, bandwidth=1e9))
    ['d0', 'd1', 'd2']
    """
    found = [n for n, role in G.nodes(data="role") if role == "device"]
    for n in found:
        if not _is_int(G.nodes[n].get("rank")):
            raise TopologyError(f"node {n}: expected an integer 'rank' on a device")
    return sorted(found, key=lambda n: G.nodes[n]["rank"])


def check(G: nx.Graph, source: str = "topology") -> None:
    """Raise ``TopologyError`` unless ``G`` follows the topology conventions.

    Checks, in this order: an undirected simple graph with at least one device;
    every node has a valid ``role`` (and devices an integer ``rank``, and an integer
    ``host`` if they have one); device ranks are 0..n-1, each exactly once; every
    edge has a positive finite ``bandwidth`` and a non-negative finite ``latency``
    and is not a self-loop; the graph is connected.

    Parameters
    ----------
    G : networkx.Graph
        The topology to check.
    source : str
        Prefix of the error message, usually the file name the graph came from.

    Raises
    ------
    TopologyError
        One line naming the node or edge at fault, e.g.
        ``topology.yaml: edge (h3, s1): missing 'bandwidth'``.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.Graph()
    >>> G.add_node("d0", role="device", rank=0)
    >>> G.add_node("s0", role="switch")
    >>> G.add_edge("d0", "s0", latency=0.0)
    >>> check(G, "topology.yaml")
    Traceback (most recent call last):
    ...
    topologies.graph.TopologyError: topology.yaml: edge (d0, s0): missing 'bandwidth'
    """
    if G.is_directed() or G.is_multigraph():
        raise TopologyError(f"{source}: expected an undirected simple graph (networkx.Graph)")
    _check_nodes(G, source)
    _check_ranks(G, source)
    _check_edges(G, source)
    _check_connected(G, source)


def _is_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _check_nodes(G: nx.Graph, source: str) -> None:
    for n, data in G.nodes(data=True):
        if "role" not in data:
            raise TopologyError(f"{source}: node {n}: missing 'role'")
        if data["role"] not in ROLES:
            raise TopologyError(
                f"{source}: node {n}: 'role' must be one of {', '.join(ROLES)}, "
                f"got {data['role']!r}"
            )
        if data["role"] == "device" and "rank" not in data:
            raise TopologyError(f"{source}: node {n}: missing 'rank' on a device")
        for key in ("rank", "host"):
            if key in data and not (_is_int(data[key]) and data[key] >= 0):
                raise TopologyError(
                    f"{source}: node {n}: '{key}' must be a non-negative integer, got {data[key]!r}"
                )
        wrong = link_classes.check_node(data)
        if wrong:
            raise TopologyError(f"{source}: node {n}: {wrong}")


def _check_ranks(G: nx.Graph, source: str) -> None:
    owner: dict[int, object] = {}
    for n, role in G.nodes(data="role"):
        if role != "device":
            continue
        rank = G.nodes[n]["rank"]
        if rank in owner:
            raise TopologyError(f"{source}: node {n}: rank {rank} already used by {owner[rank]}")
        owner[rank] = n
    if not owner:
        raise TopologyError(f"{source}: no node has role 'device'")
    for rank in range(len(owner)):
        if rank not in owner:
            raise TopologyError(
                f"{source}: device ranks must be 0..{len(owner) - 1} exactly once; "
                f"rank {rank} is missing (largest is {max(owner)})"
            )


def _check_edges(G: nx.Graph, source: str) -> None:
    for u, v, data in G.edges(data=True):
        where = f"{source}: edge ({u}, {v})"
        if u == v:
            raise TopologyError(f"{where}: a link from a node to itself")
        for key in ("bandwidth", "latency"):
            if key not in data:
                raise TopologyError(f"{where}: missing '{key}'")
        bw, lat = data["bandwidth"], data["latency"]
        if not (_is_number(bw) and math.isfinite(bw) and bw > 0):
            raise TopologyError(
                f"{where}: 'bandwidth' must be a positive finite number of bytes/s, got {bw!r}"
            )
        if not (_is_number(lat) and math.isfinite(lat) and lat >= 0):
            raise TopologyError(
                f"{where}: 'latency' must be a non-negative finite number of seconds, got {lat!r}"
            )
        wrong = link_classes.check_edge(data)
        if wrong:
            raise TopologyError(f"{where}: {wrong}")


def _check_connected(G: nx.Graph, source: str) -> None:
    start = next(iter(G))
    reached = nx.node_connected_component(G, start)
    if len(reached) < len(G):
        lost = next(n for n in G if n not in reached)
        raise TopologyError(
            f"{source}: the topology is disconnected: node {lost} cannot be reached from {start}"
        )
