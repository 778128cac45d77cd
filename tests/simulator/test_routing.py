"""Routing against a straightforward reference: BFS on the whole transit graph with networkx.

The router peels the trees off the transit graph and runs its BFS on the core only
(``simulator/network/routing.py``). Whatever shortcut it takes, every route must be
the walk the plain rule gives: from the source's anchor, among the neighbours one hop
closer to the destination's anchor (in adjacency order), take the one
``_mix(s, t, hop)`` picks; and that walk is one of networkx's shortest paths.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

import topologies
from simulator.network.routing import Routing, _mix

TOPOLOGIES = {
    "fat_tree_k4": dict(kind="fat_tree", k=4, bandwidth=1e9),
    "fat_tree_k6_oversubscribed": dict(kind="fat_tree", k=6, bandwidth=1e9, oversubscription=2),
    "leaf_spine": dict(kind="leaf_spine", leaves=4, hosts_per_leaf=5, spines=3, bandwidth=1e9),
    "hierarchical_leaf_spine": dict(kind="hierarchical", nodes=12, devices_per_node=4, intra_bandwidth=3e11,
                                    inter_bandwidth=1e10, hosts_per_leaf=4, spines=2),
    "hierarchical_fat_tree_2_nics": dict(kind="hierarchical", nodes=8, devices_per_node=2, intra_bandwidth=3e11,
                                         inter_bandwidth=1e10, inter_kind="fat_tree", nics_per_node=2),
    "hierarchical_switch": dict(kind="hierarchical", nodes=4, devices_per_node=3, intra_bandwidth=3e11,
                                inter_bandwidth=1e10, inter_kind="switch"),
    "torus": dict(kind="torus", dims=[3, 4], bandwidth=1e9),
}


def reference_path(g: nx.Graph, s: int, t: int) -> list[int]:
    """The routing rule written plainly: networkx BFS from t's anchor over every non-leaf node."""
    names = list(g.nodes)
    index = {n: i for i, n in enumerate(names)}
    leaf = {n for n in g if g.degree(n) == 1}
    a, b = names[s], names[t]
    if s == t:
        return [s]
    if list(g.adj[a]) == [b]:
        return [s, t]

    def anchor(n):
        return next(iter(g.adj[n])) if n in leaf else n

    transit = g.subgraph(n for n in g if n not in leaf)
    goal, cur = anchor(b), anchor(a)
    dist = nx.single_source_shortest_path_length(transit, goal)
    path = [a] + ([cur] if cur != a else [])
    hop = 0
    while cur != goal:
        options = [v for v in g.adj[cur] if v not in leaf and dist.get(v, -1) == dist[cur] - 1]
        cur = options[_mix(s, t, hop) % len(options)]
        path.append(cur)
        hop += 1
    if goal != b:
        path.append(b)
    return [index[n] for n in path]


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_every_device_route_is_the_reference_walk_and_a_shortest_path(name):
    spec = dict(TOPOLOGIES[name])
    g = topologies.build(spec.pop("kind"), **spec)
    r = Routing(g)
    names = list(g.nodes)
    n = len(r.devices)
    for s in range(n):
        for d in range(n):
            u, v = r.device_node(s), r.device_node(d)
            path = r.node_path(u, v)
            assert path == reference_path(g, u, v), (s, d)
            if s != d:
                shortest = [[names.index(x) for x in p] for p in nx.all_shortest_paths(g, names[u], names[v])]
                assert path in shortest


@pytest.mark.parametrize("name", ["fat_tree_k4", "hierarchical_fat_tree_2_nics", "hierarchical_leaf_spine"])
def test_routes_between_any_nodes_follow_the_reference(name):
    spec = dict(TOPOLOGIES[name])
    g = topologies.build(spec.pop("kind"), **spec)
    r = Routing(g)
    nodes = range(len(g))
    for u in nodes:
        for v in nodes[::3]:
            assert r.node_path(u, v) == reference_path(g, u, v), (u, v)


def test_servers_behind_one_leaf_share_one_breadth_first_search():
    g = topologies.build("hierarchical", nodes=32, devices_per_node=8, intra_bandwidth=3e11, inter_bandwidth=1e10,
                         hosts_per_leaf=8, spines=2)
    r = Routing(g)
    p = len(r.devices)
    for s in range(p):
        r.path_links(r.device_node(s), r.device_node((s + 8) % p))
    leaves = [n for n, d in g.nodes(data=True) if d.get("level") == "leaf"]
    assert len(r._dist) == len(leaves) == 4   # one BFS per leaf switch, not one per server (32)


def test_a_disconnected_pair_is_a_clear_error():
    g = nx.Graph()
    for i, name in enumerate(["d0", "d1"]):
        g.add_node(name, role="device", rank=i)
    g.add_node("s0", role="switch")
    g.add_node("s1", role="switch")
    g.add_edge("d0", "s0", bandwidth=1.0)
    g.add_edge("d1", "s1", bandwidth=1.0)
    g.add_edge("s0", "x", bandwidth=1.0)
    g.add_edge("s0", "y", bandwidth=1.0)
    g.add_edge("x", "y", bandwidth=1.0)
    g.add_edge("s1", "z", bandwidth=1.0)
    r = Routing(g)
    with pytest.raises(ValueError, match="no route from d0 to d1"):
        r.node_path(r.device_node(0), r.device_node(1))


MORE = {"switch": dict(kind="switch", n=6, bandwidth=1e9),
        "ring_2": dict(kind="ring", n=2, bandwidth=1e9, latency=1e-6),
        "fat_tree_latency": dict(kind="fat_tree", k=4, bandwidth=1e9, latency=1e-6),
        "hierarchical_leaf_spine_latency": dict(TOPOLOGIES["hierarchical_leaf_spine"], inter_latency=2e-6,
                                                intra_latency=1e-6)}


@pytest.mark.parametrize("name", [*TOPOLOGIES, *MORE])
def test_forced_links_are_the_routes_links_outside_the_core(name):
    """What ``schedule_floor`` relies on: forced links are route links, their latency and the core hops' bound
    are no more than the route's (equal where every core link has one latency: the count of core hops is exact)."""
    spec = dict(TOPOLOGIES.get(name) or MORE[name])
    g = topologies.build(spec.pop("kind"), **spec)
    r = Routing(g)
    core = set(r._core)
    core_links = {link for (a, b), link in r._link.items() if a in core and b in core}
    nodes = np.arange(len(g)) if len(g) < 60 else np.array([r.device_node(d) for d in range(len(r.devices))])
    src, dst = (a.ravel() for a in np.meshgrid(nodes, nodes))
    ptr, links, core_latency = r.forced_links(src, dst)
    for i, (u, v) in enumerate(zip(src.tolist(), dst.tolist(), strict=True)):
        path = r.path_links(u, v).tolist()
        forced = links[ptr[i]:ptr[i + 1]].tolist()
        assert len(set(forced)) == len(forced) and set(forced) <= set(path), (u, v)
        bound, latency = r.latency[forced].sum() + core_latency[i], r.latency[path].sum()
        if name == "ring_2":    # two leaves: nothing is forced there (no transit node)
            assert forced == [] and bound == 0.0
            continue
        assert set(forced) == set(path) - core_links, (u, v)
        assert bound == pytest.approx(latency, rel=1e-12, abs=1e-18)
