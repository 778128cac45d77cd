"""Link classes: how much of a link's line rate software reaches, and what each message costs on top.

A link may declare a ``class`` (edge attribute, or ``class:`` on a config ``link``). The class
gives two defaults, overridable per link:

* ``efficiency`` — the achievable fraction of ``bandwidth`` (0 < e <= 1): flows see
  ``bandwidth * efficiency`` (protocol headers, flow control, the copy engine's limits);
* ``software_latency`` — seconds a message pays once, on top of the per-hop ``latency`` (the
  communication library's per-step cost). A message pays the largest software latency of the
  links on its route, once: the slowest stack it crosses.

A link that declares no class (every existing preset and config) has efficiency 1.0 and
software latency 0, so results without ``class`` are exactly the line-rate model. The
per-collective ``launch_latency`` (``communication.launch_latency``) is not a link property;
:data:`NCCL_RING_LAUNCH_LATENCY` is the cited value to type there.

Each default below names its source; "assumption" says plainly where no published measurement
was used. References:

.. [nccl-h100] NVIDIA/nccl-tests#212 and #290: NCCL maintainers' 8×H100 (NVLink 4, NVSwitch)
   all_reduce_perf ring busbw ≈ 370 GB/s against the 450 GB/s per-direction line rate.
.. [nccl-ib] NVIDIA/nccl#412 and NVIDIA/nccl-tests#29: per-NIC inter-node busbw ≈ 46–48 GB/s on
   NDR 400 Gb/s (50 GB/s), ≈ 24 GB/s on HDR 200 Gb/s (25 GB/s), ≈ 12.2 GB/s on EDR 100 Gb/s
   (12.5 GB/s).
.. [nccl-tuning] NVIDIA/nccl ``src/graph/tuning.cc`` (as stored at commit 01afd20): the tuner's
   ``hwLat`` per ring step, Ring/Simple protocol, NVLink 3.4 µs, PCI 5.7 µs, network 9.6 µs, and
   ``baseLat`` Ring/Simple 8.4 µs per collective. Later NCCL versions retune these numbers.
.. [nccl-nvls] NVIDIA/nccl ``src/graph/tuning.cc`` (2.19+; ``src/tuning/nvls.cc`` later):
   ``nvlsEfficiency`` = 0.85 on Hopper, 0.74 on Blackwell, 0 before Hopper (no NVLS): the fraction
   of the NVLink bandwidth NCCL's tuner expects an NVLS (in-switch reduction) collective to reach.

Switches that reduce
--------------------
A switch node may declare ``reduces: true`` (NVLink SHARP in an NVSwitch, InfiniBand SHARP): the
``nvls`` allreduce reduces in it. ``reduce_efficiency`` (0 < e <= 1, default 1) is the fraction of
its ports' rate its reduce/multicast engine reaches: traffic to and from the reducing switch takes
``1/e`` as long. :data:`NVLS_HOPPER_EFFICIENCY` is the cited value for an H100 NVSwitch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

__all__ = ["CLASSES", "EDGE_KEYS", "NCCL_RING_LAUNCH_LATENCY", "NODE_KEYS", "NVLS_HOPPER_EFFICIENCY", "LinkClass",
           "applied", "check_edge", "check_node", "effective", "mark_reducing", "reducing_switch",
           "reduction_summary", "set_class"]


@dataclass(frozen=True)
class LinkClass:
    efficiency: float          # achievable fraction of the line rate, 0 < e <= 1
    software_latency: float    # seconds a message pays once, on top of the hops' latency
    source: str                # where the two numbers come from


#: class name -> defaults; a link's own ``efficiency`` / ``software_latency`` override them
CLASSES: dict[str, LinkClass] = {
    "generic": LinkClass(1.0, 0.0, "no overhead modelled: the line-rate model"),
    # 370 / 450 GB/s [nccl-h100]; 3.4 us hwLat NVLink Ring/Simple [nccl-tuning]
    "nvlink": LinkClass(370.0 / 450.0, 3.4e-6, "nccl-tests#212/#290 (busbw); nccl tuning.cc hwLat (latency)"),
    # efficiency: assumption (PCIe TLP/DLLP overhead at 256 B payloads plus DMA limits, ~80 % typical);
    # 5.7 us hwLat PCI Ring/Simple [nccl-tuning]
    "pcie": LinkClass(0.80, 5.7e-6, "efficiency: assumption; latency: nccl tuning.cc hwLat PCI"),
    # 47 / 50 GB/s (midpoint of 46-48) [nccl-ib]; 9.6 us hwLat NET Ring/Simple [nccl-tuning]
    "infiniband_ndr": LinkClass(47.0 / 50.0, 9.6e-6, "nccl#412, nccl-tests#29 (busbw); nccl tuning.cc hwLat NET"),
    # 24 / 25 GB/s [nccl-ib]; NET latency as above
    "infiniband_hdr": LinkClass(24.0 / 25.0, 9.6e-6, "nccl#412, nccl-tests#29 (busbw); nccl tuning.cc hwLat NET"),
    # 12.2 / 12.5 GB/s [nccl-ib]; NET latency as above
    "infiniband_edr": LinkClass(12.2 / 12.5, 9.6e-6, "nccl#412, nccl-tests#29 (busbw); nccl tuning.cc hwLat NET"),
    # efficiency: assumption (RDMA like InfiniBand, a little below it for Ethernet framing and
    # congestion control); NCCL times RoCE with the same NET hwLat [nccl-tuning]
    "roce": LinkClass(0.90, 9.6e-6, "efficiency: assumption; latency: nccl tuning.cc hwLat NET"),
    # both assumption: kernel TCP sockets reach well below line rate and add tens of microseconds
    "tcp": LinkClass(0.70, 20e-6, "assumption"),
}

#: seconds one collective pays once to launch: baseLat Ring/Simple of [nccl-tuning] (8.4 us);
#: a value to type as ``communication.launch_latency``, never applied by default
NCCL_RING_LAUNCH_LATENCY = 8.4e-6

#: the optional edge attributes this module reads
EDGE_KEYS = ("class", "efficiency", "software_latency")

#: the optional switch-node attributes this module reads
NODE_KEYS = ("reduces", "reduce_efficiency")

#: nvlsEfficiency on Hopper [nccl-nvls]: a value to give an H100 NVSwitch as ``reduce_efficiency``
NVLS_HOPPER_EFFICIENCY = 0.85


def check_node(data: dict) -> str | None:
    """What is wrong with a node's reduction attributes (one phrase), or None."""
    reduces, eff = data.get("reduces"), data.get("reduce_efficiency")
    if reduces is not None and not isinstance(reduces, bool):
        return f"'reduces' must be true or false, got {reduces!r}"
    if reduces and data.get("role") != "switch":
        return f"'reduces: true' applies to a switch, not a {data.get('role')}"
    if eff is not None:
        if not reduces:
            return "'reduce_efficiency' applies to a switch with reduces: true"
        if not (_number(eff) and 0 < eff <= 1):
            return f"'reduce_efficiency' must be a number in (0, 1], got {eff!r}"
    return None


