"""How long bytes take: routing + a network model (fluid or α-β) + memoised collective steps.

``Network`` is the single place durations of communication come from; SimPy
processes never compute them. A collective is timed step by step: the step's
transfers become one ``FlowBatch`` started together, the model returns when each
flow finishes, the step lasts until the last one plus the reduction time
``γ · (most bytes any rank reduces)``. Identical steps (same endpoints and bytes)
are solved once.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from .alpha_beta import AlphaBeta
from .base import FlowBatch, NetworkModel
from .fluid import Fluid, max_min_rates
from .routing import Routing

if TYPE_CHECKING:
    from simulator.collectives import Schedule

__all__ = ["MODELS", "AlphaBeta", "FlowBatch", "Fluid", "Network", "NetworkModel", "max_min_rates"]

MODELS: dict[str, type] = {"fluid": Fluid, "alpha_beta": AlphaBeta}


class Network:
    """A topology with a network model.

    Parameters
    ----------
    graph : networkx.Graph from ``topologies`` (edges: bandwidth bytes/s, latency s).
    model : "fluid" (max-min fair sharing) or "alpha_beta" (no contention).
    gamma : seconds per byte reduced (the γ of the α-β-γ model).
    """

    def __init__(self, graph: nx.Graph, model: str = "fluid", gamma: float = 0.0):
        self.routing = Routing(graph)
        self.model: NetworkModel = MODELS[model]()
        self.gamma = gamma
        self._steps: dict[bytes, float] = {}
        self.steps_solved = 0

    @property
    def devices(self) -> int:
        return len(self.routing.devices)

    def flows(self, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray) -> FlowBatch:
        """Flows between device ranks ``src[i] → dst[i]`` carrying ``nbytes[i]``."""
        r = self.routing
        pairs = zip(src.tolist(), dst.tolist(), strict=True)
        paths = [r.path_links(r.device_node(s), r.device_node(d)) for s, d in pairs]
        counts = np.fromiter((len(p) for p in paths), dtype=np.int64, count=len(paths))
        ptr = np.zeros(len(paths) + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        links = np.concatenate(paths) if paths else np.zeros(0, dtype=np.int64)
        latency = np.add.reduceat(r.latency[links], ptr[:-1]) if len(links) else np.zeros(len(paths))
        latency = np.where(counts > 0, latency, 0.0)
        return FlowBatch(ptr, links, np.asarray(nbytes, dtype=float), latency)

    def finish_times(self, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
        """Seconds until each of these concurrent flows completes."""
        return self.model.finish_times(self.flows(src, dst, nbytes), self.routing.capacity)

    def step_time(self, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray,
                  reduced: np.ndarray | None = None) -> float:
        """Duration of one collective step (memoised on endpoints and bytes).

        ``reduced`` marks the transfers whose receiver reduces (γ applies to them).
        """
        if len(src) == 0:
            return 0.0
        h = hashlib.blake2b(digest_size=16)
        for a in (src, dst, nbytes, reduced if reduced is not None else np.zeros(0, bool)):
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(b"|")
        key = h.digest()
        t = self._steps.get(key)
        if t is None:
            t = float(self.finish_times(src, dst, nbytes).max())
            if reduced is not None and self.gamma and reduced.any():
                per_rank = np.bincount(dst[reduced], weights=nbytes[reduced])
                t += self.gamma * float(per_rank.max())
            self._steps[key] = t
            self.steps_solved += 1
        return t

    def schedule_time(self, schedule: Schedule, placement: np.ndarray | None = None) -> float:
        """Simulated duration of a whole collective schedule (see ``schedule_cost``)."""
        return self.schedule_cost(schedule, placement)[0]

    def schedule_cost(self, schedule: Schedule, placement: np.ndarray | None = None) -> tuple[float, float]:
        """Simulated seconds of a whole collective schedule, and the bytes its flows carried.

        ``placement[r]`` is the device rank that schedule rank ``r`` runs on
        (default: the identity).
        """
        place = np.arange(schedule.ranks) if placement is None else np.asarray(placement)
        chunk_bytes = np.asarray(schedule.chunk_bytes, dtype=float)
        mapped: dict[int, np.ndarray] = {}

        def on_devices(a: np.ndarray) -> np.ndarray:
            got = mapped.get(id(a))
            if got is None:
                got = mapped[id(a)] = place[a]
            return got

        total = carried = 0.0
        for step in schedule.steps:
            nbytes = chunk_bytes[step.chunk]
            total += self.step_time(on_devices(step.src), on_devices(step.dst), nbytes, step.reduce)
            carried += float(nbytes.sum())
        return total, carried
