"""How long bytes take: routing + a network model (fluid or α-β) + memoised collective steps.

``Network`` is the single place durations of communication come from; SimPy
processes never compute them. A collective is timed step by step: the step's
transfers become one ``FlowBatch`` started together (on each link's effective
bandwidth, its route's software latency added once: ``topologies.link_classes``), the model returns when each
flow finishes, the step lasts until the last one plus the reduction time
``γ · (most bytes any rank reduces)``. Identical steps (same endpoints and bytes)
are solved once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from simulator.errors import TrainsimInputError
from topologies import link_classes

from .alpha_beta import AlphaBeta
from .base import FlowBatch, NetworkModel, digest, segment_reduce
from .fluid import Fluid, canonical_sizes, max_min_rates
from .routing import Routing

if TYPE_CHECKING:
    from simulator.collectives import Schedule, Step

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


_MAX_SHAPE_FLOATS = 1 << 23   # latency-free finish times kept for scaling, in all (64 MB)
_MAX_CLASSES = 64   # distinct (latency, bottleneck) pairs among a step's flows for the rotation shortcut


@dataclass(frozen=True)
class _Classes:
    latency: np.ndarray            # per class of flows with equal latency and bottleneck
    inv_bottleneck: np.ndarray
    positions: list[np.ndarray]    # sorted flow indices of each class


@dataclass(frozen=True)
class _FloorPlan:
    """A schedule's steps as ``schedule_floor`` reads them (the steps held, so their id stays theirs)."""

    steps: tuple
    forced: list[tuple[np.ndarray, np.ndarray]]   # per group of steps over the same pairs: ``Network._forced``
    step: np.ndarray          # index into steps of each non-empty step
    group: np.ndarray         # its group
    sized: list[int]          # positions (into ``step``) of steps that do not move every chunk exactly once
    reduces: np.ndarray       # positions of steps that reduce


class _Rotations:
    """Ring steps of one schedule, timed together.

    A step qualifies when its routes are disjoint (so it lasts ``max_i latency_i +
    bytes_i / bottleneck_i``), every receiver gets one flow, and ``Step.rotation`` shows
    that flow ``i`` carries chunk ``(r + i) mod n`` of all ``n`` chunks (read from the
    memory layout of a ring's shared chunk array, not assumed). With chunk sizes non-increasing (as
    ``split_evenly`` cuts them), the largest chunk a class of flows with equal latency
    and bottleneck carries is the one with the smallest index, found by a binary search
    in the class's positions; and since ``latency + bytes * seconds_per_byte`` grows with
    the bytes, the step's duration is the max over classes of that flow's, the very
    float the per-flow maximum gives. The steps of one ring then cost O(classes) each.
    """

    def __init__(self, network: Network, chunk_bytes: np.ndarray):
        self.net = network
        cb = np.asarray(chunk_bytes)
        self.ok = len(cb) > 0 and bool((cb[1:] <= cb[:-1]).all())
        self.sizes = cb.astype(float)
        self.step_bytes = float(cb.sum())      # a rotation moves every chunk once
        self._reduced: dict[int, int] = {}     # id(reduce flags) -> 1 all, 0 none, -1 mixed
        self._groups: dict[tuple[bytes, bool], tuple[list[int], list[int], _Classes]] = {}

    def group(self, step: Step, pair: tuple[np.ndarray, np.ndarray, bytes]) -> tuple[list[int], list[int]] | None:
        """The group this step joins (steps over the same routes), or None when it does not qualify."""
        if not self.ok or step.count is not None or len(step.first) != len(self.sizes) or step.rotation is None:
            return None
        red = step.messages()[2]
        reduced = self._reduced.get(id(red))
        if reduced is None:
            reduced = self._reduced[id(red)] = int(red.all()) if red.all() or not red.any() else -1
        if reduced < 0:
            return None
        classes = self.net._classes(pair)
        if classes is None:
            return None
        return self._groups.setdefault((pair[2], bool(reduced)), ([], [], classes))[:2]

    def groups(self) -> dict:
        return self._groups

    def reuse(self, groups: dict) -> None:
        self._groups = groups

    def solve(self, times: list) -> None:
        n, sizes, gamma = len(self.sizes), self.sizes, self.net.gamma
        for (_, reduced), (where, first, classes) in self._groups.items():
            zero_at = (n - np.asarray(first, dtype=np.int64)) % n     # the flow carrying chunk 0
            t = np.full(len(where), -np.inf)
            for lat, inv, pos in zip(classes.latency, classes.inv_bottleneck, classes.positions, strict=True):
                j = np.searchsorted(pos, zero_at)
                smallest = np.where(j < len(pos), pos[np.minimum(j, len(pos) - 1)] - zero_at, pos[0] - zero_at + n)
                np.maximum(t, lat + sizes[smallest] * inv, out=t)
            if gamma and reduced:
                t = t + gamma * float(sizes[0])
            for i, v in zip(where, t.tolist(), strict=True):
                times[i] = v