def mark_reducing(graph, switches, efficiency: float) -> None:
    """Mark these switch nodes as reducing in the switch at ``efficiency`` of their ports' rate."""
    for n in switches:
        graph.nodes[n]["reduces"] = True
        graph.nodes[n]["reduce_efficiency"] = float(efficiency)


def reducing_switch(graph, device_nodes) -> tuple[object, float] | None:
    """The reducing switch every one of ``device_nodes`` is attached to, and its reduce efficiency.

    None when there is none (one switch reduces for all of them: NVLS inside an NVSwitch
    domain, SHARP inside one switch; trees of reducing switches are not modelled). Among
    several, the first in graph order.
    """
    nodes = list(device_nodes)
    if not nodes:
        return None
    common = [n for n in graph.adj[nodes[0]] if graph.nodes[n].get("reduces") is True]
    for d in nodes[1:]:
        adj = graph.adj[d]
        common = [n for n in common if n in adj]
        if not common:
            return None
    if not common:
        return None
    return common[0], float(graph.nodes[common[0]].get("reduce_efficiency", 1.0))


def reduction_summary(graph) -> dict[str, float | list[float]]:
    """``{"reducing_switches": count, "reduce_efficiency": e or sorted distinct values}``; {} when none."""
    effs = sorted({float(d.get("reduce_efficiency", 1.0)) for _, d in graph.nodes(data=True) if d.get("reduces")})
    if not effs:
        return {}
    count = sum(1 for _, d in graph.nodes(data=True) if d.get("reduces"))
    return {"reducing_switches": count, "reduce_efficiency": effs[0] if len(effs) == 1 else effs}


def effective(data: dict) -> tuple[float, float]:
    """``(efficiency, software_latency)`` of an edge's attributes: its own values, else its class's, else (1, 0)."""
    cls = CLASSES.get(data.get("class", "generic"), CLASSES["generic"])
    eff = data.get("efficiency")
    soft = data.get("software_latency")
    return (cls.efficiency if eff is None else float(eff),
            cls.software_latency if soft is None else float(soft))


def check_edge(data: dict) -> str | None:
    """What is wrong with an edge's class attributes (one phrase), or None."""
    cls = data.get("class")
    if cls is not None and cls not in CLASSES:
        return f"'class' must be one of {', '.join(CLASSES)}, got {cls!r}"
    eff = data.get("efficiency")
    if eff is not None and not (_number(eff) and 0 < eff <= 1):
        return f"'efficiency' must be a number in (0, 1], got {eff!r}"
    soft = data.get("software_latency")
    if soft is not None and not (_number(soft) and soft >= 0):
        return f"'software_latency' must be a non-negative finite number of seconds, got {soft!r}"
    return None


def set_class(data: dict, link_class: str | None, efficiency: float | None, software_latency: float | None) -> None:
    """Write the given class attributes onto one edge's data (``None``: leave that attribute unset)."""
    for key, value in zip(EDGE_KEYS, (link_class, efficiency, software_latency), strict=True):
        if value is not None:
            data[key] = value


def applied(graph) -> dict[str, dict[str, float | list[float]]]:
    """Per declared class on ``graph``'s edges: the efficiency and software latency applied.

    ``{}`` when no edge declares a class or an override (the line-rate model). A class whose
    links were given different values maps to the sorted distinct values.
    """
    seen: dict[str, tuple[set, set]] = {}
    for _, _, data in graph.edges(data=True):
        if not any(k in data for k in EDGE_KEYS):
            continue
        eff, soft = effective(data)
        effs, softs = seen.setdefault(str(data.get("class", "generic")), (set(), set()))
        effs.add(eff)
        softs.add(soft)
    return {name: {"efficiency": _one(effs), "software_latency_s": _one(softs)}
            for name, (effs, softs) in sorted(seen.items())}


def _one(values: set) -> float | list[float]:
    return next(iter(values)) if len(values) == 1 else sorted(values)


def _number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
