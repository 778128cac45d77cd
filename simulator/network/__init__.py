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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np

from .alpha_beta import AlphaBeta
from .base import FlowBatch, NetworkModel, segment_reduce
from .fluid import Fluid, max_min_rates
from .routing import Routing

if TYPE_CHECKING:
    from simulator.collectives import Schedule

    from .profile import HardwareProfile

__all__ = ["MODELS", "AlphaBeta", "FlowBatch", "Fluid", "Network", "NetworkModel", "max_min_rates"]

MODELS: dict[str, type] = {"fluid": Fluid, "alpha_beta": AlphaBeta}


@dataclass(frozen=True)
class _Routes:
    ptr: np.ndarray               # CSR: flow i crosses links[ptr[i]:ptr[i+1]]
    links: np.ndarray
    latency: np.ndarray           # per flow, seconds
    inv_bottleneck: np.ndarray    # per flow, seconds per byte on its slowest link
    disjoint: bool                # no directed link carries two of these flows
    unique_dst: bool              # every receiver gets one transfer
    merged: np.ndarray | None     # transfer -> flow, when several transfers share (src, dst)

    def flow_bytes(self, nbytes: np.ndarray) -> np.ndarray:
        if self.merged is None:
            return nbytes
        return np.bincount(self.merged, weights=nbytes, minlength=len(self.latency))


