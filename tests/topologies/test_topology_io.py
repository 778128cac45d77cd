"""load() and save(): round trips, units, defaults, GraphML, and every error path."""

import networkx as nx
import pytest

from topologies import TopologyError, build, load, save

GOOD = """\
nodes:
- {name: h0, role: device, rank: 0}
- {name: h1, role: device, rank: 1}
- {name: s1, role: switch, level: tor}
edges:
- {u: h0, v: s1, bandwidth: 100Gbps, latency: 1us}
- {u: h1, v: s1, bandwidth: 12.5e9}
"""

ROUND_TRIP = [
    ("ring", {"n": 5, "bandwidth": 1e9, "latency": 1e-6}),
    ("switch", {"n": 3, "bandwidth": "100Gbps"}),
    ("torus", {"dims": (3, 2, 2), "bandwidth": 7.5e9, "latency": "250ns"}),
    ("fat_tree", {"k": 4, "bandwidth": 1e9, "oversubscription": 3}),
    ("leaf_spine", {"leaves": 3, "spines": 2, "hosts_per_leaf": 2, "bandwidth": 1e9}),
    (
        "hierarchical",
        {
            "nodes": 3,
            "devices_per_node": 2,
            "nics_per_node": 2,
            "intra_bandwidth": "450GB/s",
            "inter_bandwidth": "400Gbps",
            "inter_latency": "2us",
            "inter_kind": "fat_tree",
        },
    ),
]


@pytest.mark.parametrize(("kind", "params"), ROUND_TRIP, ids=[k for k, _ in ROUND_TRIP])
def test_save_then_load_gives_the_same_graph(tmp_path, kind, params):
    G = build(kind, **params)
    path = tmp_path / "t.yaml"
    save(G, path)
    H = load(path)
    assert nx.utils.graphs_equal(G, H)
    assert list(H.nodes(data=True)) == list(G.nodes(data=True))
    assert [(type(b), type(lt)) for *_, b, lt in _links(H)] == [(float, float)] * len(_links(G))
    save(H, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_text() == path.read_text()


def _links(G):
    return [(u, v, d["bandwidth"], d["latency"]) for u, v, d in G.edges(data=True)]


def test_load_parses_units_and_fills_defaults(write):
    G = load(write(GOOD))
    assert G.edges["h0", "s1"] == {"bandwidth": 12.5e9, "latency": 1e-6}
    assert G.edges["h1", "s1"] == {"bandwidth": 12.5e9, "latency": 0.0}
    assert G.nodes["h1"] == {"role": "device", "rank": 1, "host": 1}
    assert G.nodes["s1"] == {"role": "switch", "level": "tor"}
    assert G.graph == {"kind": "file", "hosts": 2, "devices_per_host": 1}


def test_load_keeps_given_graph_attributes_and_hosts(write):
    text = GOOD.replace("rank: 1}", "rank: 1, host: 0}") + "graph: {kind: pair, hosts: 9}\n"
    G = load(write(text))
    assert G.graph == {"kind": "pair", "hosts": 9, "devices_per_host": 2}
    assert G.nodes["h1"]["host"] == 0


def test_integer_names_become_strings(write):
    text = """\
nodes: [{name: 0, role: device, rank: 0}, {name: 1, role: switch}]
edges: [{u: 0, v: 1, bandwidth: 1}]
"""
    assert list(load(write(text)).edges) == [("0", "1")]


def test_graphml(tmp_path):
    G = build("fat_tree", k=2, bandwidth=1e9, latency=1e-6)
    path = tmp_path / "ft.graphml"
    nx.write_graphml(G, path)
    H = load(path)
    assert nx.utils.graphs_equal(G, H)


def test_graphml_with_unit_strings(tmp_path):
    G = build("switch", n=2, bandwidth=1.0)
    for _, _, d in G.edges(data=True):
        d["bandwidth"], d["latency"] = "100Gbps", "1us"
    path = tmp_path / "s.graphml"
    nx.write_graphml(G, path)
    assert load(path).edges["d0", "s0"] == {"bandwidth": 12.5e9, "latency": 1e-6}


def test_directed_graphml_is_rejected(tmp_path):
    path = tmp_path / "d.graphml"
    nx.write_graphml(nx.DiGraph(build("switch", n=2, bandwidth=1.0)), path)
    with pytest.raises(TopologyError, match=r"^d.graphml: expected an undirected simple graph"):
        load(path)


def test_malformed_graphml(write):
    with pytest.raises(TopologyError, match=r"^bad.graphml: invalid GraphML: "):
        load(write("<graphml><graph", name="bad.graphml"))


def fails(path, message):
    with pytest.raises(TopologyError) as err:
        load(path)
    assert str(err.value) == f"{path.name}: {message}"
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.yaml"
    fails(path, f"no such file: {path}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "nodes: [\n",
            "line 2, column 1: invalid YAML (expected the node content, but found '<stream end>')",
        ),
        ("", "expected a mapping with keys 'nodes' and 'edges', got None"),
        ("- a\n- b\n", "expected a mapping with keys 'nodes' and 'edges', got ['a', 'b']"),
        ("nodes: []\nedges: []\nlinks: []\n", "unknown key 'links' (expected graph, nodes, edges)"),
        ("edges: []\n", "missing 'nodes'"),
        ("nodes: []\n", "missing 'edges'"),
        ("nodes: {d0: 1}\nedges: []\n", "nodes: expected a list, got {'d0': 1}"),
        ("nodes: []\nedges: []\ngraph: [1]\n", "graph: expected a mapping, got [1]"),
        (
            "nodes: [d0]\nedges: []\n",
            "nodes[0]: expected a mapping like {name: d0, role: device, rank: 0}",
        ),
        ("nodes: [{role: switch}]\nedges: []\n", "nodes[0]: missing 'name'"),
        (
            "nodes: [{name: yes, role: switch}]\nedges: []\n",
            "nodes[0]: name: expected a node name (a string), got True",
        ),
        ("nodes: []\nedges: []\n", "no node has role 'device'"),
    ],
)
def test_bad_documents(write, text, message):
    fails(write(text), message)


