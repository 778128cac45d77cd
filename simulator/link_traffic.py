"""Bytes on every directed link in one iteration, rebuilt from the collectives the job's plan runs.

``plots/links.png`` shows where a run's bytes go so a student sees its bottleneck. The numbers come
from the same places the simulation's do: the plan's gradient collectives (per stage, chunk and
part, with the compression's encoding and ZeRO's reduce-scatter / all-gathers), the tensor-parallel
all-reduces, the pipeline's scatter/gather sends — each a :mod:`simulator.collectives` schedule,
mapped onto devices and routed by :meth:`simulator.network.Network.flows` (the simulator's own
routes, ECMP included). Only the network's public surface is used: ``Network.flows`` and
``routing.graph`` / ``routing.capacity``; link ``i`` of ``routing.capacity`` is, as ``Routing``
numbers them, edge ``i // 2`` of ``graph.edges`` in its direction ``u → v`` (even ``i``) or
``v → u`` (odd ``i``).

The rebuilt transfers must add up to the summary's ``bytes_sent_per_iteration`` (checked): when
they do not, or when a run's traffic is not a fixed set of collectives per iteration
(parameter servers: pushes and pulls timed as they happen; local SGD: averaging every H steps),
:func:`link_traffic` returns ``None`` and says why, and no plot is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator import collectives, compression

__all__ = ["LinkTraffic", "busiest", "link_names", "link_traffic", "unavailable_reason"]


@dataclass(frozen=True)
class LinkTraffic:
    """One iteration's traffic: bytes per directed link, with what it was rebuilt from."""

    names: list[str]              # "u → v" per directed link index
    bytes: np.ndarray             # [links] bytes per iteration
    capacity: np.ndarray          # [links] bytes/s
    sent: float                   # Σ transfer bytes (= the summary's bytes_sent_per_iteration)
    flow_bytes: float             # Σ flow bytes (transfers between one pair in one step travel as one flow)
    flow_byte_hops: float         # Σ flow bytes × links crossed (= bytes.sum(): conservation)
    by_kind: dict[str, float]     # sent bytes per kind of traffic
    kind_bytes: dict[str, np.ndarray]   # kind -> [links] bytes per iteration (they add up to ``bytes``)

    def utilisation(self, iteration_s: float) -> np.ndarray:
        """Share of each link's capacity × the iteration time its bytes take."""
        return self.bytes / (self.capacity * iteration_s) if iteration_s > 0 else np.zeros_like(self.bytes)


def link_names(graph) -> list[str]:
    """``"u → v"`` for every directed link, in ``Routing``'s order (two per edge of ``graph.edges``)."""
    names = []
    for u, v in graph.edges():
        names += [f"{u} → {v}", f"{v} → {u}"]
    return names


class _Tally:
    def __init__(self, network) -> None:
        self.network = network
        self.links = np.zeros(len(network.routing.capacity))
        self.sent = self.flow_bytes = self.byte_hops = 0.0
        self.kinds: dict[str, float] = {}
        self.kind_links: dict[str, np.ndarray] = {}
        self._memo: dict[tuple, tuple[np.ndarray, float, float, float]] = {}

    def step(self, src: np.ndarray, dst: np.ndarray, nbytes: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        batch = self.network.flows(np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64),
                                   np.asarray(nbytes, dtype=float))
        hops = np.diff(batch.link_ptr)
        per_entry = np.repeat(batch.nbytes, hops)
        links = np.bincount(batch.links, weights=per_entry, minlength=len(self.links))
        return links, float(np.sum(nbytes)), float(batch.nbytes.sum()), float((batch.nbytes * hops).sum())

    def schedule(self, sched, groups: np.ndarray, times: float, kind: str) -> float:
        """Every row of ``groups`` (device ranks) runs ``sched``, ``times`` per iteration; returns its bytes sent."""
        groups = np.atleast_2d(np.asarray(groups, dtype=np.int64))
        if sched.switches:   # nvls: the switch rank is each group's reducing switch
            groups = self.network.with_switches(sched, groups)[0]
        key = (sched.collective, sched.algorithm, sched.ranks, tuple(sched.chunk_bytes.tolist()), groups.tobytes())
        if key not in self._memo:
            chunk = np.asarray(sched.chunk_bytes, dtype=float)
            # bytes per link are linear in the transfers' bytes: steps that share their src/dst arrays (the
            # same objects, as a ring's 2(p-1) steps do) add up their transfers' bytes and are routed once
            pairs: dict[tuple[int, int], list] = {}
            for step in sched.steps:
                same = pairs.get((id(step.src), id(step.dst)))
                if same is None:
                    pairs[(id(step.src), id(step.dst))] = [step, chunk[step.chunk]]
                else:
                    same[1] = same[1] + chunk[step.chunk]
            total = [np.zeros(len(self.links)), 0.0, 0.0, 0.0]
            for step, nbytes in pairs.values():
                got = self.step(groups[:, step.src].ravel(), groups[:, step.dst].ravel(), np.tile(nbytes, len(groups)))
                for i in range(4):
                    total[i] = total[i] + got[i]
            self._memo[key] = tuple(total)
        return self.add(*self._memo[key], times=times, kind=kind)

    def add(self, links: np.ndarray, sent: float, flow_bytes: float, byte_hops: float, *, times: float,
            kind: str) -> float:
        self.links += links * times
        self.sent += sent * times
        self.flow_bytes += flow_bytes * times
        self.byte_hops += byte_hops * times
        self.kinds[kind] = self.kinds.get(kind, 0.0) + sent * times
        self.kind_links[kind] = self.kind_links.get(kind, np.zeros_like(self.links)) + links * times
        return sent


