"""Ring: counts, degrees, isomorphism to a cycle, ranks, link attributes, bad n."""

import networkx as nx
import pytest

from topologies import TopologyError, build, check, devices
from topologies.ring import ring


@pytest.mark.parametrize("n", [3, 4, 7, 16])
def test_ring_is_a_cycle_of_devices(n):
    G = ring(n, bandwidth=1e9, latency=1e-6)
    assert G.number_of_nodes() == n
    assert G.number_of_edges() == n
    assert nx.is_isomorphic(G, nx.cycle_graph(n))
    assert all(deg == 2 for _, deg in G.degree)
    expected = {frozenset((f"d{i}", f"d{(i + 1) % n}")) for i in range(n)}
    assert {frozenset(e) for e in G.edges} == expected
    check(G)


def test_ring_of_two_is_one_link():
    G = ring(2, bandwidth=1e9)
    assert list(G.edges) == [("d0", "d1")]
    assert dict(G.degree) == {"d0": 1, "d1": 1}


def test_ring_ranks_hosts_and_graph_keys():
    G = ring(5, bandwidth=2e9, latency=3e-6)
    assert devices(G) == [f"d{i}" for i in range(5)]
    assert list(G) == devices(G)
    for i in range(5):
        assert G.nodes[f"d{i}"] == {"role": "device", "rank": i, "host": i}
    assert G.graph == {"kind": "ring", "hosts": 5, "devices_per_host": 1}
    assert {(d["bandwidth"], d["latency"]) for _, _, d in G.edges(data=True)} == {(2e9, 3e-6)}


def test_ring_via_build_is_the_same_graph():
    assert nx.utils.graphs_equal(build("ring", n=6, bandwidth=1.0), ring(6, bandwidth=1.0))


@pytest.mark.parametrize("n", [1, 0, -3, 2.5, True, "4", None])
def test_ring_rejects_bad_n(n):
    with pytest.raises(TopologyError, match=r"^ring: n: expected an integer >= 2, got"):
        ring(n, bandwidth=1e9)
