"""Parameter servers: k shards on topology devices, FIFO apply queues, and the traffic of push and pull.

Placement: ``dedicated`` servers take the first k devices no rank uses (device ranks
after the workers, as ``collectives.schedule("sharded", collective="ps_push")``
numbers them); ``colocated`` servers share the devices of workers 0, n/k, 2n/k, …
(their own shard then never crosses the network). Which bytes of which layer each
server holds is :func:`simulator.collectives.shard_layout` (``even`` or ``layer``).

Traffic is built from the ``ps_push`` / ``ps_pull`` schedules, one per gradient part
and one per stage, with each shard's bytes given (``shard_bytes``); a schedule rank
is mapped to a device (the stage's T tensor devices, then the k servers) and its
transfers become flows of the asynchronous fluid model (``simulator.network.dynamic``),
so the link into a server is shared by every worker pushing to it at that moment,
and carries pulls the other way at the same time.

With ``communication.priority`` a stage process keeps one push in flight and sends the queued
part the next forward needs first (P3's push scheduling).

With ``communication.overlap`` (the default), a stage pushes each gradient part as
soon as its last backward produces it, and pulls each part back for the next iteration
as soon as the protocol's gate for that part opens (``Protocol.key_gate``: per key, as
MXNet's dist_sync and BytePS servers answer pulls), so pulls of early parts run while
later parts are still being pushed, and each layer's forward waits only for its own
part. Without it, a stage pulls everything at once after the protocol's gate, before
its forward, and pushes every part together after its backward.

Each arriving unit is applied at every shard it touches, FIFO in arrival order, for
``compute.server_apply_time`` of its bytes on the server's device. Versions count the
replica pushes each shard has completed; a push queued behind q others completes at
version q, so staleness is known when it is queued, without an event per shard (per
shard events are scheduled only when the convergence problem's parameters change).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from simulator import collectives, compute
from simulator.collectives.parameter_server import shard_layout
from simulator.config import Config, ConfigError
from simulator.network import Network
from simulator.network.dynamic import FlowGroup, FlowSimulator
from simulator.parallel.plan import ParallelPlan
from simulator.resolve import ResolvedHardware
from simulator.results import Trace
from simulator.rng import Streams

from .learning import Learner, UpdateLog
from .protocols import BSP, Protocol, make_protocol
from .quorum import Quorum

__all__ = ["PSSync", "ParameterServers", "build_ps_sync", "integer_split", "server_ranks"]

Process = Generator[simpy.Event, None, None]


def server_ranks(used: np.ndarray, k: int, placement: str, n_devices: int, workers: int) -> list[int]:
    """Device ranks of the k servers (see the module docstring); ``ValueError`` says what does not fit."""
    used_set = set(used.ravel().tolist())
    if placement == "colocated":
        if k > workers:
            raise ValueError(f"{k} colocated servers need at least {k} workers, got {workers}")
        ordered = sorted(used_set)
        return [ordered[j * len(ordered) // k] for j in range(k)]
    free = [d for d in range(n_devices) if d not in used_set]
    if len(free) < k:
        raise ValueError(f"{len(used_set)} workers and {k} dedicated servers need {len(used_set) + k} devices, "
                         f"but the topology has {n_devices}")
    return free[:k]


def integer_split(values: np.ndarray, total: int) -> tuple[int, ...]:
    """Whole bytes proportional to ``values`` that sum to ``total`` (largest remainders get the spare bytes)."""
    values = np.asarray(values, dtype=float)
    if total == 0 or values.sum() <= 0:
        return tuple(0 for _ in values)
    exact = values * (total / values.sum())
    whole = np.floor(exact).astype(np.int64)
    spare = int(total - whole.sum())
    for j in np.argsort(-(exact - whole), kind="stable")[:spare]:
        whole[j] += 1
    return tuple(int(b) for b in whole)


class ParameterServers:
    """k shards, each a FIFO queue that applies arriving gradient units.

    Parameters
    ----------
    server_ranks : device rank of each shard's server.
    shard_bytes : bytes of each shard (what one replica pushes to it per iteration, all stages).
    apply_s : callable, bytes → seconds for the server to apply them (``compute.server_apply_time``).
    """

    def __init__(self, env: simpy.Environment, server_ranks: list[int], shard_bytes: np.ndarray,
                 apply_s: Callable[[np.ndarray], np.ndarray], trace: Trace):
        self.env, self.trace, self.apply_s = env, trace, apply_s
        self.server_ranks = list(server_ranks)
        self.shard_bytes = np.asarray(shard_bytes, dtype=float)
        k = len(self.server_ranks)
        self.free_at = [0.0] * k         # when each shard's queue drains
        self.busy = [0.0] * k            # total time each shard spent applying
        self.completed = [0] * k                           # replica pushes queued to complete at each shard
        self._pending: list[deque[float]] = [deque() for _ in range(k)]  # their end times not yet reached

    @property
    def k(self) -> int:
        return len(self.server_ranks)

    def versions(self) -> list[int]:
        """Replica pushes each shard has completed by now."""
        now = self.env.now
        out = []
        for done, q in zip(self.completed, self._pending, strict=True):
            while q and q[0] <= now:
                q.popleft()
            out.append(done - len(q))
        return out

    @property
    def busy_s(self) -> np.ndarray:
        return np.array(self.busy)

    def apply(self, touched: tuple[int, ...], seconds: tuple[float, ...], replica: int, traced: bool) -> list[float]:
        """Queue an update of ``seconds[i]`` at each shard ``touched[i]`` from ``replica``; returns when each
        finishes."""
        now = self.env.now
        free_at, busy = self.free_at, self.busy
        ends = []
        for j, sec in zip(touched, seconds, strict=True):
            start = max(now, free_at[j])
            end = free_at[j] = start + sec
            busy[j] += sec
            ends.append(end)
            if traced:
                self.trace.span(f"apply replica {replica}", f"server {j}", start, end)
        return ends

    def complete(self, shards: tuple[int, ...], ends: list[float]) -> list[int]:
        """A replica push completes at each of ``shards`` at ``ends``; returns each one's version just before."""
        befores = []
        for j, end in zip(shards, ends, strict=True):
            before = self.completed[j]
            self.completed[j] = before + 1
            self._pending[j].append(end)
            befores.append(before)
        return befores

    def utilization(self, span_s: float) -> float:
        """Mean fraction of ``span_s`` the shards spent applying updates."""
        return float(self.busy_s.mean() / span_s) if span_s > 0 else 0.0


