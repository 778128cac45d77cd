r"""Torus: devices on a 1-, 2- or 3-dimensional grid with wraparound links.

The direct network of TPU pods (a 3-D torus in TPU v4, Jouppi et al. 2023) and of
many supercomputers (Blue Gene/L's 3-D torus, Adiga et al. 2005). Every device
links to its neighbours one step up and down each axis, modulo the side.

References
----------
.. [1] N. R. Adiga et al., "Blue Gene/L torus interconnection network",
   IBM J. Res. Dev. 49(2.3), 2005.
.. [2] N. P. Jouppi et al., "TPU v4: an optically reconfigurable supercomputer
   for machine learning", ISCA 2023.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import networkx as nx
import numpy as np

from . import _params
from .graph import TopologyError, add_devices, add_link, new_graph

__all__ = ["torus"]


def torus(
    dims: Sequence[int] | int, *, bandwidth: float | str, latency: float | str = 0.0
) -> nx.Graph:
    r"""Return a torus of devices with sides ``dims``.

    ::

        d0 -- d1 -- d2 -- d3 --(d0)      dims = (3, 4): rank = row * 4 + col,
        |     |     |     |              every row and column closes on itself
        d4 -- d5 -- d6 -- d7 --(d4)
        |     |     |     |
        d8 -- d9 -- d10 - d11 -(d8)
        |     |     |     |
       (d0)  (d1)  (d2)  (d3)

    Parameters
    ----------
    dims : sequence of 1 to 3 ints >= 2, or an int
        Side lengths; an int ``n`` means ``(n,)``. A side of 2 gives one link
        between the two devices on it, not two.
    bandwidth : float or str
        Bytes/s in each direction of every link, or a string like ``"50GB/s"``.
    latency : float or str, optional
        Seconds per hop, or a string like ``"1us"`` (default 0).

    Returns
    -------
    networkx.Graph
        ``prod(dims)`` devices ``d{rank}`` with ``rank`` the row-major (C-order)
        index of the device's coordinates and ``host == rank``. A device's degree
        is the sum over axes of 2 (side > 2) or 1 (side == 2).
        ``G.graph["dims"]`` is the list of sides.

    Notes
    -----
    Coordinates of a rank: ``numpy.unravel_index(rank, G.graph["dims"])``.

    Examples
    --------
    >>> G = torus((2, 3), bandwidth=1e9)
    >>> sorted(G["d4"])
    ['d1', 'd3', 'd5']
    """
    shape = _dims(dims)
    bw = _params.bandwidth("torus", "bandwidth", bandwidth)
    lat = _params.duration("torus", "latency", latency)
    n = math.prod(shape)
    G = new_graph("torus", hosts=n, devices_per_host=1, dims=list(shape))
    names = add_devices(G, n)
    for rank, coord in enumerate(np.ndindex(*shape)):
        for axis, side in enumerate(shape):
            step = list(coord)
            step[axis] = (coord[axis] + 1) % side
            other = int(np.ravel_multi_index(step, shape))
            add_link(G, names[rank], names[other], bw, lat)
    return G


def _dims(dims: object) -> tuple[int, ...]:
    if isinstance(dims, int) and not isinstance(dims, bool):
        dims = (dims,)
    expected = "a sequence of 1 to 3 integers >= 2"
    if isinstance(dims, str) or not isinstance(dims, Sequence) or not 1 <= len(dims) <= 3:
        raise TopologyError(f"torus: dims: expected {expected}, got {dims!r}")
    for i, side in enumerate(dims):
        _params.integer("torus", f"dims[{i}]", side, minimum=2)
    _params.devices("torus", math.prod(int(side) for side in dims), "the product of dims")
    return tuple(int(side) for side in dims)
