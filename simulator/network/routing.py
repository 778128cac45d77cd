"""Routes on a networkx topology: shortest paths with deterministic ECMP, as link-index arrays.

Every undirected edge is a full-duplex link: two directed links with the edge's
``bandwidth`` each. Among equal-cost next hops the route picks one by a fixed
integer hash of (source, destination, hop), the way switches hash flows (ECMP):
deterministic across runs, yet spreading different pairs over parallel paths.

Leaves (devices) are never transit nodes. The rest, the transit graph, is split
once into its core (what repeated removal of degree-1 nodes leaves) and the trees
hanging off it (an NVSwitch and its NIC, a chain of NICs): inside a tree a shortest
path is forced, so only the core needs distances, and they are computed by BFS
from the *core root* of a destination's anchor (its only neighbour when the
destination is a leaf, else itself) over the core only, and cached. The walk is
the same as a BFS from the anchor over the whole transit graph would give (same
candidate next hops in the same order, same hash), so routes do not depend on
this shortcut: 16,384 devices in 2,048 servers behind a leaf-spine cost one BFS
per leaf switch over the leaf and spine switches, not one per server.
"""

from __future__ import annotations

from collections import deque

import networkx as nx
import numpy as np

from topologies.link_classes import effective

__all__ = ["Routing"]

_MASK = (1 << 64) - 1


