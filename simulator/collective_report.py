"""Rows for ``trainsim collective``: simulated vs analytic time, algbw and busbw, and a plot.

algbw = size / time; busbw = algbw × the nccl-tests factor of the collective
(allreduce 2(p-1)/p; allgather, reduce-scatter, all-to-all (p-1)/p; broadcast,
reduce 1), so predictions are in the same currency as NCCL's measurements.
The analytic column is the α-β-γ cost of the same schedule with α the path
latency and β the inverse bottleneck bandwidth between the first and last rank:
on an ideal switch it equals the simulation exactly; elsewhere the gap is congestion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import topologies
from simulator import collectives
from topologies import link_classes
from topologies.units import UnitError, parse

from .errors import TrainsimInputError
from .network import Network
from .topology_report import make_topology
from .tuner import best_algorithm

__all__ = ["collective_rows", "plot_rows"]


def _path_alpha_beta(net: Network, a: int, b: int) -> tuple[float, float]:
    r = net.routing
    links = r.path_links(r.device_node(a), r.device_node(b))
    return r.route_latency(links), float(1.0 / r.capacity[links].min())


def _switch_alpha_beta(net: Network, devices: int) -> tuple[float, float]:
    """α and β from device 0 to the switch reducing for the first ``devices`` devices (β at its efficiency)."""
    r = net.routing
    node, efficiency = link_classes.reducing_switch(r.graph, r.devices[:devices])
    links = r.path_links(r.device_node(0), r.device_node(r.endpoint(node)))
    return r.route_latency(links), float(1.0 / r.capacity[links].min()) / efficiency


def _one(net: Network, info: dict[str, Any], algorithm: str, collective: str, p: int, size: int,
         gamma: float, options: dict[str, Any]) -> dict[str, Any]:
    mine = _taken(options, algorithm, collective)
    info = {**info, **mine}
    try:
        collectives.check_options(algorithm, mine, collective)
        sched = collectives.schedule(algorithm, p, size, collective=collective, **info)
    except (collectives.ScheduleError, ValueError) as e:
        raise TrainsimInputError(f"--algorithm {algorithm}: {e}") from None
    devices = sched.ranks - sched.switches    # a switch rank is the reducing switch, not a device
    if devices > net.devices:
        raise TrainsimInputError(f"--ranks {p}: the schedule needs {devices} devices, "
                                 f"the topology has {net.devices}")
    if not net.supports(sched, np.arange(devices)):
        raise TrainsimInputError(f"--algorithm {algorithm}: reduces in a switch, but no switch of this topology "
                                 "reduces (--topology switch --param reduce_efficiency=0.85, or reduces: true on a "
                                 "switch node of a topology file)")
    simulated = net.schedule_time(sched, np.arange(devices))
    alpha, beta = _path_alpha_beta(net, 0, devices - 1) if not sched.switches else _switch_alpha_beta(net, devices)
    analytic = collectives.analytic_time(algorithm, p, size, alpha, beta, gamma, collective=collective, **info)
    analytic += net.launch_latency
    algbw = size / simulated / 1e9 if simulated > 0 else float("inf")
    extra = {"options": ", ".join(f"{k}={v}" for k, v in mine.items())} if mine else {}
    return {"algorithm": algorithm, **extra, "collective": collective, "ranks": p, "size_bytes": size,
            "simulated_s": simulated, "analytic_s": analytic, "algbw_GBps": algbw,
            "busbw_GBps": algbw * collectives.bus_factor(collective, p)}


def collective_rows(*, algorithm: str, collective: str, ranks: list[int], sizes: list[int],
                    topology: str, bandwidth: str, latency: str, params: list[str], gamma: float,
                    network: str) -> list[dict[str, Any]]:
    known = collectives.algorithms(collective)
    if not known:
        valid = sorted({c for c, _ in collectives.ALGORITHMS})
        raise TrainsimInputError(f"--collective: expected one of {', '.join(valid)}, got {collective!r}")
    names = known if algorithm == "all" else [algorithm]
    for name in names:
        if name not in known and name != "auto":
            raise TrainsimInputError(f"--algorithm: expected auto, all or one of {', '.join(known)}, got {name!r}")
    options, params = split_params(params, collective, algorithm)
    params, classes, launch = _link_class_params(params)
    rows = []
    for p in ranks:
        graph = _topology_for(topology, p, bandwidth, latency, params)
        _set_classes(graph, classes)
        net = Network(graph, network, gamma=gamma, launch_latency=launch)
        info = {"devices_per_node": int(graph.graph.get("devices_per_host", 1))}
        for name in names:
            for size in sizes:
                if name == "auto":
                    chosen = best_algorithm(net, p, [size], collective=collective, options=options, **info).algorithm
                    rows.append({**_one(net, info, chosen, collective, p, size, gamma, options), "chosen_by": "auto"})
                    continue
                try:
                    rows.append(_one(net, info, name, collective, p, size, gamma, options))
                except TrainsimInputError:
                    if algorithm != "all":
                        raise  # with 'all', skip algorithms that cannot run on p ranks
    if not rows:
        raise TrainsimInputError(f"--ranks: no {collective} algorithm supports these rank counts")
    return rows


def split_params(params: list[str], collective: str, algorithm: str) -> tuple[dict[str, Any], list[str]]:
    """``--param KEY=VALUE`` words: algorithm options (keys an algorithm of ``collective`` takes,
    :data:`simulator.collectives.OPTIONS`) and the rest, which go to the topology builder.

    An option none of the chosen algorithms takes is refused in one line (``auto``/``all``: each
    algorithm gets the options it takes). Values are integers when they read as one, else names.
    """
    options: dict[str, Any] = {}
    rest = []
    known = {key for (coll, _), keys in collectives.OPTIONS.items() if coll == collective for key in keys}
    for word in params:
        key, _, value = (part.strip() for part in word.partition("="))
        if key not in known:
            rest.append(word)
            continue
        options[key] = int(value) if value.lstrip("-").isdigit() else value
    if options and algorithm not in ("auto", "all"):
        try:
            collectives.check_options(algorithm, options, collective)
        except collectives.ScheduleError as e:
            raise TrainsimInputError(f"--param: {e}") from None
    return options, rest


#: --param words that set link classes (topologies.link_classes) rather than builder parameters:
#: ``class``, ``efficiency``, ``software_latency`` for every link, or with ``intra_`` / ``inter_`` for the
#: device links / the rest of a hierarchical topology
_CLASS_WORDS = {f"{scope}{key}": (scope.rstrip("_") or "all", key)
                for scope in ("", "intra_", "inter_") for key in link_classes.EDGE_KEYS}


def _link_class_params(params: list[str]) -> tuple[list[str], dict[str, dict[str, Any]], float]:
    """Split off the link-class words and ``launch_latency``; values parsed, each error one line."""
    rest, classes, launch = [], {}, 0.0
    for word in params:
        key, _, value = (part.strip() for part in word.partition("="))
        try:
            if key == "launch_latency":
                launch = parse(value, "duration")
                continue
            if key not in _CLASS_WORDS:
                rest.append(word)
                continue
            scope, attr = _CLASS_WORDS[key]
            if attr == "efficiency":
                parsed: Any = float(value)
            elif attr == "software_latency":
                parsed = parse(value, "duration")
            else:
                parsed = value
        except (UnitError, ValueError) as e:
            raise TrainsimInputError(f"--param {key}: {getattr(e, 'expected', e)}") from None
        wrong = link_classes.check_edge({attr: parsed})
        if wrong:
            raise TrainsimInputError(f"--param {key}: {wrong}")
        classes.setdefault(scope, {})[attr] = parsed
    return rest, classes, launch


def _set_classes(graph, classes: dict[str, dict[str, Any]]) -> None:
    if not classes:
        return
    if ("intra" in classes or "inter" in classes) and graph.graph.get("kind") != "hierarchical":
        raise TrainsimInputError("--param intra_*/inter_* link classes apply to --topology hierarchical; "
                                 "use class=, efficiency=, software_latency= for every link")
    role = dict(graph.nodes(data="role"))
    for u, v, data in graph.edges(data=True):
        data.update(classes.get("all", {}))
        data.update(classes.get("intra" if "device" in (role[u], role[v]) else "inter", {}))


def _taken(options: dict[str, Any], algorithm: str, collective: str) -> dict[str, Any]:
    takes = collectives.OPTIONS.get((collective, algorithm), ())
    return {k: v for k, v in options.items() if k in takes}


def _topology_for(kind: str, p: int, bandwidth: str, latency: str, params: list[str]):
    defaults: dict[str, Any] = {}
    if kind in ("ring", "switch"):
        defaults = {"n": p, "bandwidth": bandwidth, "latency": latency}
    elif kind == "hierarchical":  # --bandwidth/--latency are the network between servers; --param sets the rest
        given = {w.partition("=")[0].strip() for w in params}
        defaults = {"inter_bandwidth": bandwidth, "inter_latency": latency, "inter_kind": "switch"}
        if "nodes" not in given and "devices_per_node" in given:
            dpn = next(w.partition("=")[2] for w in params if w.partition("=")[0].strip() == "devices_per_node")
            if dpn.strip().isdigit() and int(dpn) > 0 and p % int(dpn) == 0:
                defaults["nodes"] = p // int(dpn)
        if "inter_kind" in given:
            del defaults["inter_kind"]
    elif kind in topologies.KINDS:
        defaults = {"bandwidth": bandwidth, "latency": latency}
    return make_topology(kind, params, defaults)


def plot_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """Log-log time vs size, one line per (algorithm, ranks): the α/β crossover is visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    keys = sorted({(r["algorithm"], r["ranks"]) for r in rows})
    for alg, p in keys:
        pts = [(r["size_bytes"], r["simulated_s"]) for r in rows if (r["algorithm"], r["ranks"]) == (alg, p)]
        xs, ys = zip(*sorted(pts), strict=True)
        ax.loglog(xs, ys, marker="o", ms=3, label=f"{alg} (p={p})")
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("simulated time (s)")
    ax.set_title(f"{rows[0]['collective']}: time vs size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
