r"""Switch: every device on one ideal, non-blocking crossbar.

The analytic anchor of the simulator: no two transfers between distinct pairs share
a link, so a collective's simulated time equals its congestion-free α-β cost
(Hockney, 1994). Also the model of an NVSwitch inside one server.

References
----------
.. [1] R. W. Hockney, "The communication challenge for MPP: Intel Paragon and
   Meiko CS-2", Parallel Computing 20(3), 1994.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx

from . import _params
from .graph import add_devices, add_link, new_graph
from .link_classes import mark_reducing

__all__ = ["switch"]


def switch(n: int, *, bandwidth: float | str, latency: float | str = 0.0,
           reduce_efficiency: float | None = None) -> nx.Graph:
    r"""Return a star: ``n`` devices, each with one link to the switch ``"s0"``.

    ::

                 s0
            /  /    \  \
          d0  d1 ... d(n-1)

    A message from one device to another crosses two links (two hops).

    Parameters
    ----------
    n : int
        Number of devices, >= 1.
    bandwidth : float or str
        Bytes/s in each direction of every device link, or a string like ``"25GB/s"``.
    latency : float or str, optional
        Seconds per hop, or a string like ``"1us"`` (default 0).
    reduce_efficiency : float, optional
        Given, the switch reduces (``reduces: true``, NVLS / SHARP: the ``nvls`` allreduce) at
        this fraction (0, 1] of its ports' rate (``topologies.link_classes``); default: it does not.

    Returns
    -------
    networkx.Graph
        Devices ``d0 .. d{n-1}`` (``rank == host == i``), then the switch ``s0``
        (``role == "switch"``); ``n`` links.

    Examples
    --------
    >>> G = switch(3, bandwidth="10GB/s", latency="1us")
    >>> list(G)
    ['d0', 'd1', 'd2', 's0']
    >>> G.edges["d2", "s0"]
    {'bandwidth': 10000000000.0, 'latency': 1e-06}
    """
    n = _params.integer("switch", "n", n, minimum=1)
    _params.devices("switch", n, "n")
    bw = _params.bandwidth("switch", "bandwidth", bandwidth)
    lat = _params.duration("switch", "latency", latency)
    reduce = _params.fraction("switch", "reduce_efficiency", reduce_efficiency)
    G = new_graph("switch", hosts=n, devices_per_host=1)
    attach(G, add_devices(G, n), bandwidth=bw, latency=lat)
    if reduce is not None:
        mark_reducing(G, ["s0"], reduce)
    return G


def attach(
    G: nx.Graph, endpoints: Sequence[str], *, bandwidth: float, latency: float, name: str = "s0"
) -> None:
    """Add the switch ``name`` to ``G`` and link every node of ``endpoints`` to it.

    The shared wiring of :func:`switch` and of a single-switch fabric between the
    NICs of :func:`topologies.hierarchical.hierarchical`. Quantities are SI floats.
    """
    G.add_node(name, role="switch")
    for e in endpoints:
        add_link(G, e, name, bandwidth, latency)