def _mix(a: int, b: int, c: int) -> int:
    """splitmix64-style integer hash (Python's hash of ints would also do, but this is explicit)."""
    x = (a * 0x9E3779B97F4A7C15 + b * 0xBF58476D1CE4E5B9 + c * 0x94D049BB133111EB) & _MASK
    x ^= x >> 31
    x = (x * 0xD6E8FEEBDA6F8B17) & _MASK
    return x ^ (x >> 29)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` for a plain int array, without the masked-array check that makes numpy's
    import ``numpy.ma`` (about 13 ms, the first time, inside the timed simulation)."""
    values = np.sort(values)
    keep = np.ones(len(values), dtype=bool)
    keep[1:] = values[1:] != values[:-1]
    return values[keep]


class Routing:
    """Directed links and cached routes of one topology graph.

    Attributes
    ----------
    capacity : float64[n_links], bytes/s per directed link: ``bandwidth × efficiency`` of its class
        (``topologies.link_classes``; 1.0 for a link without one).
    latency : float64[n_links], seconds per directed link.
    software_latency : float64[n_links], seconds a message crossing the link pays once (a route pays
        the largest of its links', see ``route_latency``); 0 for a link without a class.
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
        cap, lat, soft = [], [], []
        for u, v, data in graph.edges(data=True):
            iu, iv = self._index[u], self._index[v]
            efficiency, software = effective(data)
            for a, b in ((iu, iv), (iv, iu)):
                self._link[(a, b)] = len(cap)
                cap.append(float(data["bandwidth"]) * efficiency)
                lat.append(float(data.get("latency", 0.0)))
                soft.append(software)
        self.capacity = np.array(cap)
        self.latency = np.array(lat)
        self.software_latency = np.array(soft)
        self.has_software_latency = bool(self.software_latency.any())
        devs = sorted((d["rank"], n) for n, d in graph.nodes(data=True) if d.get("role") == "device")
        self.devices = [n for _, n in devs]
        self._device_index = np.array([self._index[n] for n in self.devices], dtype=np.int64)
        self._dist: dict[int, list[int]] = {}
        self._dist_arrays: dict[int, np.ndarray] = {}
        self._pos_array: np.ndarray | None = None
        self._paths: dict[tuple[int, int], np.ndarray] = {}
        self._peel()
        self._chain_arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        core = set(self._core)
        between = [link for (a, b), link in self._link.items() if a in core and b in core]
        self._core_min_latency = float(self.latency[between].min()) if between else 0.0

    def _anchor(self, t: int) -> int:
        nbrs = self._adj[t]
        return nbrs[0] if len(nbrs) == 1 else t

    # -- structure ----------------------------------------------------------------
    def _peel(self) -> None:
        """Split the transit graph into a core and the trees hanging off it.

        Leaves are peeled off repeatedly (k-core peeling): a peeled node's ``parent`` is
        its one neighbour still present when it went. What is never peeled is the core
        (the 2-core); a node peeled with no neighbour left roots a tree of its own. Every
        tree hangs off its root only, so a shortest path into or out of it is forced, and
        distances to a node in a tree are its depth plus the core distance to its root.
        """
        n = len(self._adj)
        transit = self._transit
        in_transit = [len(a) != 1 for a in self._adj]
        degree = [len(a) for a in transit]
        removed = [False] * n
        parent = [-1] * n
        order: list[int] = []
        queue = deque(u for u in range(n) if in_transit[u] and degree[u] <= 1)
        while queue:
            u = queue.popleft()
            if removed[u]:
                continue
            removed[u] = True
            order.append(u)
            for v in transit[u]:
                if not removed[v]:
                    parent[u] = v
                    degree[v] -= 1
                    if degree[v] == 1:
                        queue.append(v)
                    break
        root, depth = list(range(n)), [0] * n
        for u in reversed(order):
            if parent[u] >= 0:
                root[u], depth[u] = root[parent[u]], depth[parent[u]] + 1
        core = [u for u in range(n) if in_transit[u] and parent[u] < 0]
        position = [-1] * n
        for i, u in enumerate(core):
            position[u] = i
        self._parent, self._root, self._depth = parent, root, depth
        self._core, self._core_pos = core, position
        # the core's adjacency in core positions, in the graph's adjacency order, as CSR for the BFS
        adj = [[position[v] for v in transit[u] if position[v] >= 0] for u in core]
        self._core_adj = adj
        self._core_ptr = np.zeros(len(core) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in adj], out=self._core_ptr[1:])
        self._core_idx = np.array([v for a in adj for v in a], dtype=np.int64)

    def _core_distances(self, root: int) -> list[int]:
        """Hop counts from core node ``root`` to every core node, by core position (-1: unreachable).

        A level-synchronous BFS over the core's CSR adjacency (numpy), cached per root.
        """
        dist = self._dist.get(root)
        if dist is None:
            ptr, idx = self._core_ptr, self._core_idx
            d = np.full(len(self._core), -1, dtype=np.int64)
            frontier = np.array([self._core_pos[root]], dtype=np.int64)
            d[frontier] = level = 0
            while len(frontier):
                level += 1
                starts, stops = ptr[frontier], ptr[frontier + 1]
                lengths = stops - starts
                offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
                reached = idx[offsets]
                frontier = _sorted_unique(reached[d[reached] < 0])
                d[frontier] = level
            dist = self._dist[root] = d.tolist()
        return dist

    def _up(self, u: int, stop: int) -> list[int]:
        """``u``, its parent, ... up to and including ``stop`` (an ancestor of ``u``)."""
        chain, parent = [u], self._parent
        while u != stop:
            u = parent[u]
            chain.append(u)
        return chain

    def _inner(self, s: int, t: int, start: int, anchor: int) -> list[int]:
        """The node path from ``start`` to ``anchor`` (both transit nodes) for the pair (s, t)."""
        root, depth = self._root, self._depth
        rs, ra = root[start], root[anchor]
        if rs == ra:  # one tree: the unique tree path, through the deepest common ancestor
            a, b = start, anchor
            while depth[a] > depth[b]:
                a = self._parent[a]
            while depth[b] > depth[a]:
                b = self._parent[b]
            while a != b:
                a, b = self._parent[a], self._parent[b]
            return self._up(start, a) + self._up(anchor, a)[-2::-1]
        dist = self._core_distances(ra)
        pos, core = self._core_pos, self._core
        if dist[pos[rs]] < 0:
            raise ValueError(f"no route from {self._name(s)} to {self._name(t)}")
        path = self._up(start, rs)
        cur, goal, hop, adj = pos[rs], pos[ra], depth[start], self._core_adj
        while cur != goal:
            d = dist[cur] - 1
            options = [v for v in adj[cur] if dist[v] == d]
            cur = options[_mix(s, t, hop) % len(options)] if len(options) > 1 else options[0]
            path.append(core[cur])
            hop += 1
        return path + self._up(anchor, ra)[-2::-1]

    # -- paths --------------------------------------------------------------------
    def node_path(self, s: int, t: int) -> list[int]:
        """Node indices from ``s`` to ``t`` (inclusive) on a shortest path, ECMP-hashed.

        The walk from ``s``'s anchor towards ``t``'s takes, at every node, one of the
        neighbours one hop closer (in adjacency order), chosen by ``_mix(s, t, hop)``
        where ``hop`` counts the moves made so far.
        """
        if s == t:
            return [s]
        if self._adj[s] == [t]:
            return [s, t]
        anchor, start = self._anchor(t), self._anchor(s)
        path = self._inner(s, t, start, anchor)
        if start != s:
            path.insert(0, s)
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

    def forced_links(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The links of each route ``src[i] → dst[i]`` (node indices) that no ECMP choice avoids, as CSR.

        Outside the core a route is forced (see ``_peel``): from the source (through its anchor) up its
        tree to the lowest node it shares with the destination's chain, or to its tree's root when the
        two trees differ, then down to the destination. Returns ``(ptr, links, core_latency)``: the links
        in ``links[ptr[i]:ptr[i+1]]`` are all links of ``path_links(src[i], dst[i])``; what is left out
        are the core hops between two roots, of which ``core_latency[i]`` is a lower bound on the
        latency (their number, from the roots' cached core BFS, times the smallest core link latency).
        Vectorised over the pairs, no walk.
        """
        top, up, down, depth = self._chains()
        ts, tt = top[src], top[dst]
        shared = np.cumprod((ts == tt) & (ts >= 0), axis=1).sum(axis=1)     # common top of the two chains
        meet = np.maximum(shared - 1, 0)[:, None]     # height of the lowest shared node (0: the roots differ)
        k = np.arange(top.shape[1])[None, :]
        mine = np.concatenate([np.where((k > meet) & (k <= depth[src][:, None]), up[src], -1),
                               np.where((k > meet) & (k <= depth[dst][:, None]), down[dst], -1)], axis=1)
        keep = mine >= 0
        ptr = np.zeros(len(src) + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=ptr[1:])
        hops = np.zeros(len(src))
        apart = np.flatnonzero(shared == 0)          # different trees: their roots are core nodes
        if len(apart) and self._core_min_latency > 0:
            rs, rt = ts[apart, 0], tt[apart, 0]
            roots, which = np.unique(rt, return_inverse=True)
            dist = np.stack([self._core_distance_array(root) for root in roots.tolist()])
            hops[apart] = np.maximum(dist[which.ravel(), self._core_pos_array()[rs]], 0)
        return ptr, mine[keep], hops * self._core_min_latency

    def _core_pos_array(self) -> np.ndarray:
        if self._pos_array is None:
            self._pos_array = np.asarray(self._core_pos, dtype=np.int64)
        return self._pos_array

    def _core_distance_array(self, root: int) -> np.ndarray:
        """``_core_distances(root)`` as an array (cached)."""
        dist = self._dist_arrays.get(root)
        if dist is None:
            dist = self._dist_arrays[root] = np.asarray(self._core_distances(root), dtype=np.int64)
        return dist

    def _chains(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per node: its chain from its tree's root down to it (``top[x, 0]`` the root), the directed
        links up (``up[x, k]``: chain node k to k - 1) and down (``down[x, k]``) it, and its height.

        A leaf's chain goes through its anchor; a leaf whose anchor is not a transit node has a chain
        of its own only (nothing forced). -1 pads."""
        if self._chain_arrays is None:
            transit = [len(a) != 1 for a in self._adj]
            chains = []
            for x in range(len(self._adj)):
                chain, a = [x], self._anchor(x)
                if a != x:
                    if not transit[a]:
                        chains.append(chain)
                        continue
                    chain.append(a)
                while self._parent[chain[-1]] >= 0:
                    chain.append(self._parent[chain[-1]])
                chains.append(chain[::-1])
            shape = (len(chains), max(map(len, chains), default=1))
            top, up, down = (np.full(shape, -1, dtype=np.int64) for _ in range(3))
            for x, chain in enumerate(chains):
                top[x, : len(chain)] = chain
                for k in range(1, len(chain)):
                    up[x, k] = self._link[(chain[k], chain[k - 1])]
                    down[x, k] = self._link[(chain[k - 1], chain[k])]
            depth = np.array([len(c) - 1 for c in chains], dtype=np.int64)
            self._chain_arrays = (top, up, down, depth)
        return self._chain_arrays

    def route_latency(self, links: np.ndarray) -> float:
        """Seconds a message on these links pays besides its bytes: the hops' latencies plus, once,
        the largest software latency among them."""
        lat = float(self.latency[links].sum())
        if self.has_software_latency and len(links):
            lat += float(self.software_latency[links].max())
        return lat

    def device_node(self, rank: int) -> int:
        return int(self._device_index[rank])

    def device_nodes(self, ranks: np.ndarray) -> np.ndarray:
        """``device_node`` of every rank, as an array."""
        return self._device_index[ranks]

    def endpoint(self, node: object) -> int:
        """A rank for a non-device node (a reducing switch as a schedule's switch rank), after the devices.

        ``device_node`` of the returned rank is that node; asked again, the same rank. Routes to it
        are shortest paths like any other; ``devices`` does not change.
        """
        i = self._index[node]
        found = np.flatnonzero(self._device_index[len(self.devices):] == i)
        if len(found):
            return len(self.devices) + int(found[0])
        self._device_index = np.append(self._device_index, np.int64(i))
        return len(self._device_index) - 1

    def _name(self, i: int) -> object:
        return list(self.graph.nodes)[i]
