r"""Ring: devices joined in a cycle, each to its two neighbours.

The topology NVLink-bridged GPU pairs and early multi-GPU boards had, and the
logical shape of the ring allreduce (Patarasuk & Yuan, 2009): on a physical ring
that algorithm's every transfer uses its own link.

References
----------
.. [1] P. Patarasuk and X. Yuan, "Bandwidth optimal all-reduce algorithms for
   clusters of workstations", J. Parallel Distrib. Comput. 69(2), 2009.
"""

from __future__ import annotations

import networkx as nx

from . import _params
from .graph import add_devices, add_link, new_graph

__all__ = ["ring"]


def ring(n: int, *, bandwidth: float | str, latency: float | str = 0.0) -> nx.Graph:
    r"""Return ``n`` devices in a cycle.

    ::

        d0 --- d1 --- d2
        |              |
        d5 --- d4 --- d3        n = 6: d(i) -- d(i+1 mod n)

    Parameters
    ----------
    n : int
        Number of devices, >= 2. ``n == 2`` gives a single link, not two.
    bandwidth : float or str
        Bytes/s in each direction of every link, or a string like ``"100Gbps"``.
    latency : float or str, optional
        Seconds per hop, or a string like ``"1us"`` (default 0).

    Returns
    -------
    networkx.Graph
        ``n`` device nodes ``d0 .. d{n-1}`` (``rank == host == i``) and ``n``
        links (one when ``n == 2``); ``G.graph["kind"] == "ring"``.

    Raises
    ------
    TopologyError
        Naming the parameter, when ``n`` is not an int >= 2 or a link quantity is bad.

    Examples
    --------
    >>> G = ring(4, bandwidth="100Gbps", latency="1us")
    >>> list(G.edges)
    [('d0', 'd1'), ('d0', 'd3'), ('d1', 'd2'), ('d2', 'd3')]
    >>> G.edges["d0", "d1"]["bandwidth"]
    12500000000.0
    """
    n = _params.integer("ring", "n", n, minimum=2)
    _params.devices("ring", n, "n")
    bw = _params.bandwidth("ring", "bandwidth", bandwidth)
    lat = _params.duration("ring", "latency", latency)
    G = new_graph("ring", hosts=n, devices_per_host=1)
    names = add_devices(G, n)
    for i, name in enumerate(names):
        add_link(G, name, names[(i + 1) % n], bw, lat)
    return G
