"""What fails and when, and the cluster that is left: the fault stream and the job variants.

``FaultSource`` merges the scheduled faults of ``faults.scheduled`` with one renewal
process per component (device rank, link, switch, parameter server): a component's
time to failure is drawn from its class's law (exponential with an MTBF, or Weibull
with shape and scale) from the named stream ``faults.<class>``, indexed by the
component and by how many parts have stood in its place, so adding a class or a
component never changes another's draws. A part that is repaired or replaced starts
a fresh draw (``renew``); a part that stays failed draws nothing more.

A ``Variant`` is the cluster a stretch of training runs on: links and switches down,
links degraded (bandwidth × factor), device ranks dropped (elastic training goes on
without them; the graph loses those devices and the rest are renumbered in order),
and the parameter servers still up. ``Variant.job_inputs`` turns it into the config
and graph ``build_job`` elaborates, so a variant is timed by the same engine as a
healthy job. ``cut_off`` finds devices a down link or switch separates from the rest
(a partition is a failure of those devices, for the recovery policy to handle).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from simulator.config import Config, ConfigError
from simulator.config.models import FailureLaw, Faults
from simulator.rng import Streams

__all__ = ["Fault", "FaultSource", "Variant", "cut_off", "edge_key", "mean_time_to_failure"]


def edge_key(u: Any, v: Any) -> tuple[str, str]:
    a, b = str(u), str(v)
    return (a, b) if a <= b else (b, a)


def mean_time_to_failure(law: FailureLaw) -> float:
    """E[time to failure] of one component: the MTBF, or λ·Γ(1 + 1/k) for a Weibull law."""
    if law.distribution == "exponential":
        return float(law.mtbf)
    return float(law.scale) * math.gamma(1.0 + 1.0 / float(law.shape))


@dataclass(frozen=True, order=True)
class Fault:
    """One event: a component fails (``kind``: device, link, switch, server) or is repaired (``repair``)."""

    at: float
    seq: int
    kind: str
    target: Any = field(compare=False)          # rank | (node, node) | switch name | server index
    mode: str = field(default="down", compare=False)       # down | degrade (links, switches)
    factor: float = field(default=1.0, compare=False)
    repaired: str = field(default="", compare=False)       # repair: the kind of part repaired
    origin: str = field(default="random", compare=False)   # random | scheduled | partition

    def describe(self) -> str:
        what = self.repaired if self.kind == "repair" else self.kind
        target = "-".join(self.target) if isinstance(self.target, tuple) else str(self.target)
        return f"{what} {target}"


class FaultSource:
    """Scheduled faults and per-component renewal processes, in time order (drawn lazily)."""

    def __init__(self, faults: Faults, streams: Streams, *, devices: int, graph: nx.Graph, servers: int):
        self.faults, self.streams = faults, streams
        self._heap: list[Fault] = []
        self._seq = 0
        self._generation: dict[tuple[str, Any], int] = {}
        self._live: dict[tuple[str, Any], int] = {}       # the seq of a component's pending failure
        self.on_push: Any = None                           # called with each new event (wakes a waiting reader)
        switches = sorted(str(n) for n, d in graph.nodes(data=True) if d.get("role") == "switch")
        links = sorted(edge_key(u, v) for u, v in graph.edges)
        names = {str(n) for n in graph.nodes}
        self.laws = {"device": faults.devices, "link": faults.links, "switch": faults.switches,
                     "server": faults.servers}
        self.population = {"device": list(range(devices)), "link": links, "switch": switches,
                           "server": list(range(servers))}
        self._check_scheduled(devices, names, set(links), set(switches), servers)
        for event in faults.scheduled:
            t = event.target
            kind = {"rank": "device"}.get(t.kind, t.kind)
            target = t.rank if kind == "device" else edge_key(*t.link) if kind == "link" else \
                t.switch if kind == "switch" else t.server
            self._push(float(event.at), kind, target, mode=event.mode, factor=event.factor or 1.0,
                       origin="scheduled")
        for kind, law in self.laws.items():
            if law is None:
                continue
            index = self.population[kind]
            first = self._draws(kind, law, len(index))
            for i, target in enumerate(index):
                self._generation[(kind, target)] = 1
                self._push_random(float(first[i]), kind, target)

    def _check_scheduled(self, devices: int, names: set[str], links: set, switches: set, servers: int) -> None:
        for i, event in enumerate(self.faults.scheduled):
            t, where = event.target, f"faults.scheduled.{i}.target"
            if t.rank is not None and t.rank >= devices:
                raise ConfigError(f"{where}.rank: {t.rank} is not a device of this job (ranks 0..{devices - 1})")
            if t.link is not None:
                missing = [n for n in t.link if n not in names]
                if missing:
                    raise ConfigError(f"{where}.link: no node {missing[0]!r} in the topology")
                if edge_key(*t.link) not in links:
                    raise ConfigError(f"{where}.link: {t.link[0]} and {t.link[1]} are not joined by a link")
            if t.switch is not None and t.switch not in switches:
                raise ConfigError(f"{where}.switch: no switch {t.switch!r} in the topology")
            if t.server is not None and t.server >= servers:
                raise ConfigError(f"{where}.server: {t.server} is not a server (servers 0..{servers - 1})")

    def _draws(self, kind: str, law: FailureLaw, n: int, *index: Any) -> np.ndarray:
        rng = self.streams.get(f"faults.{kind}", *index)
        if law.distribution == "exponential":
            return rng.exponential(float(law.mtbf), size=n)
        return float(law.scale) * rng.weibull(float(law.shape), size=n)

    def _push(self, at: float, kind: str, target: Any, **info: Any) -> Fault:
        event = Fault(at, self._seq, kind, target, **info)
        self._seq += 1
        heapq.heappush(self._heap, event)
        if self.on_push is not None:
            self.on_push(event)
        return event

    def _push_random(self, at: float, kind: str, target: Any) -> None:
        law = self.laws[kind]
        mode = getattr(law, "mode", "down")
        factor = getattr(law, "factor", None) or 1.0
        self._live[(kind, target)] = self._push(at, kind, target, mode=mode, factor=factor).seq

    def renew(self, kind: str, target: Any, at: float) -> None:
        """A new (or repaired) part stands at ``target`` from ``at``: draw its time to failure."""
        law = self.laws.get(kind)
        if law is None:
            return
        gen = self._generation.get((kind, target), 0) + 1
        self._generation[(kind, target)] = gen
        index = self.population[kind].index(target) if kind in ("link", "switch") else target
        self._push_random(at + float(self._draws(kind, law, 1, index, gen)[0]), kind, target)

    def repair(self, fault: Fault, at: float) -> None:
        """Schedule ``fault``'s part back in service ``faults.repair`` after ``at`` (nothing if null)."""
        if self.faults.repair is not None:
            self._push(at + float(self.faults.repair), "repair", fault.target, repaired=fault.kind,
                       mode=fault.mode, origin=fault.origin)

    def next_time(self) -> float:
        self._drop_stale()
        return self._heap[0].at if self._heap else math.inf

    def pop(self) -> Fault:
        self._drop_stale()
        return heapq.heappop(self._heap)

    def _drop_stale(self) -> None:
        """A random failure is stale once its part was replaced (a renewed draw supersedes it)."""
        while self._heap:
            ev = self._heap[0]
            if ev.origin == "random" and ev.kind != "repair" and self._live.get((ev.kind, ev.target)) != ev.seq:
                heapq.heappop(self._heap)
                continue
            return

    def retire(self, kind: str, target: Any) -> None:
        """``target`` has failed: its pending random failure (if any) no longer applies."""
        self._live.pop((kind, target), None)


