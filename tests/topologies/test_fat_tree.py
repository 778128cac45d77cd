"""Fat tree (Al-Fares et al. 2008): counts and degrees by formula, bisection, oversubscription."""

from collections import Counter

import networkx as nx
import pytest
from topology_helpers import degrees_by_role, links_between

from topologies import TopologyError, check, devices
from topologies.fat_tree import fat_tree, smallest_k


@pytest.mark.parametrize("k", [2, 4, 6, 8])
def test_counts_and_degrees_follow_the_formulas(k):
    G = fat_tree(k, bandwidth=1e9)
    hosts, switches = k**3 // 4, 5 * k**2 // 4
    assert len(devices(G)) == hosts
    assert degrees_by_role(G) == {
        "device": Counter({1: hosts}),
        "switch": Counter({k: switches}),
    }
    levels = Counter(level for _, level in G.nodes(data="level") if level)
    assert levels == {"edge": k**2 // 2, "agg": k**2 // 2, "core": k**2 // 4}
    assert len(links_between(G, "agg", "core")) == hosts
    assert len(links_between(G, "edge", "agg")) == hosts
    assert len(links_between(G, "device", "edge")) == hosts
    assert nx.is_connected(G)
    check(G)


def test_pods_and_names():
    k = 4
    G = fat_tree(k, bandwidth=1e9)
    pods = Counter(G.nodes[d]["pod"] for d in devices(G))
    assert pods == {p: k**2 // 4 for p in range(k)}
    assert list(G)[: k**3 // 4] == [f"d{r}" for r in range(k**3 // 4)]
    assert list(G["d5"]) == ["edge2"]
    assert G.nodes["edge2"] == {"role": "switch", "level": "edge", "pod": 1}
    assert G.nodes["core3"] == {"role": "switch", "level": "core"}
    for c in range(k**2 // 4):  # core c reaches aggregation switch c // (k/2) of every pod
        assert sorted(G[f"core{c}"]) == sorted(f"agg{p * 2 + c // 2}" for p in range(k))
    assert G.graph == {
        "kind": "fat_tree",
        "hosts": 16,
        "devices_per_host": 1,
        "k": 4,
        "oversubscription": 1.0,
    }


def test_hop_counts_within_edge_pod_and_across_pods():
    G = fat_tree(4, bandwidth=1e9)
    assert nx.shortest_path_length(G, "d0", "d1") == 2  # same edge switch
    assert nx.shortest_path_length(G, "d0", "d2") == 4  # same pod
    assert nx.shortest_path_length(G, "d0", "d4") == 6  # other pod


def _bisection(G, k):
    """Max flow from the hosts of the first k/2 pods to those of the last k/2 (bytes/s)."""
    D = nx.DiGraph()
    for u, v, bw in G.edges(data="bandwidth"):
        D.add_edge(u, v, capacity=bw)
        D.add_edge(v, u, capacity=bw)
    for d in devices(G):
        if G.nodes[d]["pod"] < k // 2:
            D.add_edge("S", d)  # no capacity: unbounded
        else:
            D.add_edge(d, "T")
    return nx.maximum_flow_value(D, "S", "T")


@pytest.mark.parametrize("o", [1.0, 2.0, 4.0])
def test_oversubscription_divides_uplinks(o):
    k, bw = 4, 100.0
    G = fat_tree(k, bandwidth=bw, oversubscription=o)
    assert {G.edges[e]["bandwidth"] for e in links_between(G, "device", "edge")} == {bw}
    assert {G.edges[e]["bandwidth"] for e in links_between(G, "edge", "agg")} == {bw / o}
    assert {G.edges[e]["bandwidth"] for e in links_between(G, "agg", "core")} == {bw / o}
    # full bisection bandwidth at o = 1, 1/o of it otherwise
    assert _bisection(G, k) == pytest.approx(k**3 / 8 * bw / o)


def test_smallest_k():
    assert [smallest_k(n) for n in (1, 2, 3, 16, 17, 54, 55)] == [2, 2, 4, 4, 6, 6, 8]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"k": 3}, "k: expected an even integer >= 2"),
        ({"k": 0}, "k: expected an even integer >= 2"),
        ({"k": 4.0}, "k: expected an even integer >= 2"),
        ({"k": 4, "oversubscription": 0.5}, "oversubscription: expected a number >= 1"),
        ({"k": 4, "oversubscription": "4:1"}, "oversubscription: expected a number >= 1"),
        ({"k": 4, "oversubscription": float("inf")}, "oversubscription: expected a number"),
    ],
)
def test_fat_tree_rejects_bad_parameters(params, named):
    with pytest.raises(TopologyError, match=rf"^fat_tree: {named}"):
        fat_tree(bandwidth=1e9, **params)