class Network:
    """A topology with a network model.

    Parameters
    ----------
    graph : networkx.Graph from ``topologies`` (edges: bandwidth bytes/s, latency s).
    model : "fluid" (max-min fair sharing) or "alpha_beta" (no contention).
    gamma : seconds per byte reduced (the γ of the α-β-γ model).
    profile : a calibrated ``HardwareProfile`` (``cluster.profile``): when given, collectives are
        timed with its fitted α, β, γ (``profile.schedule_time``), not with the links' numbers.
    """

    def __init__(self, graph: nx.Graph, model: str = "fluid", gamma: float = 0.0,
                 profile: HardwareProfile | None = None):
        self.profile = profile
        self.routing = Routing(graph)
        self.model: NetworkModel = MODELS[model]()
        self.gamma = gamma
        self._steps: dict[bytes, float] = {}
        self._route_cache: dict[bytes, _Routes] = {}
        self.steps_solved = 0

    @property
    def devices(self) -> int:
        return len(self.routing.devices)

    def flows(self, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray) -> FlowBatch:
        """Flows between device ranks ``src[i] → dst[i]`` carrying ``nbytes[i]``."""
        routes = self._routes(src, dst)
        return FlowBatch(routes.ptr, routes.links, routes.flow_bytes(np.asarray(nbytes, dtype=float)),
                         routes.latency)

    def _routes(self, src: np.ndarray, dst: np.ndarray, key: bytes | None = None) -> _Routes:
        """Path structure of these pairs (CSR link lists, latencies), cached by content."""
        key = key or _digest(src, dst)
        cached = self._route_cache.get(key)
        if cached is None:
            r = self.routing
            unique_dst = len(np.unique(dst)) == len(dst)
            # transfers between the same two ranks in one step travel as one message
            pair_id = src.astype(np.int64) * (int(dst.max()) + 1) + dst
            ids, first, inverse = np.unique(pair_id, return_index=True, return_inverse=True)
            merged = None
            if len(ids) < len(pair_id):
                merged, src, dst = inverse.ravel(), src[first], dst[first]
            pairs = zip(src.tolist(), dst.tolist(), strict=True)
            paths = [r.path_links(r.device_node(s), r.device_node(d)) for s, d in pairs]
            counts = np.fromiter((len(p) for p in paths), dtype=np.int64, count=len(paths))
            ptr = np.zeros(len(paths) + 1, dtype=np.int64)
            np.cumsum(counts, out=ptr[1:])
            links = np.concatenate(paths) if paths else np.zeros(0, dtype=np.int64)
            latency = segment_reduce(np.add, r.latency[links], ptr, 0.0)
            shared = bool(len(links)) and np.bincount(links).max() > 1
            bottleneck = segment_reduce(np.minimum, r.capacity[links], ptr, np.inf)
            cached = self._route_cache[key] = _Routes(ptr, links, latency, 1.0 / bottleneck, not shared,
                                                      unique_dst, merged)
        return cached

    def finish_times(self, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
        """Seconds until each of these concurrent flows completes (one per distinct (src, dst))."""
        return self.model.finish_times(self.flows(src, dst, nbytes), self.routing.capacity)

    def step_time(self, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray,
                  reduced: np.ndarray | None = None, route_key: bytes | None = None) -> float:
        """Duration of one collective step (memoised on endpoints and bytes).

        ``reduced`` marks the transfers whose receiver reduces (γ applies to them);
        ``route_key`` (a digest of ``src`` and ``dst``) saves re-hashing shared arrays.
        """
        if len(src) == 0:
            return 0.0
        route_key = route_key or _digest(src, dst)
        routes = self._routes(src, dst, route_key)
        red = reduced if reduced is not None else np.zeros(0, bool)
        flow_bytes = routes.flow_bytes(nbytes)
        if routes.disjoint:
            # no link carries two flows: every model gives latency + bytes / bottleneck, and
            # computing that is cheaper than looking it up
            t = float((routes.latency + flow_bytes * routes.inv_bottleneck).max())
        else:
            key = route_key + _digest(flow_bytes)
            t = self._steps.get(key)
            if t is None:
                flows = FlowBatch(routes.ptr, routes.links, flow_bytes, routes.latency)
                t = self._steps[key] = float(self.model.finish_times(flows, self.routing.capacity).max())
                self.steps_solved += 1
        if self.gamma and red.any():
            if routes.unique_dst:
                t += self.gamma * float(nbytes[red].max())
            else:
                t += self.gamma * float(np.bincount(dst[red], weights=nbytes[red]).max())
        return t

    def schedule_time(self, schedule: Schedule, placement: np.ndarray | None = None) -> float:
        """Simulated duration of a whole collective schedule (see ``schedule_cost``)."""
        return self.schedule_cost(schedule, placement)[0]

    def schedule_cost(self, schedule: Schedule, placement: np.ndarray | None = None) -> tuple[float, float]:
        """Simulated seconds of a whole collective schedule, and the bytes its flows carried.

        ``placement[r]`` is the device rank that schedule rank ``r`` runs on
        (default: the identity).
        """
        if self.profile is not None:  # calibrated: the schedule-derived α-β-γ cost, as validation predicts
            return self.profile.schedule_time(schedule), float(schedule.total_bytes_sent())
        place = np.arange(schedule.ranks) if placement is None else np.asarray(placement)
        chunk_bytes = np.asarray(schedule.chunk_bytes, dtype=float)
        # builders share src/dst arrays between steps: map and hash each distinct pair once
        # (the steps keep the arrays alive, so their ids are stable during this call)
        mapped: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, bytes]] = {}
        total = carried = 0.0
        for step in schedule.steps:
            pair = mapped.get((id(step.src), id(step.dst)))
            if pair is None:
                s, d = place[step.src], place[step.dst]
                pair = mapped[(id(step.src), id(step.dst))] = (s, d, _digest(s, d))
            nbytes = chunk_bytes[step.chunk]
            total += self.step_time(pair[0], pair[1], nbytes, step.reduce, route_key=pair[2])
            carried += float(nbytes.sum())
        return total, carried

    def concurrent_schedule_cost(self, schedule: Schedule, groups: np.ndarray) -> tuple[float, float]:
        """Seconds and bytes of ``schedule`` run by every row of ``groups`` (device ranks) at once.

        Step k of every group starts together, so the groups' flows share links; with one
        group this is exactly ``schedule_cost(schedule, groups[0])``.
        """
        groups = np.atleast_2d(np.asarray(groups, dtype=np.int64))
        if len(groups) == 1 or self.profile is not None:
            seconds, sent = self.schedule_cost(schedule, groups[0])
            return seconds, sent * len(groups)
        g = len(groups)
        chunk_bytes = np.asarray(schedule.chunk_bytes, dtype=float)
        total = sent = 0.0
        for step in schedule.steps:
            nbytes = np.tile(chunk_bytes[step.chunk], g)
            total += self.step_time(groups[:, step.src].ravel(), groups[:, step.dst].ravel(), nbytes,
                                    np.tile(step.reduce, g))
            sent += float(nbytes.sum())
        return total, sent

    def scatter_gather_time(self, src: np.ndarray, dst: np.ndarray, nbytes: float) -> float:
        """A tensor-sliced point-to-point message (Megatron's scatter/gather, Narayanan et al. 2021, §4.1).

        Each of the ``len(src)`` senders sends its 1/T slice to its peer in ``dst`` in one step
        (the slices share the NICs fairly), then the receivers all-gather the slices (ring).
        """
        from simulator import collectives

        t = len(src)
        seconds = self.step_time(np.asarray(src), np.asarray(dst), np.full(t, nbytes / t))
        if t > 1:
            seconds += self.schedule_time(collectives.schedule("ring", t, int(nbytes), collective="allgather"), dst)
        return seconds


def _digest(*arrays: np.ndarray) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
        h.update(b"|")
    return h.digest()
