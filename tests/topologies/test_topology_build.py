"""The KINDS registry and build(): unknown kinds, parameter names, units, invariants."""

import math

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import topologies
from topologies import KINDS, TopologyError, build, check, devices

#: the smallest valid parameters of every kind
SMALL = {
    "ring": {"n": 4},
    "switch": {"n": 4},
    "torus": {"dims": (3, 2)},
    "fat_tree": {"k": 4},
    "leaf_spine": {"leaves": 2, "spines": 2, "hosts_per_leaf": 2},
    "hierarchical": {"nodes": 2, "devices_per_node": 2},
}


def params(kind, bandwidth=1e9, latency=0.0):
    if kind == "hierarchical":
        links = {
            "intra_bandwidth": bandwidth,
            "intra_latency": latency,
            "inter_bandwidth": bandwidth,
            "inter_latency": latency,
        }
    else:
        links = {"bandwidth": bandwidth, "latency": latency}
    return {**SMALL[kind], **links}


def test_kinds_table():
    assert set(KINDS) == set(SMALL)
    for name, builder in KINDS.items():
        assert builder.__name__ == name


def test_unknown_kind_lists_the_valid_ones():
    with pytest.raises(TopologyError) as err:
        build("dragonfly", n=4)
    message = str(err.value)
    assert message.startswith("unknown topology kind 'dragonfly'; expected one of: ")
    assert message.endswith(", ".join(sorted(KINDS)))


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_missing_parameters_are_named(kind):
    full = params(kind)
    for name in ("bandwidth" if kind != "hierarchical" else "inter_bandwidth", *SMALL[kind]):
        partial = {k: v for k, v in full.items() if k != name}
        with pytest.raises(TopologyError, match=rf"^{kind}: missing parameter '{name}'$"):
            build(kind, **partial)


@pytest.mark.parametrize("kind", sorted(set(SMALL) - {"hierarchical"}))
def test_unexpected_parameters_are_named(kind):
    with pytest.raises(TopologyError, match=rf"^{kind}: unexpected parameter 'colour' \(accepts: "):
        build(kind, colour="red", **params(kind))


def test_hierarchical_unexpected_parameter_is_named():
    with pytest.raises(TopologyError, match=r"^hierarchical: unexpected parameter 'colour'"):
        build("hierarchical", colour="red", **params("hierarchical"))


@pytest.mark.parametrize("kind", sorted(SMALL))
def test_unit_strings_are_parsed(kind):
    G = build(kind, **params(kind, bandwidth="100Gbps", latency="1us"))
    assert {d["bandwidth"] for *_, d in G.edges(data=True)} >= {12.5e9}
    assert {d["latency"] for *_, d in G.edges(data=True)} - {0.0} == {1e-6}


def test_switch_example_from_the_contract():
    G = build("switch", n=4, bandwidth="10GB/s", latency="1us")
    assert [G.edges[d, "s0"]["bandwidth"] for d in devices(G)] == [1e10] * 4
    assert [G.edges[d, "s0"]["latency"] for d in devices(G)] == [1e-6] * 4


@pytest.mark.parametrize("kind", sorted(set(SMALL) - {"hierarchical"}))
@pytest.mark.parametrize(
    ("bandwidth", "latency", "message"),
    [
        ("fast", 0.0, "bandwidth: expected a bandwidth like"),
        ("100GHz", 0.0, "bandwidth: expected a bandwidth like"),
        (0, 0.0, "bandwidth: expected a bandwidth like .*, got 0 \\(must be between 1 and"),
        (-1e9, 0.0, "bandwidth: expected a bandwidth like .* \\(must be between 1 and"),
        (math.inf, 0.0, "bandwidth: expected a bandwidth like .* \\(not a finite number\\)"),
        (math.nan, 0.0, "bandwidth: expected a bandwidth like .* \\(not a finite number\\)"),
        (True, 0.0, "bandwidth: expected a bandwidth like"),
        (1e9, "5GB", "latency: expected a duration like"),
        (1e9, -1e-6, "latency: expected a duration like .* \\(must be between 0 and"),
        (1e9, None, "latency: expected a duration like"),
    ],
)
def test_bad_link_quantities_are_named(kind, bandwidth, latency, message):
    with pytest.raises(TopologyError, match=f"^{kind}: {message}"):
        build(kind, **params(kind, bandwidth=bandwidth, latency=latency))


def test_topology_error_is_a_value_error():
    assert issubclass(TopologyError, ValueError)
    assert topologies.TopologyError is topologies.graph.TopologyError


def _edges(G):
    return [(u, v, sorted(d.items())) for u, v, d in G.edges(data=True)]


sides = st.lists(st.integers(2, 5), min_size=1, max_size=3)
shapes = st.one_of(
    st.builds(lambda n: ("ring", {"n": n}), st.integers(2, 12)),
    st.builds(lambda n: ("switch", {"n": n}), st.integers(1, 12)),
    st.builds(lambda d: ("torus", {"dims": tuple(d)}), sides),
    st.builds(lambda k: ("fat_tree", {"k": k}), st.sampled_from([2, 4, 6])),
    st.builds(
        lambda a, b, c: ("leaf_spine", {"leaves": a, "spines": b, "hosts_per_leaf": c}),
        st.integers(1, 4),
        st.integers(1, 4),
        st.integers(1, 4),
    ),
    st.builds(
        lambda n, p, c, kind: (
            "hierarchical",
            {"nodes": n, "devices_per_node": p, "nics_per_node": c, "inter_kind": kind},
        ),
        st.integers(1, 5),
        st.integers(1, 4),
        st.integers(1, 2),
        st.sampled_from(["switch", "leaf_spine", "fat_tree"]),
    ),
)


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_every_built_topology_follows_the_conventions(shape):
    kind, shape_params = shape
    links = params(kind)
    links = {k: v for k, v in links.items() if k not in SMALL[kind]}
    G = build(kind, **shape_params, **links)
    check(G)  # connected, link attributes, roles, ranks 0..n-1
    n = len(devices(G))
    assert n == G.graph["hosts"] * G.graph["devices_per_host"]
    assert list(G)[:n] == [f"d{r}" for r in range(n)]  # devices first, in rank order
    for d in devices(G):
        assert G.nodes[d]["host"] == G.nodes[d]["rank"] // G.graph["devices_per_host"]
    assert G.graph["kind"] == kind
    again = build(kind, **shape_params, **links)  # deterministic: same order, same attributes
    assert list(again.nodes(data=True)) == list(G.nodes(data=True))
    assert _edges(again) == _edges(G)
    assert not G.is_directed() and not G.is_multigraph() and nx.is_connected(G)
