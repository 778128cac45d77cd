"""Cluster topologies as networkx graphs: builders by family, a registry, file I/O.

``build(kind, **params)`` makes a topology from the ``KINDS`` table (one family per
module: ``ring``, ``switch``, ``torus``, ``fat_tree``, ``leaf_spine``,
``hierarchical``); ``load(path)`` reads one from YAML or GraphML and ``save``
writes the YAML form. Every graph follows the conventions of
:mod:`topologies.graph` (roles, ranks, link ``bandwidth`` in bytes/s and
``latency`` in seconds) and ``check`` enforces them.

This package imports nothing else of trainsim: the simulator imports it.

>>> G = build("fat_tree", k=4, bandwidth="100Gbps", latency="1us")
>>> len(devices(G)), G.graph["kind"]
(16, 'fat_tree')
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import networkx as nx

from .fat_tree import fat_tree
from .graph import TopologyError, check, devices
from .hierarchical import hierarchical
from .io import load, save
from .leaf_spine import leaf_spine
from .ring import ring
from .switch import switch
from .torus import torus

__all__ = ["KINDS", "TopologyError", "build", "check", "devices", "load", "save"]

#: topology kind -> builder; ``build``, the config schema and the CLI read this one table
KINDS: dict[str, Callable[..., nx.Graph]] = {
    "ring": ring,
    "switch": switch,
    "torus": torus,
    "fat_tree": fat_tree,
    "leaf_spine": leaf_spine,
    "hierarchical": hierarchical,
}


def build(kind: str, **params: object) -> nx.Graph:
    """Build a topology of family ``kind`` from keyword parameters.

    Parameters
    ----------
    kind : str
        A key of ``KINDS``.
    **params
        The builder's parameters, by name; bandwidths and latencies may be SI
        floats or unit strings (``"100Gbps"``, ``"1us"``).

    Raises
    ------
    TopologyError
        For an unknown kind (listing the valid ones), a missing or unexpected
        parameter, or a bad value (naming the parameter).

    Examples
    --------
    >>> build("switch", n=4, bandwidth="10GB/s", latency="1us").number_of_edges()
    4
    >>> build("mesh", n=4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    topologies.graph.TopologyError: unknown topology kind 'mesh'; expected one of: fat_tree, ...
    >>> build("ring", bandwidth=1e9)
    Traceback (most recent call last):
    ...
    topologies.graph.TopologyError: ring: missing parameter 'n'
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise TopologyError(
            f"unknown topology kind {kind!r}; expected one of: {', '.join(sorted(KINDS))}"
        )
    builder = KINDS[kind]
    _check_names(kind, inspect.signature(builder), params)
    return builder(**params)


def _check_names(kind: str, sig: inspect.Signature, params: dict) -> None:
    named = {
        name: p
        for name, p in sig.parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    for name, p in named.items():
        if p.default is p.empty and name not in params:
            raise TopologyError(f"{kind}: missing parameter {name!r}")
    open_ended = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    for name in params:
        if name not in named and not open_ended:
            raise TopologyError(
                f"{kind}: unexpected parameter {name!r} (accepts: {', '.join(named)})"
            )
