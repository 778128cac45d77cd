"""Leaf-spine: counts and degrees by formula, host placement, uplink bandwidth options."""

from collections import Counter

import networkx as nx
import pytest
from topology_helpers import degrees_by_role, links_between

from topologies import TopologyError, check, devices
from topologies.leaf_spine import leaf_spine


@pytest.mark.parametrize(("L", "S", "H"), [(1, 1, 1), (2, 2, 4), (4, 3, 8), (6, 4, 2)])
def test_counts_and_degrees_follow_the_formulas(L, S, H):
    G = leaf_spine(L, S, H, bandwidth=1e9)
    assert len(devices(G)) == L * H
    assert G.number_of_edges() == L * H + L * S
    assert len(links_between(G, "leaf", "spine")) == L * S
    degrees = degrees_by_role(G)
    assert degrees["device"] == Counter({1: L * H})
    expected = Counter({H + S: L})
    expected[L] += S  # spines have degree L (may coincide with H + S)
    assert degrees["switch"] == expected
    assert nx.is_connected(G)
    check(G)


def test_placement_and_hops():
    G = leaf_spine(3, 2, 4, bandwidth=1e9)
    for d in devices(G):
        leaf = G.nodes[d]["rank"] // 4
        assert G.nodes[d]["leaf"] == leaf
        assert list(G[d]) == [f"leaf{leaf}"]
    assert nx.shortest_path_length(G, "d0", "d3") == 2
    assert nx.shortest_path_length(G, "d0", "d4") == 4
    assert G.nodes["spine1"] == {"role": "switch", "level": "spine"}
    assert G.graph["hosts"] == 12 and G.graph["spines"] == 2


def _uplinks(G):
    return {G.edges[e]["bandwidth"] for e in links_between(G, "leaf", "spine")}


def test_uplink_bandwidth_defaults_to_bandwidth():
    assert _uplinks(leaf_spine(2, 2, 4, bandwidth="100Gbps")) == {12.5e9}


def test_uplink_bandwidth_given():
    G = leaf_spine(2, 2, 4, bandwidth="100Gbps", uplink_bandwidth="400Gbps")
    assert _uplinks(G) == {50e9}
    assert {G.edges[e]["bandwidth"] for e in links_between(G, "device", "leaf")} == {12.5e9}


@pytest.mark.parametrize(("o", "up"), [(1, 8 / 2), (4, 8 / 2 / 4)])
def test_oversubscription_sets_leaf_capacity_ratio(o, up):
    G = leaf_spine(2, 2, 8, bandwidth=1.0, oversubscription=o)
    assert _uplinks(G) == {up}
    down = sum(G.edges[e]["bandwidth"] for e in G.edges("leaf0") if e[1].startswith("d"))
    upcap = sum(G.edges[e]["bandwidth"] for e in G.edges("leaf0") if e[1].startswith("spine"))
    assert down / upcap == pytest.approx(o)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"leaves": 0}, "leaves: expected an integer >= 1"),
        ({"spines": 0}, "spines: expected an integer >= 1"),
        ({"hosts_per_leaf": -1}, "hosts_per_leaf: expected an integer >= 1"),
        ({"uplink_bandwidth": "fast"}, "uplink_bandwidth: expected a bandwidth"),
        ({"oversubscription": 0.9}, "oversubscription: expected a number >= 1"),
        ({"oversubscription": 2, "uplink_bandwidth": 1e9}, "oversubscription: give either"),
    ],
)
def test_leaf_spine_rejects_bad_parameters(params, named):
    args = {"leaves": 2, "spines": 2, "hosts_per_leaf": 4, **params}
    with pytest.raises(TopologyError, match=rf"^leaf_spine: {named}"):
        leaf_spine(bandwidth=1e9, **args)
