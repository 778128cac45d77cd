"""Routes on a networkx topology: shortest paths with deterministic ECMP, as link-index arrays.

Every undirected edge is a full-duplex link: two directed links with the edge's
``bandwidth`` each. Among equal-cost next hops the route picks one by a fixed
integer hash of (source, destination, hop), the way switches hash flows (ECMP):
deterministic across runs, yet spreading different pairs over parallel paths.

Distances are computed by BFS from a destination's *anchor* (its only neighbour
when the destination is a leaf, else itself) over the graph without its leaves
(a leaf is never a transit node), and cached: routing all pairs of a
4,096-device fabric costs one BFS per edge switch over the switches and NICs only.
"""

from __future__ import annotations

from collections import deque

import networkx as nx
import numpy as np

__all__ = ["Routing"]

_MASK = (1 << 64) - 1


def _mix(a: int, b: int, c: int) -> int:
    """splitmix64-style integer hash (Python's hash of ints would also do, but this is explicit)."""
    x = (a * 0x9E3779B97F4A7C15 + b * 0xBF58476D1CE4E5B9 + c * 0x94D049BB133111EB) & _MASK
    x ^= x >> 31
    x = (x * 0xD6E8FEEBDA6F8B17) & _MASK
    return x ^ (x >> 29)


class Routing:
    """Directed links and cached routes of one topology graph.

    Attributes
    ----------
    capacity : float64[n_links], bytes/s per directed link.
    latency : float64[n_links], seconds per directed link.
    devices : list of device node names in rank order.
    """

    def __init__(self, graph: nx.Graph):
        self.graph = graph
        nodes = list(graph.nodes)
        self._index = {n: i for i, n in enumerate(nodes)}
        self._adj: list[list[int]] = [[self._index[v] for v in graph.adj[n]] for n in nodes]
        leaf = [len(a) == 1 for a in self._adj]
        self._transit: list[list[int]] = [[v for v in a if not leaf[v]] for a in self._adj]
        self._link: dict[tuple[int, int], int] = {}
        cap, lat = [], []
        for u, v, data in graph.edges(data=True):
            iu, iv = self._index[u], self._index[v]
            for a, b in ((iu, iv), (iv, iu)):
                self._link[(a, b)] = len(cap)
                cap.append(float(data["bandwidth"]))
                lat.append(float(data.get("latency", 0.0)))
        self.capacity = np.array(cap)
        self.latency = np.array(lat)
        devs = sorted((d["rank"], n) for n, d in graph.nodes(data=True) if d.get("role") == "device")
        self.devices = [n for _, n in devs]
        self._device_index = np.array([self._index[n] for n in self.devices], dtype=np.int64)
        self._dist: dict[int, np.ndarray] = {}
        self._paths: dict[tuple[int, int], np.ndarray] = {}

    # -- distances ----------------------------------------------------------------
    def _anchor(self, t: int) -> int:
        nbrs = self._adj[t]
        return nbrs[0] if len(nbrs) == 1 else t

    def _distances(self, anchor: int) -> np.ndarray:
        dist = self._dist.get(anchor)
        if dist is None:
            dist = np.full(len(self._adj), -1, dtype=np.int64)
            dist[anchor] = 0
            queue = deque([anchor])
            adj = self._transit
            while queue:
                u = queue.popleft()
                du = dist[u] + 1
                for v in adj[u]:
                    if dist[v] < 0:
                        dist[v] = du
                        queue.append(v)
            self._dist[anchor] = dist
        return dist

    # -- paths --------------------------------------------------------------------
    def node_path(self, s: int, t: int) -> list[int]:
        """Node indices from ``s`` to ``t`` (inclusive) on a shortest path, ECMP-hashed."""
        if s == t:
            return [s]
        if self._adj[s] == [t]:
            return [s, t]
        anchor = self._anchor(t)
        dist = self._distances(anchor)
        start = self._anchor(s)
        if dist[start] < 0:
            raise ValueError(f"no route from {self._name(s)} to {self._name(t)}")
        path, cur, hop = [s], start, 0
        if start != s:
            path.append(start)
        while cur != anchor:
            d = dist[cur] - 1
            options = [v for v in self._transit[cur] if dist[v] == d]
            cur = options[_mix(s, t, hop) % len(options)] if len(options) > 1 else options[0]
            path.append(cur)
            hop += 1
        if anchor != t:
            path.append(t)
        return path

    def path_links(self, s: int, t: int) -> np.ndarray:
        """Directed link indices from node index ``s`` to ``t`` (cached)."""
        key = (s, t)
        links = self._paths.get(key)
        if links is None:
            nodes = self.node_path(s, t)
            links = np.array([self._link[(a, b)] for a, b in zip(nodes, nodes[1:], strict=False)],
                             dtype=np.int64)
            self._paths[key] = links
        return links

    def device_node(self, rank: int) -> int:
        return int(self._device_index[rank])

    def _name(self, i: int) -> object:
        return list(self.graph.nodes)[i]
