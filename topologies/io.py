"""Topology files: read YAML or GraphML into a checked graph, write the YAML form.

The YAML form, which ``save`` writes and ``load`` reads back unchanged::

    graph: {kind: switch, hosts: 2, devices_per_host: 1}     # optional
    nodes:
    - {name: d0, role: device, rank: 0, host: 0}              # host defaults to rank
    - {name: d1, role: device, rank: 1, host: 1}
    - {name: s0, role: switch}
    edges:
    - {u: d0, v: s0, bandwidth: 100Gbps, latency: 1us}       # latency defaults to 0
    - {u: d1, v: s0, bandwidth: 12.5e9, latency: 1.0e-6}      # plain numbers are SI

Bandwidths and latencies may carry units (parsed by :mod:`topologies.units`);
any other node or edge key is kept as an attribute. GraphML files (``.graphml``)
must be undirected and use the same attribute names. Every error is one line
that starts with the file name and names the node or edge at fault.

This module parses and writes; what a valid topology is lives in
:func:`topologies.graph.check`.
"""

from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from numbers import Integral, Real
from pathlib import Path

import networkx as nx
import yaml

from . import safe_yaml
from .graph import TopologyError, check, devices
from .units import UnitError, parse

__all__ = ["load", "save"]

_KEYS = ("graph", "nodes", "edges")
_NODE_EXAMPLE = "{name: d0, role: device, rank: 0}"
_EDGE_EXAMPLE = "{u: d0, v: s0, bandwidth: 100Gbps, latency: 1us}"


def load(path: str | os.PathLike) -> nx.Graph:
    """Read a topology file (YAML, or GraphML when the name ends in ``.graphml``).

    Parameters
    ----------
    path : str or path-like
        The file to read.

    Returns
    -------
    networkx.Graph
        Checked with :func:`topologies.graph.check`; bandwidths in bytes/s and
        latencies in seconds. Devices without ``host`` get ``host = rank``;
        ``G.graph`` gets ``kind = "file"``, ``hosts`` (distinct hosts) and
        ``devices_per_host`` (most devices on one host) unless the file sets them.

    Raises
    ------
    TopologyError
        One line starting with the file name, e.g.
        ``topology.yaml: edge (h3, s1): missing 'bandwidth'``.
    """
    path = Path(path)
    source = path.name
    if not path.is_file():
        raise TopologyError(f"{source}: no such file: {path}")
    if path.suffix.lower() == ".graphml":
        nodes, edges, attrs = _read_graphml(path, source)
    else:
        nodes, edges, attrs = _read_yaml(path, source)
    G = _assemble(nodes, edges, attrs, source)
    check(G, source)
    _fill_defaults(G)
    return G


def save(G: nx.Graph, path: str | os.PathLike) -> None:
    """Write ``G`` in the YAML form that :func:`load` reads back equal.

    ``G`` is checked first, so no file is written for a graph ``load`` would
    reject; the file is written to a temporary name and renamed, so a failure
    leaves nothing half-written. Node names are written as strings.

    Raises
    ------
    TopologyError
        If ``G`` fails :func:`topologies.graph.check`, or an attribute has a value
        YAML cannot hold (naming it).
    """
    path = Path(path)
    source = path.name
    check(G, source)
    doc = {
        "graph": _plain(dict(G.graph), f"{source}: graph"),
        "nodes": [
            {"name": str(n), **_plain(d, f"{source}: node {n}")} for n, d in G.nodes(data=True)
        ],
        "edges": [_edge_record(u, v, d, source) for u, v, d in G.edges(data=True)],
    }
    text = "# trainsim topology: bandwidth in bytes/s, latency in s\n" + yaml.safe_dump(
        doc, sort_keys=False, default_flow_style=None, allow_unicode=True, width=1000
    )
    write_atomically(path, text)


def _read_yaml(path: Path, source: str) -> tuple[list, list, dict]:
    try:
        doc = safe_yaml.read(path, source)
    except safe_yaml.YAMLInputError as err:
        raise TopologyError(str(err)) from None
    if not isinstance(doc, dict):
        raise TopologyError(
            f"{source}: expected a mapping with keys 'nodes' and 'edges', got {_short(doc)}"
        )
    for key in doc:
        if key not in _KEYS:
            raise TopologyError(f"{source}: unknown key {key!r} (expected {', '.join(_KEYS)})")
    for key in ("nodes", "edges"):
        if key not in doc:
            raise TopologyError(f"{source}: missing '{key}'")
        if not isinstance(doc[key], list):
            raise TopologyError(f"{source}: {key}: expected a list, got {_short(doc[key])}")
    attrs = doc.get("graph") or {}
    if not isinstance(attrs, dict):
        raise TopologyError(f"{source}: graph: expected a mapping, got {_short(attrs)}")
    return doc["nodes"], doc["edges"], attrs