@dataclass(frozen=True)
class _Traffic:
    """Flows of one schedule from one stage process: device endpoints and bytes, grouped by shard."""

    src: list[int]                # device ranks
    dst: list[int]
    nbytes: list[float]
    flows: FlowGroup              # the same flows, routed once for the flow model
    per_shard: np.ndarray         # bytes arriving at (push) or leaving (pull) each shard, all T devices
    touched: tuple[int, ...]      # shards with bytes
    apply_s: tuple[float, ...]    # seconds a server takes to apply them, per touched shard


def _traffic(sched: collectives.Schedule, devices: np.ndarray, servers: list[int],
             apply_s: Callable[[np.ndarray], np.ndarray], flows: FlowSimulator) -> _Traffic:
    """The schedule's transfers on devices: schedule ranks 0..T-1 are ``devices``, T.. the servers."""
    mapping = np.concatenate([np.asarray(devices, dtype=np.int64), np.asarray(servers, dtype=np.int64)])
    step = sched.steps[0]
    nbytes = np.asarray(sched.chunk_bytes, dtype=float)[step.chunk]
    keep = nbytes > 0
    per_shard = np.bincount(step.chunk[keep].astype(np.int64), weights=nbytes[keep], minlength=len(servers))
    touched = np.flatnonzero(per_shard > 0)
    src, dst, sizes = mapping[step.src[keep]].tolist(), mapping[step.dst[keep]].tolist(), nbytes[keep].tolist()
    return _Traffic(src, dst, sizes, flows.prepare(src, dst, sizes), per_shard, tuple(touched.tolist()),
                    tuple(float(x) for x in apply_s(per_shard[touched])))


