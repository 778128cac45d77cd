"""Build a topology from CLI words and describe or draw it (``trainsim topology``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx

import topologies
from topologies.units import UnitError, parse

from .errors import TrainsimInputError

__all__ = ["describe_topology", "draw", "make_topology", "parse_params"]


def _value(text: str) -> Any:
    if "," in text:
        return tuple(_value(t) for t in text.split(",") if t)
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_params(words: list[str]) -> dict[str, Any]:
    """``key=value`` words from a command line; bandwidths and latencies need their units (``latency=1``
    would be one second)."""
    params: dict[str, Any] = {}
    for word in words:
        key, sep, text = word.partition("=")
        if not sep or not key:
            raise TrainsimInputError(f"topology parameter {word!r}: expected key=value, e.g. k=4")
        if key in params:
            raise TrainsimInputError(f"topology parameter {key}: given twice")
        kind = "bandwidth" if "bandwidth" in key else "duration" if "latency" in key else None
        if kind is not None:
            try:
                params[key] = parse(text, kind, bare=False)
            except UnitError as e:
                raise TrainsimInputError(f"topology parameter {key}: {e}") from None
        else:
            params[key] = _value(text)
    return params


def make_topology(kind: str, words: list[str], defaults: dict[str, Any] | None = None) -> nx.Graph:
    """``kind`` is a registered family or a path to a topology file."""
    try:
        if kind not in topologies.KINDS and (Path(kind).suffix in {".yaml", ".yml", ".graphml"}):
            return topologies.load(kind)
        given = [f"{k}={v}" for k, v in (defaults or {}).items()]
        params = {**parse_params(given), **parse_params(words)}
        graph = topologies.build(kind, **params)
        topologies.check(graph, source=kind)
        return graph
    except topologies.TopologyError as e:
        raise TrainsimInputError(str(e)) from None


def describe_topology(graph: nx.Graph) -> dict[str, Any]:
    roles: dict[str, int] = {}
    for _, role in graph.nodes(data="role"):
        roles[role] = roles.get(role, 0) + 1
    bandwidths = [d["bandwidth"] for _, _, d in graph.edges(data=True)]
    return {
        "kind": graph.graph.get("kind", "file"),
        "devices": roles.get("device", 0),
        "switches": roles.get("switch", 0),
        "nics": roles.get("nic", 0),
        "links": graph.number_of_edges(),
        "hosts": graph.graph.get("hosts"),
        "devices_per_host": graph.graph.get("devices_per_host"),
        "min_link_bandwidth_Bps": min(bandwidths),
        "max_link_bandwidth_Bps": max(bandwidths),
        "diameter_hops": nx.diameter(graph) if graph.number_of_nodes() <= 2000 else None,
    }


_TIER = {"intra": 1, "edge": 3, "leaf": 3, "agg": 4, "spine": 5, "core": 5}


def _layout(graph: nx.Graph) -> dict:
    """Rows by tier: devices at the bottom, then NICs and switches up to the core/spine."""
    if graph.graph.get("kind") in {"ring", "torus"}:
        return nx.circular_layout(graph) if graph.graph["kind"] == "ring" else nx.spring_layout(graph, seed=0)
    rows: dict[int, list] = {}
    for order, (node, data) in enumerate(graph.nodes(data=True)):
        role = data.get("role")
        tier = 0 if role == "device" else 2 if role == "nic" else _TIER.get(data.get("level"), 3)
        key = (data.get("host", data.get("pod", 0)), data.get("rank", order), order)
        rows.setdefault(tier, []).append((key, node))
    pos = {}
    for y, tier in enumerate(sorted(rows)):
        members = sorted(rows[tier])
        for i, (_, node) in enumerate(members):
            pos[node] = ((i + 0.5) / len(members), float(y))
    return pos


def draw(graph: nx.Graph, path: Path) -> None:
    """PNG drawing: devices, NICs and switches coloured by role, layered when levels exist."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"device": "tab:green", "switch": "tab:blue", "nic": "tab:orange"}
    pos = _layout(graph)
    fig, ax = plt.subplots(figsize=(8, 6))
    nx.draw_networkx(graph, pos, ax=ax, with_labels=graph.number_of_nodes() <= 64, font_size=6,
                     node_size=80, node_color=[colours.get(r, "grey") for _, r in graph.nodes(data="role")],
                     edge_color="lightgrey")
    ax.set_title(f"{graph.graph.get('kind', 'topology')}: {graph.number_of_nodes()} nodes")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