def _read_graphml(path: Path, source: str) -> tuple[list, list, dict]:
    try:
        H = nx.read_graphml(path, node_type=str)
    except (ET.ParseError, nx.NetworkXError, ValueError, KeyError) as err:
        raise TopologyError(f"{source}: invalid GraphML: {' '.join(str(err).split())}") from None
    if H.is_directed() or H.is_multigraph():
        raise TopologyError(
            f'{source}: expected an undirected simple graph (edgedefault="undirected")'
        )
    attrs = {k: v for k, v in H.graph.items() if k not in ("node_default", "edge_default")}
    nodes = [{"name": n, **d} for n, d in H.nodes(data=True)]
    edges = [{"u": u, "v": v, **d} for u, v, d in H.edges(data=True)]
    return nodes, edges, attrs


def _assemble(nodes: list, edges: list, attrs: dict, source: str) -> nx.Graph:
    G = nx.Graph(**attrs)
    for i, entry in enumerate(nodes):
        where = f"{source}: nodes[{i}]"
        if not isinstance(entry, dict):
            raise TopologyError(f"{where}: expected a mapping like {_NODE_EXAMPLE}")
        if "name" not in entry:
            raise TopologyError(f"{where}: missing 'name'")
        name = _name(entry["name"], f"{where}: name")
        if name in G:
            raise TopologyError(f"{source}: node {name}: defined twice")
        G.add_node(name, **{k: v for k, v in entry.items() if k != "name"})
    for i, entry in enumerate(edges):
        _add_edge(G, i, entry, source)
    return G


def _add_edge(G: nx.Graph, i: int, entry: object, source: str) -> None:
    if not isinstance(entry, dict):
        raise TopologyError(f"{source}: edges[{i}]: expected a mapping like {_EDGE_EXAMPLE}")
    for key in ("u", "v"):
        if key not in entry:
            raise TopologyError(f"{source}: edges[{i}]: missing '{key}'")
    u = _name(entry["u"], f"{source}: edges[{i}]: u")
    v = _name(entry["v"], f"{source}: edges[{i}]: v")
    where = f"{source}: edge ({u}, {v})"
    for end in (u, v):
        if end not in G:
            raise TopologyError(f"{where}: unknown node {end!r} (not listed in 'nodes')")
    if G.has_edge(u, v):
        raise TopologyError(f"{where}: listed twice")
    if "bandwidth" not in entry:
        raise TopologyError(f"{where}: missing 'bandwidth'")
    try:
        bw = parse(entry["bandwidth"], "bandwidth")
        lat = parse(entry.get("latency", 0.0), "duration")
    except UnitError as err:
        key = "bandwidth" if _fails(entry["bandwidth"], "bandwidth") else "latency"
        raise TopologyError(f"{where}: {key}: {err}") from None
    extra = {k: val for k, val in entry.items() if k not in ("u", "v", "bandwidth", "latency")}
    G.add_edge(u, v, bandwidth=bw, latency=lat, **extra)


def _fails(value: object, kind: str) -> bool:
    try:
        parse(value, kind)
    except UnitError:
        return True
    return False


def _name(value: object, where: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Integral) and not isinstance(value, bool):
        return str(value)
    raise TopologyError(f"{where}: expected a node name (a string), got {_short(value)}")


def _fill_defaults(G: nx.Graph) -> None:
    per_host: Counter = Counter()
    for d in devices(G):
        data = G.nodes[d]
        data.setdefault("host", data["rank"])
        per_host[data["host"]] += 1
    G.graph.setdefault("kind", "file")
    G.graph.setdefault("hosts", len(per_host))
    G.graph.setdefault("devices_per_host", max(per_host.values()))


def _edge_record(u: object, v: object, data: dict, source: str) -> dict:
    where = f"{source}: edge ({u}, {v})"
    attrs = _plain(data, where)
    first = {"u": str(u), "v": str(v), "bandwidth": attrs.pop("bandwidth")}
    return {**first, "latency": attrs.pop("latency"), **attrs}


def _plain(value: object, where: str) -> object:
    """Return ``value`` as plain YAML data (numpy scalars to Python, tuples to lists)."""
    if value is None or isinstance(value, str | bool):
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, f"{where}: {k!r}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    raise TopologyError(f"{where}: cannot write {_short(value)} to YAML")


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary sibling renamed into place (never half-written)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