class PSSync:
    """The rank processes' view of parameter-server sync: pull before (and during) forward, push parts, apply.

    Units: one per (stage, chunk, part) of a replica — what one stage process (its T devices
    together) pushes in one transfer.
    """

    name = "parameter_server"
    optimizer_on_device = False    # the servers apply the update

    def __init__(self, env: simpy.Environment, plan: ParallelPlan, flows: FlowSimulator,
                 servers: ParameterServers, layout: np.ndarray, protocol: Protocol, log: UpdateLog,
                 learner: Learner | None, iterations: int, trace: Trace, forward_order: list[list[int]]):
        """``layout[i, j]``: bytes of (whole) layer i on shard j; ``forward_order[s]``: stage s's chunks in
        the order its forward first runs them."""
        self.env, self.plan, self.flows, self.servers = env, plan, flows, servers
        self.protocol, self.log, self.learner, self.trace = protocol, log, learner, trace
        self.iterations = iterations
        # communication.priority: one push in flight per stage process, the next by (iteration, forward order)
        self._sending: set[tuple[int, int]] = set()
        self._send_queue: dict[tuple[int, int], list] = {}
        D, P, T = plan.placement.device.shape
        self.P = P
        k = servers.k
        # device share of every layer on every shard: the layout of whole layers x (held / whole)
        whole = layout.sum(axis=1)
        held = np.divide(plan.layer_bytes, whole, out=np.zeros_like(whole), where=whole > 0)
        share = layout * held[:, None]
        self.units: list[tuple[int, int, int]] = []            # (stage, chunk, part)
        self._push: dict[tuple[int, int, int, int], _Traffic] = {}   # (replica, stage, chunk, part)
        self._pull: dict[tuple[int, int, int, int], _Traffic] = {}   # (replica, stage, chunk, part)
        self._waits: dict[int, tuple[tuple[int, tuple[int, int]], ...]] = {}  # u -> (layer position, (chunk, part))
        self.pull_order: list[list[tuple[int, int]]] = []            # per stage: parts in forward order
        for s in range(P):
            self.pull_order.append([])
            for c in forward_order[s]:
                u = c * P + s
                first = {b: min(part.layers) for b, part in enumerate(plan.parts[u])}
                ordered = sorted(first, key=first.__getitem__)          # the part holding the first layers first
                self.pull_order[s] += [(c, b) for b in ordered]
                self._waits[u] = tuple((plan.virtual[u].index(first[b]), (c, b)) for b in ordered)
            for c in range(plan.chunks):
                for b, part in enumerate(plan.parts[c * P + s]):
                    self.units.append((s, c, b))
                    shards = integer_split(share[list(part.layers)].sum(axis=0), part.bytes)
                    for kind, table in (("ps_push", self._push), ("ps_pull", self._pull)):
                        sched = collectives.schedule("sharded", T, part.bytes, collective=kind, servers=k,
                                                     shard_bytes=shards)
                        for d in range(D):
                            table[(d, s, c, b)] = _traffic(sched, plan.placement.tensor_group(d, s),
                                                           servers.server_ranks, servers.apply_s, flows)
        self._pull_all = {}                                            # (replica, stage): every part at once
        for d in range(D):
            for s in range(P):
                parts = [self._pull[(d, s, c, b)] for c, b in self.pull_order[s]]
                self._pull_all[(d, s)] = flows.prepare(*([x for t in parts for x in getattr(t, f)]
                                                          for f in ("src", "dst", "nbytes")))
        self.units_of_stage = [sum(1 for u in self.units if u[0] == s) for s in range(P)]
        touch = np.zeros(k, dtype=np.int64)
        for (s, c, b) in self.units:
            touch += self._push[(0, s, c, b)].per_shard > 0
        self.touch = touch.tolist()                       # units of one replica that touch each shard
        self._unit_per_shard = max(self.touch, default=0) <= 1
        self.stage_done = [Quorum(env, n) for n in self.units_of_stage]   # (replica, clock): stage's units done
        self._units_done: dict[tuple[int, int], int] = {}                 # (replica, clock) -> units applied or dropped
        self._shard_count: dict[tuple[int, int, int], int] = {}           # (replica, clock, shard) -> units seen
        self._shard_dropped: set[tuple[int, int, int]] = set()
        self._pulled: dict[tuple, simpy.Event] = {}                       # (replica, stage, clock, part) arrived
        self._pull_started: dict[tuple, float] = {}
        self._keys_read: dict[tuple[int, int], int] = {}                  # (replica, clock) -> parts started
        self._read: set[tuple[int, int]] = set()                          # (replica, clock) read by some stage
        self._applied_any: set[tuple[int, int]] = set()                   # (replica, clock) with a unit applied
        self._active = [0] * (D * P)                                      # transfers in flight per rank process
        self._since = [0.0] * (D * P)
        self.busy = [[0.0] * iterations for _ in range(D * P)]            # seconds with a transfer in flight

    @property
    def contributors(self) -> int:
        """Replicas whose samples one step trains (D − b with backup workers)."""
        return self.protocol.contributors

    @property
    def algorithm(self) -> str:
        return f"parameter_server/{self.protocol.name}"

    def start(self) -> None:
        """Nothing runs on its own: servers act when pushes arrive."""

    # -- what a rank asks ----------------------------------------------------------------------
    def more(self, replica: int, clock: int) -> bool:
        return self.protocol.more(replica, clock)

    def tag(self, replica: int, clock: int) -> int:
        return self.protocol.tag(replica, clock)

    def forward_waits(self, u: int) -> tuple[tuple[int, Any], ...]:
        return self._waits.get(u, ()) if self.plan.overlap else ()

    def gate(self, rank: Any, clock: int) -> simpy.Event | None:
        """The protocol's wait before reading everything (without overlap); with overlap each part has its own."""
        return None if self.plan.overlap else self.protocol.gate(rank.replica, clock)

    def fetch(self, rank: Any, clock: int) -> simpy.Event | None:
        """Without overlap: pull every part at once; the rank waits for the event. With overlap: the first
        iteration pulls every part now; later ones were started part by part as each part's gate opened
        (``_unit_done``), and the forward waits for each part (``None`` here)."""
        d, s = rank.replica, rank.stage
        if self.plan.overlap:
            if clock == 0:
                for unit in self.pull_order[s]:
                    self._start_pull(rank, clock, unit)
            return None
        if (d, clock) not in self._read:
            self._read.add((d, clock))
            self.log.read(d, clock, self.servers.versions())
        event, start = self._transfer(rank, self._pull_all[(d, s)])
        event.callbacks.append(lambda _e: self._transferred(rank, clock, start, "pull"))
        return event

    def _start_pull(self, rank: Any, clock: int, unit: tuple[int, int]) -> None:
        """Pull one part for ``clock`` now (its gate is open); the forward waits on its arrival."""
        d, s = rank.replica, rank.stage
        key = (d, s, clock, unit)
        self._pull_started[key] = self.env.now
        started = self._keys_read.get((d, clock), 0) + 1
        self._keys_read[(d, clock)] = started
        if started == len(self.units):        # the replica's last part is read now: that is its view
            del self._keys_read[(d, clock)]
            self.log.read(d, clock, self.servers.versions())
        traffic = self._pull[(d, s, *unit)]
        arrived, start = self._transfer(rank, traffic.flows)

        def pulled(_e: simpy.Event) -> None:
            self._transferred(rank, clock, start, f"pull {unit[0]}.{unit[1]}")
            self._param_event(key).succeed()

        arrived.callbacks.append(pulled)

    def _param_event(self, key: tuple) -> simpy.Event:
        ev = self._pulled.get(key)
        if ev is None:
            ev = self._pulled[key] = self.env.event()
        return ev

    def param_ready(self, rank: Any, clock: int, unit: tuple[int, int]) -> simpy.Event:
        """Fires when this stage's part ``unit`` of the parameters has arrived for ``clock``."""
        return self._param_event((rank.replica, rank.stage, clock, unit))

    def param_wait_split(self, rank: Any, clock: int, unit: tuple[int, int], waited_from: float) -> float:
        """Of a wait for ``unit`` that began at ``waited_from`` and ends now: the seconds spent before its
        pull could start (waiting for peers), the rest being the transfer."""
        key = (rank.replica, rank.stage, clock, unit)
        del self._pulled[key]
        started = self._pull_started.pop(key)
        return min(max(0.0, started - waited_from), self.env.now - waited_from)

    def _gate_parts(self, rank: Any, clock: int, unit: tuple[int, int, int]) -> None:
        """This replica's ``unit`` of ``clock`` is applied (or dropped): pull it for ``clock + 1`` once its
        gate opens."""
        d = rank.replica
        if not self.protocol.more(d, clock + 1):
            return
        self.tag(d, clock + 1)
        gate = self.protocol.key_gate(d, clock + 1, unit)
        part = unit[1:]
        if gate is None:
            self._start_pull(rank, clock + 1, part)
        else:
            gate.callbacks.append(lambda _e: self._start_pull(rank, clock + 1, part))

    def submit(self, rank: Any, clock: int, chunk: int, part: int) -> None:
        """Push one gradient part from the stage's T devices to the servers that hold it.

        With ``communication.priority`` (P3's push scheduling) a stage process keeps one push in flight
        and sends next the queued part the next forward needs first, so the first layers' gradients do
        not share the link with the rest of the big last layers'.
        """
        if not self.plan.priority:
            self._push_now(rank, clock, chunk, part)
            return
        key = (rank.replica, rank.stage)
        first = min(self.plan.parts[chunk * self.plan.sizes.pipeline + rank.stage][part].layers)
        heapq.heappush(self._send_queue.setdefault(key, []), (clock, chunk, first, part, rank))
        if key not in self._sending:
            self._send_next(key)

    def _send_next(self, key: tuple[int, int]) -> None:
        queue = self._send_queue.get(key)
        if not queue:
            self._sending.discard(key)
            return
        clock, chunk, _, part, rank = heapq.heappop(queue)
        self._sending.add(key)
        self._push_now(rank, clock, chunk, part)

    def _push_now(self, rank: Any, clock: int, chunk: int, part: int) -> None:
        d, s = rank.replica, rank.stage
        traffic = self._push[(d, s, chunk, part)]
        arrived, start = self._transfer(rank, traffic.flows)

        def pushed(_e: simpy.Event) -> None:
            self._transferred(rank, clock, start, f"push {chunk}.{part}")
            self._arrived(rank, clock, (s, chunk, part), traffic)
            if self.plan.priority:
                self._send_next((d, s))

        arrived.callbacks.append(pushed)

    def _arrived(self, rank: Any, clock: int, unit: tuple[int, int, int], traffic: _Traffic) -> None:
        d = rank.replica
        tag = self.protocol.tag(d, clock)
        accepted = self.protocol.accept(tag, d)
        if accepted:
            self._applied_any.add((d, clock))
            ends = self.servers.apply(traffic.touched, traffic.apply_s, d, rank.traced)
            finish = max(ends, default=self.env.now)
        else:
            ends, finish = None, self.env.now
        if self._unit_per_shard:                 # one unit of a replica per shard: it is the last one there
            completes, ends_at = (traffic.touched, ends) if accepted else ((), ())
        else:
            completes, ends_at = self._last_units(d, clock, accepted, traffic, ends)
        if completes:                            # FIFO queues: when each completes is known now
            self.log.queued(d, clock, completes, self.servers.complete(completes, ends_at))
            if self.learner is not None:
                for j, end in zip(completes, ends_at, strict=True):
                    self.env.timeout(end - self.env.now).callbacks.append(self._learner_apply(d, clock, j))
        self._unit_finish(rank, clock, tag, accepted, unit, finish)

    def _last_units(self, d: int, clock: int, accepted: bool, traffic: _Traffic, ends: list[float] | None
                    ) -> tuple[list[int], list[float]]:
        """The shards where this unit was the replica's last of ``clock`` (and none of them was dropped), and
        when its update there ends."""
        completes, ends_at = [], []
        for i, j in enumerate(traffic.touched):
            if self.touch[j] > 1:                # more of its units touch shard j: count them
                key = (d, clock, j)
                n = self._shard_count.get(key, 0) + 1
                if not accepted:
                    self._shard_dropped.add(key)
                if n < self.touch[j]:
                    self._shard_count[key] = n
                    continue
                self._shard_count.pop(key, None)
                if key in self._shard_dropped:
                    self._shard_dropped.discard(key)
                    continue
            elif not accepted:
                continue
            completes.append(j)
            ends_at.append(ends[i])
        return completes, ends_at

    def _unit_finish(self, rank: Any, clock: int, tag: int, accepted: bool, unit: tuple[int, int, int],
                     finish: float) -> None:
        done = self.env.timeout(finish - self.env.now)
        done.callbacks.append(lambda _e: self._unit_done(rank, clock, tag, accepted, unit))

    def _learner_apply(self, replica: int, clock: int, shard: int) -> Callable[[simpy.Event], None]:
        def apply(_event: simpy.Event) -> None:
            self.log.apply_shard(replica, clock, shard)
        return apply

    def _unit_done(self, rank: Any, clock: int, tag: int, accepted: bool, unit: tuple[int, int, int]) -> None:
        d = rank.replica
        if accepted:
            self.protocol.unit_applied(d, clock, tag, unit)
        self.stage_done[rank.stage].arrive((d, clock))
        done = self._units_done.get((d, clock), 0) + 1
        if done < len(self.units):
            self._units_done[(d, clock)] = done
        else:                                    # every unit of the replica's push: it is complete
            self._units_done.pop((d, clock), None)
            if (d, clock) in self._applied_any:     # a push dropped whole (a late backup worker) counts nowhere
                self.protocol.replica_applied(d, clock)
            self._read.discard((d, clock))
            applied = (d, clock) in self._applied_any
            self._applied_any.discard((d, clock))
            self.log.completed(d, clock, applied, synchronous=isinstance(self.protocol, BSP))
        if self.plan.overlap:          # after the bookkeeping above: a read now sees this push applied
            self._gate_parts(rank, clock, unit)

    def step_done(self, rank: Any, clock: int) -> simpy.Event:
        """This stage's units of ``clock`` have been applied (or dropped) at every shard."""
        return self.stage_done[rank.stage].wait((rank.replica, clock))

    def peers_ready_at(self, rank: Any, clock: int) -> None:
        return None                     # waiting for peers happens at the next gate

    def after_step(self, rank: Any, clock: int) -> None:
        return None                     # the servers applied the update: nothing follows on the device

    # -- flows and their busy time -------------------------------------------------------------
    def _transfer(self, rank: Any, group: FlowGroup) -> tuple[simpy.Event, float]:
        """Start a prepared group of flows for ``rank`` now; returns their arrival event and the start time.
        The caller's callback on that event calls ``_transferred`` (one callback per transfer, not two)."""
        key = rank.index
        if self._active[key] == 0:
            self._since[key] = self.env.now
        self._active[key] += 1
        return self.flows.start(group), self.env.now

    def _transferred(self, rank: Any, clock: int, start: float, name: str) -> None:
        """A transfer of ``rank`` has arrived: busy time (transfers in flight, counted once) and its span."""
        key, now = rank.index, self.env.now
        self._active[key] -= 1
        if self._active[key] == 0 and clock < self.iterations:
            self.busy[key][clock] += now - self._since[key]
        if rank.traced and now > start:
            rank.span(name, start, now, clock)

    # -- what the results ask ---------------------------------------------------------------------
    def communication_s(self) -> np.ndarray:
        """Per iteration: seconds each stage process had a pull or push in flight (mean over processes)."""
        return np.mean(self.busy, axis=0)

    def bytes_per_iteration(self) -> np.ndarray:
        return np.full(self.iterations, self.flows.bytes_carried / self.iterations)

    def step_ends(self) -> np.ndarray | None:
        return self.protocol.step_ends()

    @property
    def per_worker_clock(self) -> bool:
        return self.protocol.per_worker_clock

    def summary(self) -> dict[str, Any]:
        now = self.env.now
        return {"sync": self.protocol.name, "servers": self.servers.k,
                "server_utilization": self.servers.utilization(now), **self.log.summary()}

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        now, srv = self.env.now, self.servers
        tables = {"servers": [{"server": j, "device_rank": rank, "shard_bytes": float(srv.shard_bytes[j]),
                               "busy_s": float(srv.busy_s[j]),
                               "utilization": float(srv.busy_s[j] / now) if now else 0.0}
                              for j, rank in enumerate(srv.server_ranks)]}
        tables.update(self.log.tables())
        return tables

    def run_info(self) -> dict[str, Any]:
        return {"flows": self.flows.flows_started}