def unavailable_reason(config) -> str | None:
    """Why a run's per-link traffic is not rebuilt (``None``: it is)."""
    if config.communication.pattern == "parameter_server":
        return "parameter-server pushes and pulls are flows timed as they happen, not a fixed set per iteration"
    if config.sync.mode == "local_sgd":
        return "local SGD averages every H steps, so iterations do not carry the same bytes"
    return None


def link_traffic(config, hardware=None, network=None, plan=None) -> tuple[LinkTraffic | None, str]:
    """One iteration's bytes per directed link, and a note; ``(None, why)`` when it cannot be rebuilt.

    ``hardware``, ``network`` and ``plan`` are the job's (``build_job``); missing ones are elaborated
    again from ``config`` (deterministic: the same plan). Faulted runs describe the failure-free job.
    """
    why = unavailable_reason(config)
    if why:
        return None, why
    if hardware is None or network is None or plan is None:
        from simulator.network import Network
        from simulator.parallel.plan import build_plan
        from simulator.resolve import resolve_hardware

        hardware = resolve_hardware(config)
        network = Network(hardware.graph, config.network.model, gamma=hardware.gamma, profile=hardware.profile,
                          launch_latency=config.communication.launch_latency)
        plan = build_plan(config, hardware, network, check=False)
    tally = _Tally(network)
    try:
        _gradient_sync(config, plan, hardware, tally)
        _tensor(plan, hardware, tally)
        _sends(plan, tally)
    except _Mismatch as e:
        return None, str(e)
    names = link_names(network.routing.graph)
    return LinkTraffic(names, tally.links, np.asarray(network.routing.capacity, dtype=float), tally.sent,
                       tally.flow_bytes, tally.byte_hops, dict(tally.kinds), dict(tally.kind_links)), ""


class _Mismatch(Exception):
    """The rebuilt collectives do not carry the bytes the plan priced: a plan this module does not know."""


def _alg(algorithm: str, name: str) -> str:
    return algorithm if algorithm in collectives.algorithms(name) else "ring"   # as the plan picks


def _priced(tally: _Tally, coll, name: str, algorithm: str, nbytes: int, groups: np.ndarray, info: dict,
            times: float, options: dict) -> None:
    """Rebuild one of the plan's collectives (with the algorithm options it ran with); its bytes must be the plan's."""
    if coll.name != name:
        raise _Mismatch(f"the plan runs {coll.name!r} where {name!r} was expected")
    extra = options if _alg(algorithm, name) == algorithm else {}
    sched = collectives.schedule(_alg(algorithm, name), groups.shape[-1], int(nbytes), collective=name, **info,
                                 **extra)
    sent = tally.schedule(sched, groups, times, "data_parallel")
    if not np.isclose(sent, coll.bytes, rtol=1e-9, atol=0.5):
        raise _Mismatch(f"a rebuilt {name} carries {sent:.6g} B, the plan priced {coll.bytes:.6g} B")


