"""Hierarchical clusters: counts, host-major ranks, intra-node hops, NICs, each inter fabric."""

import itertools
from collections import Counter

import networkx as nx
import pytest
from topology_helpers import links_between

from topologies import TopologyError, check, devices
from topologies.hierarchical import hierarchical

INTRA, INTER = 450e9, 50e9


def make(nodes=3, per=4, **kw):
    return hierarchical(nodes, per, intra_bandwidth=INTRA, inter_bandwidth=INTER, **kw)


@pytest.mark.parametrize("inter_kind", ["switch", "leaf_spine", "fat_tree"])
@pytest.mark.parametrize(("nodes", "per", "nics"), [(1, 1, 1), (3, 4, 1), (5, 8, 2), (9, 2, 3)])
def test_counts_ranks_and_intra_links(inter_kind, nodes, per, nics):
    G = make(nodes, per, inter_kind=inter_kind, nics_per_node=nics)
    check(G)
    devs = devices(G)
    assert devs == [f"d{r}" for r in range(nodes * per)]
    assert [G.nodes[d]["host"] for d in devs] == [r // per for r in range(nodes * per)]
    roles = Counter(role for _, role in G.nodes(data="role"))
    assert roles["device"] == nodes * per and roles["nic"] == nodes * nics
    intra = [n for n, lv in G.nodes(data="level") if lv == "intra"]
    assert intra == [f"intra{h}" for h in range(nodes)]
    for h in range(nodes):
        assert G.degree(f"intra{h}") == per + nics
        assert G.nodes[f"intra{h}"]["host"] == h
    assert len(links_between(G, "device", "intra")) == nodes * per
    assert {G.edges[e]["bandwidth"] for e in links_between(G, "device", "intra")} == {INTRA}
    assert {G.edges[e]["bandwidth"] for e in links_between(G, "intra", "nic")} == {INTER}
    assert G.graph["hosts"] == nodes and G.graph["devices_per_host"] == per
    assert G.graph["inter_kind"] == inter_kind and G.graph["nics_per_node"] == nics


def test_devices_of_a_host_are_two_hops_apart_through_its_intra_switch():
    G = make(3, 4)
    for h in range(3):
        local = [d for d in devices(G) if G.nodes[d]["host"] == h]
        for a, b in itertools.combinations(local, 2):
            assert list(nx.all_shortest_paths(G, a, b)) == [[a, f"intra{h}", b]]


def test_cross_host_traffic_leaves_through_the_nics():
    G = make(2, 4, inter_kind="switch", inter_latency=2e-6, intra_latency=1e-6)
    assert nx.shortest_path(G, "d1", "d6") == ["d1", "intra0", "n0", "s0", "n1", "intra1", "d6"]
    lat = [G.edges[e]["latency"] for e in nx.utils.pairwise(nx.shortest_path(G, "d1", "d6"))]
    assert lat == [1e-6, 0.0, 2e-6, 2e-6, 0.0, 1e-6]


def test_nic_names_and_hosts():
    G = make(2, 2, nics_per_node=2, inter_kind="switch")
    nics = [n for n, role in G.nodes(data="role") if role == "nic"]
    assert nics == ["n0.0", "n0.1", "n1.0", "n1.1"]
    assert [G.nodes[n]["host"] for n in nics] == [0, 0, 1, 1]
    assert G.degree("s0") == 4


def test_leaf_spine_defaults_are_non_blocking():
    G = make(20, 1)  # 20 NICs, 8 per leaf -> 3 leaves, 2 spines
    levels = Counter(lv for _, lv in G.nodes(data="level") if lv)
    assert levels == {"intra": 20, "leaf": 3, "spine": 2}
    assert {G.edges[e]["bandwidth"] for e in links_between(G, "leaf", "spine")} == {8 * INTER / 2}
    assert [G.nodes[f"n{h}"]["leaf"] for h in (0, 7, 8, 19)] == [0, 0, 1, 2]


def test_leaf_spine_parameters_pass_through():
    G = make(6, 1, hosts_per_leaf=2, spines=3, uplink_bandwidth=7e9)
    levels = Counter(lv for _, lv in G.nodes(data="level") if lv)
    assert levels["leaf"] == 3 and levels["spine"] == 3
    assert {G.edges[e]["bandwidth"] for e in links_between(G, "leaf", "spine")} == {7e9}


def test_fat_tree_picks_the_smallest_k_and_leaves_ports_empty():
    G = make(17, 2, inter_kind="fat_tree")  # 17 NICs: k=4 has 16 ports, k=6 has 54
    assert G.graph["k"] == 6
    switches = [n for n, lv in G.nodes(data="level") if lv in ("edge", "agg", "core")]
    assert len(switches) == 5 * 36 // 4
    assert all(G.degree(s) <= 6 for s in switches)
    assert sum(G.degree(s) for s in switches if G.nodes[s]["level"] == "edge") == 17 + 54
    assert nx.is_connected(G)


def test_fat_tree_with_given_k_and_oversubscription():
    G = make(4, 2, inter_kind="fat_tree", k=4, oversubscription=2)
    assert G.graph["k"] == 4
    assert {G.edges[e]["bandwidth"] for e in links_between(G, "edge", "agg")} == {INTER / 2}


def test_unit_strings():
    G = hierarchical(
        2,
        2,
        intra_bandwidth="450GB/s",
        intra_latency="1us",
        inter_bandwidth="400Gbps",
        inter_latency="2us",
        inter_kind="switch",
    )
    assert G.edges["d0", "intra0"] == {"bandwidth": 450e9, "latency": 1e-6}
    assert G.edges["n0", "s0"] == {"bandwidth": 50e9, "latency": 2e-6}


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"inter_kind": "mesh"}, "inter_kind: expected one of switch, leaf_spine, fat_tree"),
        ({"inter_kind": "switch", "spines": 2}, "unexpected parameter 'spines' for inter_kind"),
        ({"inter_kind": "fat_tree", "spines": 2}, "unexpected parameter 'spines'"),
        ({"k": 4}, "unexpected parameter 'k' for inter_kind 'leaf_spine'"),
        ({"inter_kind": "fat_tree", "k": 2}, "k: a k=2 fat tree has 2 host ports, 3 are needed"),
        ({"inter_kind": "fat_tree", "k": 5}, "k: expected an even integer"),
        ({"spines": 0}, "spines: expected an integer >= 1"),
        ({"nics_per_node": 0}, "nics_per_node: expected an integer >= 1"),
        ({"intra_latency": "fast"}, "intra_latency: expected a duration"),
    ],
)
def test_bad_parameters_are_named(kw, message):
    with pytest.raises(TopologyError, match=f"^hierarchical: {message}"):
        make(3, 2, **kw)


def test_bad_shape_parameters_are_named():
    with pytest.raises(TopologyError, match="^hierarchical: devices_per_node: expected"):
        make(2, 0)
    with pytest.raises(TopologyError,
                       match="^hierarchical: inter_bandwidth: expected a bandwidth like .* \\(must be between 1 and"):
        hierarchical(2, 2, intra_bandwidth=1e9, inter_bandwidth=0)