def build_ps_sync(config: Config, env: simpy.Environment, hw: ResolvedHardware, network: Network,
                  plan: ParallelPlan, trace: Trace, streams: Streams,
                  learner_for: Callable[..., Learner | None]) -> tuple[PSSync, Learner | None]:
    """Servers placed and sharded, a protocol, the update log and the learner, wired to the flow model."""
    from .job import server_device

    comm, D = config.communication, plan.sizes.data
    n_devices = network.devices
    try:
        ranks = server_ranks(plan.placement.device, comm.servers, comm.server_placement, n_devices,
                             plan.placement.device.size)
    except ValueError as e:
        hint = ("" if comm.server_placement == "colocated"
                else " (lower parallelism.data, or use server_placement: colocated)")
        raise ConfigError(f"communication.servers: {e}{hint}") from None
    if config.sync.backup_workers >= D:
        raise ConfigError(f"sync.backup_workers: must be less than the {D} workers, got {config.sync.backup_workers}")
    whole = np.array([la.params * hw.model.bytes_per_param for la in hw.model.layers], dtype=float)
    layout = shard_layout(whole, comm.servers, comm.sharding)
    device = server_device(config, hw)
    servers = ParameterServers(env, ranks, np.zeros(comm.servers), lambda b: compute.server_apply_time(b, device),
                               trace)
    units = sum(len(plan.parts[u]) for u in range(plan.virtual_stages))
    protocol = make_protocol(config.sync, env, D, config.training.iterations, units)
    learner = learner_for(config, env, D, comm.servers, streams)
    log = UpdateLog(protocol, learner)
    forward_order = [sorted({op.chunk for op in plan.ops[s]}, key=[op.chunk for op in plan.ops[s]].index)
                     for s in range(plan.sizes.pipeline)]
    sync = PSSync(env, plan, FlowSimulator(env, network), servers, layout, protocol, log, learner,
                  config.training.iterations, trace, forward_order)
    servers.shard_bytes = np.sum([t.per_shard for (d, *_), t in sync._push.items() if d == 0], axis=0)
    return sync, learner