def _gradient_sync(config, plan, hardware, tally: _Tally) -> None:
    """The data-parallel collectives of every stage, as ``plan._data_parallel`` builds them."""
    from simulator.parallel.memory import STATE_BYTES
    from simulator.parallel.tensor import split_layer

    P, v, T = plan.sizes.pipeline, plan.chunks, plan.sizes.tensor
    spec, piece = config.communication.compression, config.communication.partition
    split = [split_layer(layer, T) for layer in hardware.model.layers]
    for s in range(P):
        groups = plan.placement.device[:, s, :].T
        info = {"devices_per_node": plan.placement.devices_per_node_in(groups[0])}
        D = groups.shape[-1]
        for c in range(v):
            for b, part in enumerate(plan.parts[c * P + s]):
                priced = [coll for coll in plan.grad_sync[s][c][b] if not coll.name.startswith(("compress",
                                                                                                 "decompress"))]
                if plan.zero:
                    wanted = [("reduce_scatter", part.bytes)]
                else:
                    wanted = []
                    for name, size in compression.encode(spec, part.values, part.matrices, D).collectives:
                        k = max(1, -(-int(size) // int(piece))) if piece else 1
                        wanted += [(name, -(-int(size) // k))] * k
                if len(wanted) != len(priced):
                    raise _Mismatch(f"stage {s} part {b}: {len(priced)} collectives priced, {len(wanted)} rebuilt")
                for coll, (name, size) in zip(priced, wanted, strict=True):
                    _priced(tally, coll, name, plan.algorithm, size, groups, info, 1.0, dict(plan.algorithm_options))
            if plan.zero:
                params = sum(split[i].params for i in plan.virtual[c * P + s])
                times = 2.0 * plan.microbatches if plan.zero == 3 else 1.0   # before every op, or after the step
                priced_bytes = plan.after_step[s][c].bytes if plan.zero < 3 else float(plan.gather_bytes[s, c])
                weight = STATE_BYTES[hardware.model.precision].params
                sched = collectives.schedule(_alg(plan.algorithm, "allgather"), D, int(params * weight),
                                             collective="allgather", **info)
                sent = tally.schedule(sched, groups, times, "data_parallel")
                if not np.isclose(sent, priced_bytes, rtol=1e-9, atol=0.5):
                    raise _Mismatch(f"a rebuilt ZeRO all-gather carries {sent:.6g} B, the plan priced "
                                    f"{priced_bytes:.6g} B")


def _tensor(plan, hardware, tally: _Tally) -> None:
    """Every replica's tensor-parallel ring all-reduces, per microbatch and virtual stage."""
    from simulator.parallel.tensor import message_bytes

    D, P, T = plan.placement.device.shape
    if T == 1 or not plan.tensor_bytes.any():
        return
    sched = collectives.schedule("ring", T, message_bytes(hardware.model, plan.microbatch_size))
    one = float(sched.total_bytes_sent())
    for u in range(plan.virtual_stages):
        count = float(plan.tensor_bytes[u]) / one            # all-reduces per microbatch (forward + backward)
        for d in range(D):
            tally.schedule(sched, plan.placement.tensor_group(d, u % P)[None, :], plan.microbatches * count,
                           "tensor_parallel")


def _sends(plan, tally: _Tally) -> None:
    """Activations forward and gradients backward between stages: T slices, then the receivers' all-gather."""
    D, P, T = plan.placement.device.shape
    for d in range(D):
        for u in range(plan.virtual_stages - 1):
            a, z = plan.placement.tensor_group(d, u % P), plan.placement.tensor_group(d, (u + 1) % P)
            nbytes = float(plan.send_bytes[u])
            for src, dst in ((a, z), (z, a)):
                got = tally.step(src, dst, np.full(T, nbytes / T))
                tally.add(*got, times=plan.microbatches, kind="pipeline")
                if T > 1:
                    gather = collectives.schedule("ring", T, int(nbytes), collective="allgather")
                    tally.schedule(gather, np.asarray(dst)[None, :], plan.microbatches, "pipeline")


def busiest(traffic: LinkTraffic, iteration_s: float, top: int = 12) -> list[dict[str, Any]]:
    """The ``top`` busiest links (by share of capacity × iteration time), busiest first."""
    busy = traffic.utilisation(iteration_s)
    order = np.lexsort((-traffic.bytes, -busy))[:top]
    return [{"link": traffic.names[i], "bytes_per_iteration": float(traffic.bytes[i]),
             "capacity_bytes_per_s": float(traffic.capacity[i]), "utilisation": float(busy[i])}
            for i in order if traffic.bytes[i] > 0]