@dataclass(frozen=True)
class Variant:
    """The cluster one stretch of training runs on (hashable: timings are cached per variant)."""

    down_links: frozenset = frozenset()
    down_switches: frozenset = frozenset()
    degraded: tuple = ()                    # ((edge, factor), ...), sorted
    dropped: frozenset = frozenset()        # device ranks elastic training goes on without
    replicas: int = 0                       # data-parallel replicas that train (0: the config's)
    servers: int = 0                        # parameter servers up (0: the config's)
    batch_per_device: int = 0               # elastic with scale: global (0: the config's)

    @property
    def healthy(self) -> bool:
        return self == Variant()

    def describe(self) -> str:
        parts = [f"links down {sorted(self.down_links)}" if self.down_links else "",
                 f"switches down {sorted(self.down_switches)}" if self.down_switches else "",
                 f"{len(self.degraded)} links degraded" if self.degraded else "",
                 f"devices {sorted(self.dropped)} dropped" if self.dropped else "",
                 f"{self.servers} servers" if self.servers else ""]
        return ", ".join(p for p in parts if p) or "no failure"

    def graph(self, base: nx.Graph) -> nx.Graph:
        """``base`` without what is down, with degraded links slower and dropped devices removed."""
        if self.healthy:
            return base
        g = base.copy()
        g.remove_edges_from([e for e in g.edges if edge_key(*e) in self.down_links])
        g.remove_nodes_from([n for n in g.nodes if str(n) in self.down_switches])
        factors = dict(self.degraded)
        for u, v, data in g.edges(data=True):
            f = factors.get(edge_key(u, v))
            if f is not None:
                data["bandwidth"] = float(data["bandwidth"]) * f
        if self.dropped:
            devices = sorted((d["rank"], n) for n, d in g.nodes(data=True) if d.get("role") == "device")
            g.remove_nodes_from([n for r, n in devices if r in self.dropped])
            for new, (_, n) in enumerate((r, n) for r, n in devices if r not in self.dropped):
                g.nodes[n]["rank"] = new
        return g

    def job_inputs(self, config: Config, base: nx.Graph) -> tuple[Config, nx.Graph]:
        update: dict[str, Any] = {}
        if self.replicas:
            update["parallelism"] = config.parallelism.model_copy(update={"data": self.replicas})
        if self.servers:
            update["communication"] = config.communication.model_copy(update={"servers": self.servers})
        if self.batch_per_device:
            update["workload"] = config.workload.model_copy(update={"batch_per_device": self.batch_per_device})
        return (config.model_copy(update=update) if update else config), self.graph(base)


def cut_off(graph: nx.Graph, keep: set[int] | None = None) -> set[int]:
    """Device ranks not in the component holding the most devices (``keep``: the ranks that count)."""
    rank = {n: d["rank"] for n, d in graph.nodes(data=True) if d.get("role") == "device"}
    comps = [{rank[n] for n in c if n in rank and (keep is None or rank[n] in keep)}
             for c in nx.connected_components(graph)]
    comps = [c for c in comps if c]
    if len(comps) <= 1:
        return set()
    biggest = max(comps, key=lambda c: (len(c), -min(c)))
    return set().union(*[c for c in comps if c is not biggest])
