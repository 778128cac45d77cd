"""Switch: a star around s0; counts, degrees, two hops between any two devices."""

import itertools

import networkx as nx
import pytest

from topologies import TopologyError, check, devices
from topologies.switch import switch


@pytest.mark.parametrize("n", [1, 2, 5, 32])
def test_switch_is_a_star(n):
    G = switch(n, bandwidth=1e9)
    assert G.number_of_nodes() == n + 1
    assert G.number_of_edges() == n
    assert nx.is_isomorphic(G, nx.star_graph(n))
    assert G.degree("s0") == n
    assert G.nodes["s0"] == {"role": "switch"}
    assert devices(G) == [f"d{i}" for i in range(n)]
    assert list(G)[-1] == "s0"
    check(G)


def test_every_pair_of_devices_is_two_hops_apart():
    G = switch(6, bandwidth=1e9)
    for a, b in itertools.combinations(devices(G), 2):
        assert nx.shortest_path(G, a, b) == [a, "s0", b]


def test_switch_accepts_unit_strings():
    G = switch(4, bandwidth="10GB/s", latency="1us")
    for _, _, d in G.edges(data=True):
        assert d == {"bandwidth": 1e10, "latency": 1e-6}
    assert G.graph == {"kind": "switch", "hosts": 4, "devices_per_host": 1}


def test_switch_rejects_zero_devices():
    with pytest.raises(TopologyError, match=r"^switch: n: expected an integer >= 1, got 0"):
        switch(0, bandwidth=1e9)
