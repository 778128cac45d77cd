"""check() and devices(): one test per rule, each asserting the message names the culprit."""

import math

import networkx as nx
import pytest

from topologies import TopologyError, build, check, devices


@pytest.fixture
def G():
    return build("switch", n=3, bandwidth=1e9, latency=1e-6)


def rejects(G, message, source="topology"):
    with pytest.raises(TopologyError) as err:
        check(G, source)
    assert str(err.value) == f"{source}: {message}"


def test_a_built_graph_passes(G):
    check(G)


def test_source_prefixes_the_message(G):
    del G.edges["d1", "s0"]["bandwidth"]
    rejects(G, "edge (d1, s0): missing 'bandwidth'", source="topology.yaml")


def test_missing_role(G):
    del G.nodes["s0"]["role"]
    rejects(G, "node s0: missing 'role'")


def test_unknown_role(G):
    G.nodes["s0"]["role"] = "router"
    rejects(G, "node s0: 'role' must be one of device, nic, switch, got 'router'")


def test_device_without_rank(G):
    del G.nodes["d2"]["rank"]
    rejects(G, "node d2: missing 'rank' on a device")


@pytest.mark.parametrize("rank", [-1, 1.0, "1", True, None])
def test_rank_must_be_a_non_negative_integer(G, rank):
    G.nodes["d1"]["rank"] = rank
    rejects(G, f"node d1: 'rank' must be a non-negative integer, got {rank!r}")


def test_host_must_be_a_non_negative_integer(G):
    G.nodes["d1"]["host"] = "a"
    rejects(G, "node d1: 'host' must be a non-negative integer, got 'a'")


def test_duplicate_rank_names_both_nodes(G):
    G.nodes["d2"]["rank"] = 0
    rejects(G, "node d2: rank 0 already used by d0")


def test_ranks_must_be_contiguous(G):
    G.nodes["d1"]["rank"] = 7
    rejects(G, "device ranks must be 0..2 exactly once; rank 1 is missing (largest is 7)")


def test_no_devices():
    H = nx.Graph()
    H.add_node("s0", role="switch")
    rejects(H, "no node has role 'device'")


@pytest.mark.parametrize("key", ["bandwidth", "latency"])
def test_missing_link_attribute(G, key):
    del G.edges["d0", "s0"][key]
    rejects(G, f"edge (d0, s0): missing '{key}'")


@pytest.mark.parametrize("bw", [0, 0.0, -1.0, math.inf, math.nan, "100Gbps", None, True])
def test_bandwidth_must_be_positive_and_finite(G, bw):
    G.edges["d0", "s0"]["bandwidth"] = bw
    rejects(
        G, f"edge (d0, s0): 'bandwidth' must be a positive finite number of bytes/s, got {bw!r}"
    )


@pytest.mark.parametrize("lat", [-1e-9, math.inf, math.nan, "1us"])
def test_latency_must_be_non_negative_and_finite(G, lat):
    G.edges["d0", "s0"]["latency"] = lat
    rejects(
        G, f"edge (d0, s0): 'latency' must be a non-negative finite number of seconds, got {lat!r}"
    )


def test_zero_latency_is_fine(G):
    G.edges["d0", "s0"]["latency"] = 0
    check(G)


def test_self_loop(G):
    G.add_edge("s0", "s0", bandwidth=1.0, latency=0.0)
    rejects(G, "edge (s0, s0): a link from a node to itself")


def test_disconnected_names_an_unreachable_node(G):
    G.add_node("s9", role="switch")
    rejects(G, "the topology is disconnected: node s9 cannot be reached from d0")


@pytest.mark.parametrize("cls", [nx.DiGraph, nx.MultiGraph])
def test_only_undirected_simple_graphs(G, cls):
    rejects(cls(G), "expected an undirected simple graph (networkx.Graph)")


def test_devices_are_ordered_by_rank_not_insertion():
    H = nx.Graph()
    for name, rank in [("gpu-b", 1), ("sw", None), ("gpu-c", 2), ("gpu-a", 0)]:
        if rank is None:
            H.add_node(name, role="switch")
        else:
            H.add_node(name, role="device", rank=rank)
    assert devices(H) == ["gpu-a", "gpu-b", "gpu-c"]


def test_devices_needs_ranks():
    H = nx.Graph()
    H.add_node("x", role="device")
    with pytest.raises(TopologyError, match="^node x: expected an integer 'rank' on a device$"):
        devices(H)