class Network:
    """A topology with a network model.

    Parameters
    ----------
    graph : networkx.Graph from ``topologies`` (edges: bandwidth bytes/s, latency s).
    model : "fluid" (max-min fair sharing) or "alpha_beta" (no contention).
    gamma : seconds per byte reduced (the γ of the α-β-γ model).
    profile : a calibrated ``HardwareProfile`` (``cluster.profile``): when given, collectives are
        timed with its fitted α, β, γ (``profile.schedule_time``), not with the links' numbers.
    launch_latency : seconds every collective schedule pays once (``communication.launch_latency``),
        on top of its steps; not added to a profile's fitted time (its α already holds it) nor to
        point-to-point steps (``step_time``).

    Links run at ``bandwidth × efficiency`` and each message pays its route's software latency once
    (``topologies.link_classes``, applied by ``Routing``); without link classes both are the line rate and 0.
    """

    def __init__(self, graph: nx.Graph, model: str = "fluid", gamma: float = 0.0,
                 profile: HardwareProfile | None = None, launch_latency: float = 0.0):
        self.profile = profile
        self.launch_latency = float(launch_latency)
        self.routing = Routing(graph)
        self.model: NetworkModel = MODELS[model]()
        self.gamma = gamma
        self._steps: dict[bytes, float] = {}
        self._route_cache: dict[bytes, _Routes] = {}
        self._shapes: dict[bytes, tuple[float, np.ndarray]] = {}
        self._shape_floats = 0
        self._rotation_classes: dict[bytes, _Classes | None] = {}
        # coupled steps as bundles (``Fluid.bundles``): per route digest, the groups or None; per
        # (routes, canonical sizes), the latency-free finish times at the canonical positions
        self._bundles: dict[bytes, list[np.ndarray] | None] = {}
        self._bundle_free: dict[bytes, np.ndarray] = {}
        self._bundle_floats = 0
        # (id(steps), placement digest) -> (steps, chunks, groups): the tuple is held, so its id stays its own
        self._ring_plans: dict[tuple[int, bytes], tuple[tuple, int, dict]] = {}
        self.steps_solved = 0
        self._bounded = 0   # coupled steps given a lower bound instead of a solve (schedule_lower_bound)
        self._bounds: dict[bytes, float] = {}   # those bounds, keyed as _steps
        self._forced_cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}   # schedule_floor's, per route digest
        self._floor_plans: dict[tuple[int, bytes, int], _FloorPlan] = {}
        self._reduce_used: set[float] = set()   # reduce efficiencies of the switches collectives reduced in

    def efficiency_summary(self) -> dict[str, Any]:
        """The link-class figures this network applies (``topologies.link_classes``), as summary keys.

        ``network_efficiency`` and ``network_software_latency_s`` map each declared class to what its
        links use; ``network_reduce_efficiency`` is the reducing switches' efficiency, once a collective
        reduced in one (``nvls``); ``launch_latency_s`` is given when non-zero. ``{}`` for the line-rate model.
        """
        out: dict[str, Any] = {}
        per_class = link_classes.applied(self.routing.graph)
        if per_class:
            out["network_efficiency"] = {name: v["efficiency"] for name, v in per_class.items()}
            out["network_software_latency_s"] = {name: v["software_latency_s"] for name, v in per_class.items()}
        if self._reduce_used:
            used = sorted(self._reduce_used)
            out["network_reduce_efficiency"] = used[0] if len(used) == 1 else used
        if self.launch_latency:
            out["launch_latency_s"] = self.launch_latency
        return out

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
        key = key or digest(src, dst)
        cached = self._route_cache.get(key)
        if cached is None:
            r = self.routing
            unique_dst = len(dst) < 2 or bool((np.diff(np.sort(dst)) != 0).all())   # (np.unique imports numpy.ma)
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
            if r.has_software_latency:   # once per message: the largest of its route's links (link_classes)
                latency = latency + segment_reduce(np.maximum, r.software_latency[links], ptr, 0.0)
            shared = bool(len(links)) and np.bincount(links).max() > 1
            bottleneck = segment_reduce(np.minimum, r.capacity[links], ptr, np.inf)
            cached = self._route_cache[key] = _Routes(ptr, links, latency, 1.0 / bottleneck, not shared,
                                                      unique_dst, merged)
        return cached

    def _classes(self, pair: tuple[np.ndarray, np.ndarray, bytes]) -> _Classes | None:
        """Flows of these routes grouped by (latency, seconds per byte), when no two share a link."""
        key = pair[2]
        if key not in self._rotation_classes:
            routes = self._routes(pair[0], pair[1], key)
            classes = None
            if routes.disjoint and routes.merged is None and routes.unique_dst and len(routes.latency):
                lat, inv = routes.latency, routes.inv_bottleneck
                order = np.lexsort((inv, lat))
                ls, bs = lat[order], inv[order]
                new = np.ones(len(order), dtype=bool)
                new[1:] = (ls[1:] != ls[:-1]) | (bs[1:] != bs[:-1])
                starts = np.append(np.flatnonzero(new), len(order))
                if len(starts) - 1 <= _MAX_CLASSES:
                    classes = _Classes(ls[starts[:-1]], bs[starts[:-1]],
                                       [np.sort(order[a:b]) for a, b in zip(starts[:-1], starts[1:], strict=True)])
            self._rotation_classes[key] = classes
        return self._rotation_classes[key]

    def finish_times(self, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
        """Seconds until each of these concurrent flows completes (one per distinct (src, dst))."""
        return self.model.finish_times(self.flows(src, dst, nbytes), self.routing.capacity)

    def step_time(self, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray,
                  reduced: np.ndarray | None = None, route_key: bytes | None = None, *, bound: bool = False
                  ) -> float:
        """Duration of one collective step (memoised on endpoints and relative bytes).

        ``reduced`` marks the transfers whose receiver reduces (γ applies to them);
        ``route_key`` (a digest of ``src`` and ``dst``) saves re-hashing shared arrays.
        ``bound``: a step whose flows share links and that was not solved before is not solved
        now; it is given the model's ``last_finish_lower_bound`` instead (counted in ``_bounded``).
        """
        if len(src) == 0:
            return 0.0
        route_key = route_key or digest(src, dst)
        routes = self._routes(src, dst, route_key)
        red = reduced if reduced is not None else np.zeros(0, bool)
        flow_bytes = routes.flow_bytes(nbytes)
        if routes.disjoint:
            # no link carries two flows: every model gives latency + bytes / bottleneck, and
            # computing that is cheaper than looking it up
            t = float((routes.latency + flow_bytes * routes.inv_bottleneck).max())
        else:
            key = route_key + digest(flow_bytes)
            t = self._steps.get(key)
            if t is None and bound:
                self._bounded += 1
                t = self._bounds.get(key)
                if t is None:
                    t = self._bounds[key] = self.model.last_finish_lower_bound(
                        FlowBatch(routes.ptr, routes.links, flow_bytes, routes.latency), self.routing.capacity)
            elif t is None:
                t = self._steps[key] = self._coupled(routes, route_key, flow_bytes)
        if self.gamma and red.any():
            if routes.unique_dst:
                t += self.gamma * float(nbytes[red].max())
            else:
                t += self.gamma * float(np.bincount(dst[red], weights=nbytes[red]).max())
        return t

    def _coupled(self, routes: _Routes, route_key: bytes, flow_bytes: np.ndarray) -> float:
        """The last finish time of flows that share links, solved once per structure.

        Both models finish flow ``i`` at ``latency_i + f_i(bytes)`` where ``f`` is
        positively homogeneous: with every size times ``c``, every ``f_i`` is ``c`` times as
        long (max-min rates do not depend on sizes, and which flows finish in which epoch
        depends on the sizes' ratios only). So the latency-free finish times of the first
        byte vector of each shape (sizes divided by their greatest common divisor) are
        kept, and a step with the same routes and proportional sizes is that vector scaled
        (agreeing with a fresh solve to rounding, ~1e-15 relative; tested).
        """
        shape, scale = _shape(flow_bytes)
        skey = route_key + digest(shape)
        linear = bool(scale) and getattr(self.model, "scales_linearly", False)
        ref = self._shapes.get(skey) if linear else None
        if ref is None:
            if not linear:
                self.steps_solved += 1
                flows = FlowBatch(routes.ptr, routes.links, flow_bytes, routes.latency)
                return float(self.model.finish_times(flows, self.routing.capacity).max())
            free = self._latency_free(routes, route_key, flow_bytes)
            if self._shape_floats + len(free) <= _MAX_SHAPE_FLOATS:   # bounded: past it, solve afresh
                self._shapes[skey] = (scale, free)
                self._shape_floats += len(free)
            return float((free + routes.latency).max())
        ref_scale, free = ref
        return float((free * (scale / ref_scale) + routes.latency).max())

    def _latency_free(self, routes: _Routes, route_key: bytes, flow_bytes: np.ndarray) -> np.ndarray:
        """Latency-free finish times of these flows: the model's solve, or one of an equivalent step.

        Where the model groups the routes' flows into bundles (``Fluid.bundles``) and every flow is
        busy, a step whose sizes are a bundle-preserving permutation of a step solved before (the
        same canonical sizes, ``canonical_sizes``) has that step's finish times, permuted: the same
        floats a solve gives, without it. The hierarchical allreduce's inter-node ring steps, whose
        flows share each node's NIC, are such rotations of each other.
        """
        flows = FlowBatch(routes.ptr, routes.links, flow_bytes, np.zeros_like(routes.latency))
        find = getattr(self.model, "bundles", None)
        groups = None
        if find is not None:
            if route_key not in self._bundles:
                self._bundles[route_key] = find(routes.ptr, routes.links, self.routing.capacity)
            groups = self._bundles[route_key]
        if groups is None or not flow_bytes.min() > 0:
            self.steps_solved += 1
            return self.model.finish_times(flows, self.routing.capacity)
        values, where = canonical_sizes(groups, flow_bytes)
        key = route_key + digest(values)
        known = self._bundle_free.get(key)
        if known is None:
            self.steps_solved += 1
            free = self.model.finish_times(flows, self.routing.capacity)
            if self._bundle_floats + len(free) <= _MAX_SHAPE_FLOATS:
                self._bundle_free[key] = free[where]
                self._bundle_floats += len(free)
            return free
        free = np.empty(len(flow_bytes))
        free[where] = known
        return free

    def schedule_time(self, schedule: Schedule, placement: np.ndarray | None = None) -> float:
        """Simulated duration of a whole collective schedule (see ``schedule_cost``)."""
        return self.schedule_cost(schedule, placement)[0]

    def schedule_floor(self, schedule: Schedule, placement: np.ndarray | None = None) -> float:
        """A coarser lower bound on ``schedule_time`` than ``schedule_lower_bound``'s, that routes nothing.

        Only the links no route can avoid count (``Routing.forced_links``: outside the switch core a
        route is forced); a flow's latency is taken as theirs, plus the largest software latency among
        them and a bound on its core hops' latency, all at most its route's. Each message is taken to
        carry its step's smallest message, ``m_k`` (messages of one pair, which travel as one flow,
        carry at least that each). Steps whose messages run between the same pairs form a group ``g``
        (a ring's steps, or one step) of ``K_g`` steps moving ``M_g = Σ m_k``. By the two facts of
        ``Fluid.last_finish_lower_bound`` step ``k`` lasts at least ``λ_i + m_k / c_i`` for every flow
        ``i`` (``c_i``: its slowest forced link) and, where flows share links, ``λ_l + n_l·m_k / c_l``
        for every forced link ``l`` (``n_l`` messages forced over it, ``λ_l`` the smallest of their
        latencies). A sum of maxima is at least the maximum of the sums, so the group lasts at least
        ``max(max_i K_g λ_i + M_g / c_i, max_l K_g λ_l + M_g n_l / c_l)``. A step that reduces adds at
        least ``γ·m_k``; every collective its launch latency. With a calibrated profile this is the
        profile's time; pipelined (``slices`` > 1) and in-switch (``nvls``) schedules get their launch
        latency only.
        """
        if self.profile is not None:
            return self.profile.schedule_time(schedule)
        if schedule.slices > 1 or schedule.switches:
            return self.launch_latency
        place = np.arange(schedule.ranks) if placement is None else np.asarray(placement)
        chunk_bytes = np.asarray(schedule.chunk_bytes, dtype=float)
        plan = self._floor_plan(schedule, place)
        m = np.full(len(plan.group), float(chunk_bytes.min()) if len(chunk_bytes) else 0.0)
        for i in plan.sized:          # the others move every chunk once: their smallest message is the smallest chunk
            m[i] = float(schedule.steps[plan.step[i]].message_bytes(chunk_bytes).min())
        steps = np.bincount(plan.group, minlength=len(plan.forced))
        moved = np.bincount(plan.group, weights=m, minlength=len(plan.forced))
        total = self.gamma * float(m[plan.reduces].sum()) if self.gamma else 0.0
        for (latency, per_byte), k, mk in zip(plan.forced, steps.tolist(), moved.tolist(), strict=True):
            total += float((k * latency + mk * per_byte).max(initial=0.0))
        return total + self.launch_latency

    def _floor_plan(self, schedule: Schedule, place: np.ndarray) -> _FloorPlan:
        """What ``schedule_floor`` reads of a schedule's steps on these devices, kept per (steps, placement):
        builders share steps between message sizes (a job's buckets), so only the sizes change."""
        key = (id(schedule.steps), digest(place), len(schedule.chunk_bytes))
        plan = self._floor_plans.get(key)
        if plan is not None and plan.steps is schedule.steps:
            return plan
        n_chunks = len(schedule.chunk_bytes)
        forced: dict[bytes, int] = {}
        by_id: dict[tuple[int, int], int] = {}
        any_reduce: dict[int, bool] = {}    # id(reduce flags) -> any: builders share the arrays between steps
        structures, step, group, sized, reduces = [], [], [], [], []
        for i, st in enumerate(schedule.steps):
            src, dst, red = st.messages()
            if not len(src):
                continue
            g = by_id.get((id(src), id(dst)))
            if g is None:
                s, d = self.routing.device_nodes(place[src]), self.routing.device_nodes(place[dst])
                rkey = digest(s, d)
                g = forced.get(rkey)
                if g is None:
                    g = forced[rkey] = len(structures)
                    structures.append(self._forced(rkey, s, d))
                by_id[(id(src), id(dst))] = g
            once = st.count is None and len(src) == n_chunks and (
                st.rotation is not None or int(np.bincount(st.first, minlength=n_chunks).max()) == 1)
            if not once:
                sized.append(len(step))
            r = any_reduce.get(id(red))
            if r is None:
                r = any_reduce[id(red)] = bool(red.any())
            if r:
                reduces.append(len(step))
            step.append(i)
            group.append(g)
        plan = _FloorPlan(schedule.steps, structures, np.array(step, dtype=np.int64),
                          np.array(group, dtype=np.int64), sized, np.array(reduces, dtype=np.int64))
        if len(self._floor_plans) >= 8:
            self._floor_plans.pop(next(iter(self._floor_plans)))
        self._floor_plans[key] = plan
        return plan

    def _forced(self, key: bytes, src_nodes: np.ndarray, dst_nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``schedule_floor``'s terms for flows between these nodes, cached by ``key``: latencies and seconds
        per byte of each flow (forced links only), then, where flows share links, of each forced link."""
        cached = self._forced_cache.get(key)
        if cached is None:
            r = self.routing
            ptr, links, core_latency = r.forced_links(src_nodes, dst_nodes)
            latency = segment_reduce(np.add, r.latency[links], ptr, 0.0) + core_latency
            if r.has_software_latency:
                latency = latency + segment_reduce(np.maximum, r.software_latency[links], ptr, 0.0)
            per_byte = 1.0 / segment_reduce(np.minimum, r.capacity[links], ptr, np.inf)
            if len(links) and self.model.shares_links:
                flow_of = np.repeat(np.arange(len(latency)), np.diff(ptr))
                used, where = np.unique(links, return_inverse=True)
                first = np.full(len(used), np.inf)
                np.minimum.at(first, where, latency[flow_of])
                latency = np.concatenate([latency, first])
                per_byte = np.concatenate([per_byte, np.bincount(where) / r.capacity[used]])
            cached = self._forced_cache[key] = (latency, per_byte)
        return cached

    def schedule_lower_bound(self, schedule: Schedule, placement: np.ndarray | None = None
                             ) -> tuple[float, float, bool]:
        """A lower bound on ``schedule_time`` that solves no max-min allocation, the bytes carried
        (``schedule_cost``'s), and whether the bound is exact.

        The schedule is costed as ``schedule_time`` costs it, except that each step whose flows share
        links, and that no earlier call solved, costs the network model's ``last_finish_lower_bound``
        (for the fluid model: no flow faster than its path's bottleneck, no link carrying more than its
        capacity; ``Fluid.last_finish_lower_bound`` proves it), which no solve can undercut. Every other
        term (uncoupled steps, γ, a pipeline's pace, the launch latency, a calibrated profile's fitted
        cost) is the same float as ``schedule_time``'s, added in the same order, so where no step needed
        the bound (``exact``) the bound is ``schedule_time``'s float itself.
        """
        before = self._bounded
        seconds, carried = self.schedule_cost(schedule, placement, bound=True)
        return seconds, carried, self._bounded == before

    def schedule_cost(self, schedule: Schedule, placement: np.ndarray | None = None, *, bound: bool = False
                      ) -> tuple[float, float]:
        """Simulated seconds of a whole collective schedule, and the bytes its flows carried.

        ``placement[r]`` is the device rank that schedule rank ``r`` runs on
        (default: the identity). A step's transfers of one chunk range travel as one
        message (``Step.messages``). Steps that rotate the chunks of a ring over the
        same routes are timed together (see ``_rotations``); the seconds are the same.
        ``bound``: as ``step_time``'s (``schedule_lower_bound``).
        """
        if self.profile is not None:  # calibrated: the schedule-derived α-β-γ cost, as validation predicts
            return self.profile.schedule_time(schedule), float(schedule.total_bytes_sent())
        place = np.arange(schedule.ranks - schedule.switches) if placement is None else np.asarray(placement)
        switch = None
        if schedule.switches:
            place, effs = self.with_switches(schedule, place[None, :])
            place, switch = place[0], (schedule.workers, effs[:1])
        if schedule.slices > 1 or switch is not None:
            return self._pipelined_cost(schedule, place[None, :], switch, bound=bound)
        rotations = _Rotations(self, schedule.chunk_bytes)
        plan_key = (id(schedule.steps), digest(place))
        plan = self._ring_plans.get(plan_key)
        if plan is not None and plan[0] is schedule.steps and rotations.ok and plan[1] == len(rotations.sizes):
            # the same ring steps (shared between message sizes) on the same ranks: only the sizes differ
            rotations.reuse(plan[2])
            times: list[float | None] = [None] * len(schedule.steps)
            carried = 0.0
            for _ in times:
                carried += rotations.step_bytes
        else:
            times, carried = self._step_times(schedule, place, rotations, bound)
            if len(times) >= 64 and all(t is None for t in times):   # a pure ring: keep how it was grouped
                if len(self._ring_plans) >= 4:
                    self._ring_plans.pop(next(iter(self._ring_plans)))
                self._ring_plans[plan_key] = (schedule.steps, len(rotations.sizes), rotations.groups())
        rotations.solve(times)
        total = 0.0
        for t in times:
            total += t
        if self.launch_latency:
            total += self.launch_latency
        return total, carried

    def _step_times(self, schedule: Schedule, place: np.ndarray, rotations: _Rotations, bound: bool = False
                    ) -> tuple[list[float | None], float]:
        """Each step's seconds (None: left to ``rotations``) and the bytes carried, in step order."""
        chunk_bytes = np.asarray(schedule.chunk_bytes, dtype=float)
        # builders share src/dst arrays between steps: map and hash each distinct pair once
        # (the steps keep the arrays alive, so their ids are stable during this call)
        mapped: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, bytes]] = {}
        times: list[float | None] = []
        carried = 0.0
        last: tuple = (None, None, None, None)    # (src, dst, reduce, group) of the last step that joined a group
        for step in schedule.steps:
            src, dst, red = step.messages()
            if last[3] is not None and src is last[0] and dst is last[1] and red is last[2]:
                first = step.rotation                # a ring's next step: same arrays, so only this to check
                if first is not None:
                    last[3][0].append(len(times))
                    last[3][1].append(first)
                    times.append(None)
                    carried += rotations.step_bytes
                    continue
            pair = mapped.get((id(src), id(dst)))
            if pair is None:
                s, d = place[src], place[dst]
                pair = mapped[(id(src), id(dst))] = (s, d, digest(s, d))
            group = rotations.group(step, pair)
            if group is not None:
                last = (src, dst, red, group)
                group[0].append(len(times))
                group[1].append(step.rotation)
                times.append(None)
                carried += rotations.step_bytes
                continue
            last = (None, None, None, None)
            nbytes = chunk_bytes[step.first] if step.count is None else step.message_bytes(chunk_bytes)
            times.append(self.step_time(pair[0], pair[1], nbytes, red, route_key=pair[2], bound=bound))
            carried += float(nbytes.sum())
        return times, carried

    def concurrent_schedule_cost(self, schedule: Schedule, groups: np.ndarray) -> tuple[float, float]:
        """Seconds and bytes of ``schedule`` run by every row of ``groups`` (device ranks) at once.

        Step k of every group starts together, so the groups' flows share links; with one
        group this is exactly ``schedule_cost(schedule, groups[0])``.
        """
        groups = np.atleast_2d(np.asarray(groups, dtype=np.int64))
        if len(groups) == 1 or self.profile is not None:
            seconds, sent = self.schedule_cost(schedule, groups[0])
            return seconds, sent * len(groups)
        if schedule.slices > 1 or schedule.switches:
            switch = None
            if schedule.switches:
                groups, effs = self.with_switches(schedule, groups)
                switch = (schedule.workers, effs)
            return self._pipelined_cost(schedule, groups, switch)
        g = len(groups)
        total = sent = 0.0
        for step in schedule.steps:
            src, dst, red = step.messages()
            nbytes = np.tile(step.message_bytes(schedule.chunk_bytes), g)
            total += self.step_time(groups[:, src].ravel(), groups[:, dst].ravel(), nbytes, np.tile(red, g))
            sent += float(nbytes.sum())
        if self.launch_latency:
            total += self.launch_latency
        return total, sent

    def supports(self, schedule: Schedule, placement: np.ndarray | None = None) -> bool:
        """False when ``schedule`` reduces in a switch and no reducing switch serves its devices."""
        if not schedule.switches or self.profile is not None:
            return True
        place = np.arange(schedule.workers) if placement is None else np.asarray(placement)
        devices = [self.routing.devices[int(d)] for d in place[: schedule.workers]]
        return link_classes.reducing_switch(self.routing.graph, devices) is not None

    def with_switches(self, schedule: Schedule, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each group's device ranks with its reducing switch's rank appended (once per switch rank), and each
        switch's efficiency.

        The switch of a group is the one that reduces and every device of the group is attached to
        (``topologies.link_classes.reducing_switch``); none is an input error naming the algorithm.
        """
        w = schedule.workers
        rows, effs = [], []
        r = self.routing
        for row in groups:
            devices = [r.devices[int(d)] for d in row[:w]]
            found = link_classes.reducing_switch(r.graph, devices)
            if found is None:
                raise TrainsimInputError(
                    f"{schedule.algorithm}: reduces in a switch, but no switch that reduces (reduces: true; "
                    f"cluster.topology.reduction) is attached to all {w} of its ranks' devices "
                    f"({devices[0]}, ...); trees of reducing switches are not modelled")
            rows.append(np.append(row[:w], [r.endpoint(found[0])] * schedule.switches))   # all on the one switch
            effs.append(found[1])
            self._reduce_used.add(found[1])
        return np.array(rows, dtype=np.int64), np.array(effs)

    def _pipelined_cost(self, schedule: Schedule, groups: np.ndarray,
                        switch: tuple[int, np.ndarray] | None, *, bound: bool = False) -> tuple[float, float]:
        """Seconds and bytes of ``schedule`` (on every row of ``groups`` at once) in ``c = slices`` slices.

        One slice (every chunk cut to ``1/c``) through every step, step after step, is the pipeline
        fill; the other ``c - 1`` slices follow at the pace of the busiest resource: the directed link
        carrying the most seconds of bytes over all steps, or the rank reducing the most (``γ``).
        ``switch = (workers, efficiencies)``: ranks from ``workers`` on are the groups' reducing
        switches; their messages take ``1/efficiency`` as long and their reductions cost no ``γ``.
        """
        c = schedule.slices
        g = len(groups)
        total = sent = 0.0
        load = np.zeros(len(self.routing.capacity))
        reduced = np.zeros(int(groups.max()) + 1)
        routes_seen: dict[bytes, tuple[_Routes, np.ndarray]] = {}
        for step in schedule.steps:
            if step.n_messages == 0:
                continue
            src, dst, red = step.messages()
            nbytes = step.message_bytes(schedule.chunk_bytes).astype(float) / c
            nbytes = np.tile(nbytes, g) if g > 1 else nbytes
            red = np.tile(red, g) if g > 1 else red
            timed = nbytes
            if switch is not None:
                w, effs = switch
                through = np.tile((src >= w) | (dst >= w), g)
                timed = np.where(through, nbytes / np.repeat(effs, len(src)), nbytes)
                red = red & ~np.tile(dst >= w, g)
            s, d = groups[:, src].ravel(), groups[:, dst].ravel()
            key = digest(s, d)
            total += self.step_time(s, d, timed, red, route_key=key, bound=bound)
            sent += float(nbytes.sum()) * c
            if c > 1:
                routes = self._routes(s, d, key)
                flow = routes.flow_bytes(timed)
                seen = routes_seen.get(key)
                routes_seen[key] = (routes, flow if seen is None else seen[1] + flow)
                if red.any():
                    reduced += np.bincount(d[red], weights=timed[red], minlength=len(reduced))
        if c > 1:
            for routes, flow in routes_seen.values():
                load += np.bincount(routes.links, weights=np.repeat(flow, np.diff(routes.ptr)), minlength=len(load))
            pace = max(float((load / self.routing.capacity).max(initial=0.0)),
                       self.gamma * float(reduced.max(initial=0.0)))
            total += (c - 1) * pace
        if self.launch_latency:
            total += self.launch_latency
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


def _shape(nbytes: np.ndarray) -> tuple[np.ndarray, float]:
    """``(nbytes / g, g)`` with ``g`` the greatest common divisor of whole byte counts; ``g = 0``: no shape."""
    if not len(nbytes) or not (nbytes == np.floor(nbytes)).all() or nbytes.max() >= 2.0 ** 53 or nbytes.min() < 0:
        return nbytes, 0.0
    ints = nbytes.astype(np.int64)
    g = int(np.gcd.reduce(ints))
    if g == 0:
        return nbytes, 0.0
    return ints // g, float(g)