def test_invalid_yaml_message_is_one_line(write):
    fails(
        write("nodes: [{name: d0\nedges: ]"),
        "line 2, column 6: invalid YAML (expected ',' or '}', but got ':')",
    )


def test_not_utf8(tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_bytes(b"\xff\xfe\x00nodes")
    fails(path, "line 1: not UTF-8 text (byte 0xff)")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "- {name: s1, role: switch, level: tor}",
            "- {name: s1, role: switch}\n- {name: s1, role: switch}",
            "node s1: defined twice",
        ),
        (
            "- {u: h1, v: s1, bandwidth: 12.5e9}",
            "- h1",
            "edges[1]: expected a mapping like {u: d0, v: s0, bandwidth: 100Gbps, latency: 1us}",
        ),
        ("- {u: h1, v: s1", "- {v: s1", "edges[1]: missing 'u'"),
        (
            "- {u: h1, v: s1",
            "- {u: h1, v: [s1]",
            "edges[1]: v: expected a node name (a string), got ['s1']",
        ),
        (
            "v: s1, bandwidth: 12.5e9",
            "v: s9, bandwidth: 12.5e9",
            "edge (h1, s9): unknown node 's9' (not listed in 'nodes')",
        ),
        ("{u: h1, v: s1", "{u: s1, v: h0", "edge (s1, h0): listed twice"),
        (", bandwidth: 12.5e9}", "}", "edge (h1, s1): missing 'bandwidth'"),
        (
            "bandwidth: 12.5e9",
            "bandwidth: fast",
            "edge (h1, s1): bandwidth: expected a"
            ' bandwidth like "100Gbps" or "25GB/s", got \'fast\'',
        ),
        (
            "bandwidth: 100Gbps, latency: 1us",
            "bandwidth: 100Gbps, latency: soon",
            'edge (h0, s1): latency: expected a duration like "2us" or "1.5ms", got \'soon\'',
        ),
        (
            "bandwidth: 12.5e9",
            "bandwidth: 0",
            "edge (h1, s1): bandwidth: expected a bandwidth like \"100Gbps\" or \"25GB/s\", got 0"
            " (must be between 1 and 1e+18 B/s)",
        ),
        (
            "bandwidth: 12.5e9",
            "bandwidth: -5GB/s",
            "edge (h1, s1): bandwidth: expected a bandwidth like \"100Gbps\" or \"25GB/s\", got '-5GB/s'"
            " (must be between 1 and 1e+18 B/s)",
        ),
        (
            "latency: 1us",
            "latency: -1us",
            "edge (h0, s1): latency: expected a duration like \"2us\" or \"1.5ms\", got '-1us'"
            " (must be between 0 and 1e+09 s)",
        ),
        ("{u: h1, v: s1", "{u: h1, v: h1", "edge (h1, h1): a link from a node to itself"),
        ("role: switch, level: tor", "level: tor", "node s1: missing 'role'"),
        ("rank: 1}", "rank: 0}", "node h1: rank 0 already used by h0"),
        ("rank: 1}", "rank: one}", "node h1: 'rank' must be a non-negative integer, got 'one'"),
        (
            "- {u: h1, v: s1, bandwidth: 12.5e9}",
            "",
            "the topology is disconnected: node h1 cannot be reached from h0",
        ),
    ],
)
def test_bad_nodes_and_edges_are_named(write, old, new, message):
    assert old in GOOD
    fails(write(GOOD.replace(old, new)), message)


def test_frequency_where_a_bandwidth_belongs(write):
    with pytest.raises(
        TopologyError,
        match=r"^topology.yaml: edge \(h0, s1\): bandwidth: "
        r"expected a bandwidth like .*, got '100GHz'",
    ):
        load(write(GOOD.replace("100Gbps", "100GHz")))


def test_save_refuses_an_invalid_graph_and_writes_nothing(tmp_path):
    G = build("switch", n=2, bandwidth=1.0)
    G.add_node("lost", role="switch")
    path = tmp_path / "out.yaml"
    with pytest.raises(TopologyError, match="^out.yaml: the topology is disconnected: node lost"):
        save(G, path)
    assert list(tmp_path.iterdir()) == []


def test_save_names_an_attribute_yaml_cannot_hold_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.yaml"
    path.write_text("old")
    G = build("switch", n=2, bandwidth=1.0)
    G.nodes["s0"]["ports"] = {1, 2}
    with pytest.raises(TopologyError, match=r"^out.yaml: node s0: 'ports': cannot write \{1, 2\}"):
        save(G, path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.yaml"]


def test_save_writes_plain_yaml(tmp_path):
    import numpy as np

    G = build("torus", dims=(2, 3), bandwidth=1.0)
    G.graph["scale"] = np.float64(0.5)
    G.nodes["d0"]["coord"] = (np.int64(0), np.int64(0))
    path = tmp_path / "t.yaml"
    save(G, path)
    text = path.read_text()
    assert "!!" not in text  # no python-specific tags: any YAML reader can read it
    H = load(path)
    assert H.graph["scale"] == 0.5 and H.graph["dims"] == [2, 3]
    assert H.nodes["d0"]["coord"] == [0, 0]
