"""A job's life with failures: training stretches, checkpoints, detection, recovery (SimPy, one process).

The job process trains in *stretches* — the iterations up to the next checkpoint, on
the cluster that is up (a :class:`~.faults.Variant`) — and a fault process interrupts
it (SimPy ``Interrupt``) when the :class:`~.faults.FaultSource` says a part fails or is
repaired. How long a stretch's iterations take is the engine's answer: each stretch is
a job ``build_job`` elaborates and runs (``faults.simulate: every_iteration``, and
whenever a straggler draw or the convergence problem makes iterations differ), or —
when the job is deterministic — the variant's first iterations are simulated once and,
if they repeat exactly, the rest advance in closed form (:class:`Stretch`). Both give
the same times (``tests/simulator/test_faults.py`` checks it).

Semantics (docs/config.md, "Failures"):

- a failure is noticed ``detection`` later; the iteration in flight is lost;
- ``checkpoint_restart``: every rank rolls back to the last durable checkpoint after
  ``restart`` plus the reload of the checkpoint at the storage bandwidth, on a
  replacement for each failed part (from ``spares``; none left: wait for a repair);
- ``elastic``: the survivors go on after ``reconfigure`` (a spare joins after ``swap``);
  a repaired part rejoins at the next iteration end, after ``reconfigure``;
- ``spares``: a spare takes the failed part's place after ``swap`` + ``reconfigure``,
  with the state of a surviving replica (from the checkpoint when none survives);
- a link or switch that goes down is routed around from the next iteration (the
  iteration in flight finishes on its routes); one that cuts devices off fails them;
- a parameter server's shards move to the survivors (elastic; a spare server with
  ``spares``): the updates its shards took since the last checkpoint are lost and
  counted, and the learner's parameters there go back to the checkpoint.

Checkpoints drain the job (a consistent snapshot, like ``torch.save`` after the
optimizer step): blocking ones cost the model states over the storage bandwidth;
asynchronous ones cost the device-to-host snapshot and are durable once the
background write ends (a failure before then loses that checkpoint).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx
import numpy as np
import simpy

from simulator.config import Config, ConfigError
from simulator.results import Result, Trace
from simulator.rng import Streams
from simulator.storage import checkpoint_cost, young_daly_interval

from .faults import Fault, FaultSource, Variant, cut_off, mean_time_to_failure
from .learning import LearnerState

__all__ = ["Lifecycle", "Stretch", "Timings", "simulate_with_faults"]

PROBE = 6                   # iterations the closed form is fitted on (after warm-up)
FULL_LIMIT = 200_000        # iterations simulated one by one at most (every_iteration)
EVENT_LIMIT = 1_000_000     # failures and repairs one run may take
STALL_LIMIT = 10_000        # of them in a row without an iteration kept (the job cannot make progress)
STRETCH_LIMIT = 10_000_000  # checkpoint stretches one run may take
_TIE = 1e-9                 # relative: iteration times that repeat "exactly"


@dataclass
class Stretch:
    """The iteration ends of ``n`` iterations on one variant, relative to the stretch's start.

    ``head`` holds the simulated ends; after it every iteration takes ``period`` (0: the head
    is all of them). ``job`` is the engine's job when it was simulated in full (its learner).
    """

    head: np.ndarray
    period: float
    n: int
    samples: int
    job: Any = None

    def end(self, k: int) -> float:
        """When the first ``k`` iterations are done."""
        h = len(self.head)
        if k <= 0:
            return 0.0
        if k <= h:
            return float(self.head[k - 1])
        return float(self.head[-1]) + self.period * (k - h)

    def done_by(self, t: float) -> int:
        """Iterations finished by ``t`` (an iteration ending exactly at ``t`` counts)."""
        h = len(self.head)
        if h == 0 or t < self.head[-1] or self.period == 0 or self.n <= h:
            return min(int(np.searchsorted(self.head, t, side="right")), self.n)
        k = h + int(math.floor((t - float(self.head[-1])) / self.period))
        while k > h and self.end(k) > t:
            k -= 1
        while k < self.n and self.end(k + 1) <= t:
            k += 1
        return min(k, self.n)


class Timings:
    """The engine's iteration times per variant: probed once and extrapolated, or simulated per stretch."""

    def __init__(self, config: Config, base: nx.Graph, closed_form: bool):
        self.config, self.base, self.closed_form = config, base, closed_form
        self._probes: dict[Variant, Stretch] = {}
        self._full: dict[tuple, Stretch] = {}
        self.jobs_simulated = 0
        self.iterations_simulated = 0

    def _run(self, variant: Variant, n: int, segment: int, start: LearnerState | None):
        from .job import build_job

        config, graph = variant.job_inputs(self.config, self.base)
        training = config.training.model_copy(update={"iterations": n, "warmup": min(config.training.warmup, n - 1),
                                                      "replications": 1})
        config = config.model_copy(update={"training": training, "faults": None})
        try:
            job = build_job(config, graph=graph, segment=segment, learner_start=start).run()
        except ConfigError as e:
            raise ConfigError(f"faults: the cluster left after {variant.describe()} cannot run this job ({e})") \
                from None
        self.jobs_simulated += 1
        self.iterations_simulated += n
        return job, iteration_ends(job, n), int(job.sync.contributors * config.workload.batch_per_device)

    def probe(self, variant: Variant) -> Stretch:
        """The variant's first iterations; ``period`` > 0 when they repeat (then the rest is closed form)."""
        if variant not in self._probes:
            m = min(self.config.training.iterations, self.config.training.warmup + PROBE)
            job, ends, samples = self._run(variant, m, 0, None)
            d = np.diff(np.concatenate([[0.0], ends]))
            steady = d[1:] if len(d) > 2 else d[:0]
            periodic = len(steady) >= 2 and bool(np.all(np.abs(steady - steady[-1]) <= _TIE * steady[-1]))
            self._probes[variant] = Stretch(ends, float(steady[-1]) if periodic else 0.0, m, samples, job)
        return self._probes[variant]

    def stretch(self, variant: Variant, n: int, segment: int, start: LearnerState | None) -> Stretch:
        """``n`` iterations on ``variant``: closed form when the probe repeats, else simulated (cached if exact)."""
        if self.closed_form:
            probe = self.probe(variant)
            if probe.period > 0 or n == probe.n:
                return Stretch(probe.head[:n], probe.period, n, probe.samples)
            key = (variant, n)
            if key not in self._full:
                job, ends, samples = self._run(variant, n, 0, None)
                self._full[key] = Stretch(ends, 0.0, n, samples)
            return self._full[key]
        job, ends, samples = self._run(variant, n, segment, start)
        return Stretch(ends, 0.0, n, samples, job)


def iteration_ends(job: Any, n: int) -> np.ndarray:
    """When each of a job's ``n`` iterations ended: its step end, or its last rank's end (ASP: its last replica)."""
    steps = job.sync.step_ends()
    if steps is not None and len(steps) == n:
        return np.asarray(steps, dtype=float)
    ends = np.zeros(n)
    for r in job.records:
        if r.iteration < n:
            ends[r.iteration] = max(ends[r.iteration], r.end_s)
    return np.maximum.accumulate(ends)


@dataclass
class Phase:
    kind: str                    # train | lost | checkpoint | detection | restart | waiting
    start: float
    end: float
    iterations: int = 0
    samples: int = 0
    cause: int | None = None     # index of the failure row it is spent on
    done: int = 0                # iterations kept when it ended (before any rollback it leads to)


@dataclass
class _State:
    done: int = 0                # iterations kept (the model's progress)
    durable: int = 0             # iteration of the last durable checkpoint
    durable_state: LearnerState | None = None
    durable_phase: int = 0       # phases before this index are behind the durable checkpoint
    learner: LearnerState | None = None
    since_checkpoint: float = 0.0  # training seconds since the last checkpoint (time-based intervals)
    failed: set = field(default_factory=set)          # device ranks down, waiting for a spare or repair
    dropped: set = field(default_factory=set)         # elastic: device ranks the job goes on without
    partitioned: set = field(default_factory=set)     # elastic: of those, the ones a network fault cut off
    servers_down: set = field(default_factory=set)
    down_links: set = field(default_factory=set)
    down_switches: set = field(default_factory=set)
    degraded: dict = field(default_factory=dict)
    pool: float = math.inf       # spares on hand
    segment: int = 0
    stopped: str = ""            # why the job could not go on (nothing left to run on)
    pending_write: tuple | None = None   # asynchronous checkpoint: (iteration, state, phase index, durable at)


class Lifecycle:
    """The job process and the fault process of one faulted run (see the module docstring)."""

    def __init__(self, config: Config, base: nx.Graph, timings: Timings, healthy: Any, seed_streams: Streams):
        self.config, self.base, self.timings, self.healthy = config, base, timings, healthy
        self.faults = config.faults
        self.env = simpy.Environment()
        self.total = config.training.iterations
        plan = healthy.plan
        D, P, T = plan.placement.device.shape
        self.D, self.devices = D, D * P * T
        self.replica_of = {int(plan.placement.device[d, s, t]): d for d in range(D) for s in range(P) for t in range(T)}
        self.ps = config.communication.pattern == "parameter_server"
        self.servers = config.communication.servers if self.ps else 0
        self.source = FaultSource(self.faults, seed_streams, devices=self.devices, graph=base, servers=self.servers)
        self.policy = self.faults.recovery.policy
        spares = self.faults.recovery.spares
        self.state = _State(pool=(0 if self.policy == "elastic" else math.inf) if spares is None else spares)
        self.phases: list[Phase] = []
        self.failures: list[dict[str, Any]] = []
        self.lost_updates = 0
        self.checkpoints = 0
        probe = timings.probe(Variant())
        # the failure-free steady state every second is measured against
        self.nominal_rate = probe.samples / probe.period if probe.period > 0 else \
            float(healthy.result_summary["throughput_samples_per_s"])
        cost = checkpoint_cost(self.faults.checkpoint, healthy.hardware.model, plan.placement.host.ravel())
        self.checkpoint_bytes, self.write_s, self.snapshot_s = cost.bytes, cost.write_s, cost.snapshot_s
        self.reload_s = self.write_s
        self.blocks = not (self.ps and config.sync.mode == "asp")
        self.every_n, self.every_s = self.faults.checkpoint.every_iterations, self.faults.checkpoint.every_s
        stretches = self.total / self.every_n if self.every_n else \
            self.total * (probe.end(probe.n) / probe.n) / self.every_s if self.every_s else 1
        if stretches > STRETCH_LIMIT:
            raise ConfigError(f"faults.checkpoint.every: {self.faults.checkpoint.every} makes about "
                              f"{stretches:.3g} checkpoints in {self.total} iterations; at most {STRETCH_LIMIT:,}")
        self.server_ranks = list(healthy.sync.servers.server_ranks) if self.ps else []
        self._job: simpy.Process | None = None
        self._wake: simpy.Event | None = None
        self.source.on_push = self._woken
        self._regrow = False
        self._moved: set[int] = set()      # elastic: servers whose shards already moved to the survivors
        self._progress: Callable[[int], None] | None = None
        self.curve: list = []

    # -- running ---------------------------------------------------------------------------
    def run(self, progress: Callable[[int], None] | None = None) -> Lifecycle:
        self._progress = progress
        self._job = self.env.process(self._train_all())
        self.env.process(self._fault_process())
        self.env.run(self._job)
        return self

    def _fault_process(self):
        """Interrupt the job at each event's time; an event pushed meanwhile (a repair, a renewal) wakes it."""
        events, stalled, done = 0, 0, 0
        while self._job.is_alive:
            t = self.source.next_time()
            if t <= self.env.now:
                events += 1
                stalled, done = (0, self.state.done) if self.state.done != done else (stalled + 1, done)
                if events > EVENT_LIMIT or stalled > STALL_LIMIT:
                    raise ConfigError(
                        f"faults: {events:,} failures and repairs ({stalled:,} in a row with no progress) and "
                        f"{self.state.done} of "
                        f"{self.total} iterations done at {self.env.now:.3g} s: the job cannot make progress "
                        "(times to failure far shorter than detection + restart + a checkpoint interval)")
                self._job.interrupt(self.source.pop())
                yield self.env.timeout(0)              # let the job take it before the next one
                continue
            self._wake = self.env.event()
            waits = [self._wake, self._job] + ([] if math.isinf(t) else [self.env.timeout(t - self.env.now)])
            yield self.env.any_of(waits)

    def _woken(self, event: Fault) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    # -- the job process -----------------------------------------------------------------------
    def _train_all(self):
        st = self.state
        while st.done < self.total and not st.stopped:
            self._promote_write()
            n = self._next_stretch()
            cause = yield from self._train(n)
            if cause is None and self._regrow:          # a repaired part rejoins: the groups re-form
                self._regrow = False
                cause = yield from self._wait(self.faults.recovery.reconfigure, "restart", None)
            if cause is None and self._checkpoint_due():
                cause = yield from self._checkpoint()
            while cause is not None and not st.stopped:
                cause = yield from self._recover(cause)
        self._promote_write()

    def _variant(self) -> Variant:
        st, rec = self.state, self.faults.recovery
        alive = self.D - len(self._replicas(st.dropped))
        batch = 0
        if alive < self.D and rec.scale == "global":
            batch = math.ceil(self.D * self.config.workload.batch_per_device / alive)
        return Variant(frozenset(st.down_links), frozenset(st.down_switches), tuple(sorted(st.degraded.items())),
                       frozenset(st.dropped), alive if alive < self.D else 0,
                       self.servers - len(st.servers_down) if st.servers_down else 0, batch)

    def _next_stretch(self) -> int:
        st = self.state
        left = self.total - st.done
        if self.every_n is not None:
            return min(left, self.every_n - st.done % self.every_n)
        if self.every_s is not None:
            probe = self.timings.probe(self._variant())
            due = self.every_s - st.since_checkpoint
            trial = Stretch(probe.head, probe.period, left, probe.samples)
            k = trial.done_by(due) if due > 0 else 0
            if k < left and trial.end(k) < due:
                k += 1
            return max(1, min(k, left))
        return left

    def _checkpoint_due(self) -> bool:
        st = self.state
        if st.done >= self.total or (self.every_n is None and self.every_s is None):
            return False
        if self.every_n is not None:
            return st.done % self.every_n == 0
        return st.since_checkpoint >= self.every_s * (1 - 1e-12)

    def _wait(self, seconds: float, kind: str, cause: int | None, restartable: bool = False):
        """Spend ``seconds`` in phase ``kind``; failures arriving meanwhile are absorbed (a restart starts over).

        Returns the row of the first failure that needs a recovery (``None``: none arrived); a recovery
        phase ignores it (the recovery handles every failed part), other phases hand it on.
        """
        start, left, fatal = self.env.now, seconds, None
        if seconds <= 0:
            return None
        while left > 0:
            t0 = self.env.now
            try:
                yield self.env.timeout(left)
                left = 0.0
            except simpy.Interrupt as i:
                verdict = self._absorb(i.cause)
                left -= self.env.now - t0
                if verdict == "fatal":
                    fatal = len(self.failures) - 1 if fatal is None else fatal
                    if cause is not None:
                        self.failures[-1]["recovery"] = f"joins the recovery from {self.failures[cause]['component']}"
                    if restartable:
                        left = seconds
        self._phase(Phase(kind, start, self.env.now, cause=cause))
        return fatal

    def _phase(self, phase: Phase) -> None:
        phase.done = self.state.done
        self.phases.append(phase)
        if phase.cause is not None:
            self.failures[phase.cause]["time_lost_s"] += phase.end - phase.start

    def _train(self, n: int):
        """Train ``n`` iterations on the current variant; returns the fatal failure that stopped it, if any."""
        st = self.state
        variant = self._variant()
        start = None if st.learner is None else replace(st.learner, time_s=self.env.now)
        stretch = self.timings.stretch(variant, n, st.segment, start)
        t0, target = self.env.now, n
        while True:
            try:
                yield self.env.timeout(t0 + stretch.end(target) - self.env.now)
                break
            except simpy.Interrupt as i:
                verdict = self._absorb(i.cause)
                elapsed = self.env.now - t0
                k = stretch.done_by(elapsed)
                if verdict == "fatal":
                    self._kept(t0, stretch, k, variant, start)
                    if self.env.now > t0 + stretch.end(k):
                        self._phase(Phase("lost", t0 + stretch.end(k), self.env.now, cause=len(self.failures) - 1))
                    return len(self.failures) - 1
                if verdict in ("change", "grow"):
                    target = min(target, k + 1)      # the iteration in flight finishes on its routes
        self._kept(t0, stretch, target, variant, start)
        return None

    def _kept(self, t0: float, stretch: Stretch, k: int, variant: Variant, start: LearnerState | None) -> None:
        st = self.state
        if k <= 0:
            return
        end = t0 + stretch.end(k)
        st.done += k
        self._phase(Phase("train", t0, end, k, k * stretch.samples))
        st.since_checkpoint += end - t0
        if stretch.job is not None and stretch.job.learner is not None:
            job = stretch.job if k == stretch.n else self.timings.stretch(variant, k, st.segment, start).job
            st.learner = job.learner.state(k)
            self.curve.extend(job.learner.curve)
        st.segment += 1
        if self._progress is not None:
            self._progress(st.done - 1)

    def _checkpoint(self):
        st, ck = self.state, self.faults.checkpoint
        start = self.env.now
        blocking = self.snapshot_s if ck.asynchronous else self.write_s
        if ck.asynchronous and st.pending_write is not None and st.pending_write[3] > self.env.now:
            blocking += st.pending_write[3] - self.env.now        # the previous write is still going
        try:
            yield self.env.timeout(blocking)
        except simpy.Interrupt as i:
            verdict = self._absorb(i.cause)
            self._phase(Phase("checkpoint", start, self.env.now))
            if verdict == "fatal":
                return len(self.failures) - 1
            return (yield from self._checkpoint_rest(start + blocking))
        self._phase(Phase("checkpoint", start, self.env.now))
        self._commit(ck.asynchronous)
        return None

    def _checkpoint_rest(self, until: float):
        """A non-fatal event arrived during a checkpoint write: finish it (unless a failure stops it)."""
        fatal = yield from self._wait(until - self.env.now, "checkpoint", None)
        if fatal is None:
            self._commit(self.faults.checkpoint.asynchronous)
        return fatal

    def _commit(self, asynchronous: bool) -> None:
        st = self.state
        self.checkpoints += 1
        st.since_checkpoint = 0.0
        snapshot = (st.done, st.learner, len(self.phases))
        if asynchronous:
            self._promote_write()
            st.pending_write = (*snapshot, self.env.now + self.write_s)
        else:
            st.durable, st.durable_state, st.durable_phase = snapshot

    def _promote_write(self) -> None:
        st = self.state
        if st.pending_write is not None and st.pending_write[3] <= self.env.now + 1e-12:
            st.durable, st.durable_state, st.durable_phase = st.pending_write[:3]
            st.pending_write = None

    # -- faults ------------------------------------------------------------------------------------
    def _absorb(self, fault: Fault) -> str:
        """Apply one event to the state: ``fatal`` (recovery needed), ``change`` (next iteration), or ``none``."""
        st, now = self.state, self.env.now
        self._promote_write()
        row = {"time_s": now, "component": fault.describe(), "event": "failure", "origin": fault.origin,
               "recovery": "", "time_lost_s": 0.0}
        verdict = "none"
        if fault.kind == "device":
            r = int(fault.target)
            if r in st.failed or r in st.dropped:
                row["recovery"] = "none: already out of the job"
            else:
                st.failed.add(r)
                self.source.retire("device", r)
                self.source.repair(fault, now)
                verdict = "fatal"
        elif fault.kind == "server":
            if fault.target in st.servers_down:
                row["recovery"] = "none: already down"
            else:
                st.servers_down.add(fault.target)
                self.source.retire("server", fault.target)
                self.source.repair(fault, now)
                verdict = "fatal"
        elif fault.kind in ("link", "switch"):
            verdict = self._network_fault(fault, row)
        else:                                   # a repair
            row["event"] = "repair"
            verdict = self._repaired(fault, row)
            self._regrow = self._regrow or verdict == "grow"
        self.failures.append(row)
        return verdict

    def _network_fault(self, fault: Fault, row: dict) -> str:
        st, now = self.state, self.env.now
        key, switch = fault.target, fault.kind == "switch"
        if (switch and key in st.down_switches) or (not switch and key in st.down_links):
            row["recovery"] = "none: already down"
            return "none"
        self.source.retire(fault.kind, key)
        if fault.mode == "degrade":
            row["event"] = "degrade"
            if switch:
                for u, v in self.base.edges(key):
                    st.degraded[_ek(u, v)] = fault.factor * st.degraded.get(_ek(u, v), 1.0)
            else:
                st.degraded[key] = fault.factor * st.degraded.get(key, 1.0)
            row["recovery"] = f"bandwidth x {fault.factor:g} from the next iteration"
            self.source.repair(fault, now)
            return "change"
        (st.down_switches if switch else st.down_links).add(key)
        training = set(range(self.devices)) - st.dropped - st.failed
        graph = self._variant().graph(self.base)
        cut = {_original(r, st.dropped) for r in cut_off(graph)}
        lost = cut & training
        servers = {i for i, r in enumerate(self.server_ranks) if r in cut} - st.servers_down
        self.source.repair(fault, now)
        if not lost and not servers:
            row["recovery"] = "rerouted from the next iteration"
            return "change"
        row["recovery"] = "partition: " + ", ".join(
            ([f"devices {sorted(lost)}"] if lost else []) + ([f"servers {sorted(servers)}"] if servers else [])) + \
            " cut off"
        st.servers_down |= servers
        if self.policy != "elastic":         # the job comes back on healthy hardware of the same shape
            (st.down_switches if switch else st.down_links).discard(key)
            self.source.renew(fault.kind, key, now)
        else:                                # they come back when the network does
            st.partitioned |= lost | {self.server_ranks[i] for i in servers}
            st.dropped |= {self.server_ranks[i] for i in servers}
            self._moved -= servers
        for r in sorted(lost):
            st.failed.add(r)
            self.source.retire("device", r)
        return "fatal"

    def _repaired(self, fault: Fault, row: dict) -> str:
        st, now = self.state, self.env.now
        kind = fault.repaired
        if kind == "device":
            r = int(fault.target)
            if r in st.dropped and r not in st.failed:       # elastic: the part comes back
                st.dropped.discard(r)
                self.source.renew("device", r, now)
                row["recovery"] = "rejoins at the next iteration end"
                return "grow"
            st.pool += 1
            row["recovery"] = "back in the spare pool"
            return "none"
        if kind == "server":
            if fault.target in st.servers_down and self.policy == "elastic":
                st.servers_down.discard(fault.target)
                self._moved.discard(fault.target)
                st.dropped.discard(self.server_ranks[fault.target])
                self.source.renew("server", fault.target, now)
                row["recovery"] = "rejoins at the next iteration end"
                return "grow"
            return "none"
        key = fault.target
        if fault.mode == "degrade":
            edges = [_ek(u, v) for u, v in self.base.edges(key)] if kind == "switch" else [key]
            for e in edges:
                st.degraded.pop(e, None)
        else:
            (st.down_switches if kind == "switch" else st.down_links).discard(key)
        self.source.renew(kind, key, now)
        row["recovery"] = "back in service from the next iteration"
        return "grow" if self._reconnected(row) else "change"

    def _reconnected(self, row: dict) -> bool:
        """Elastic: devices a partition cut off that the network reaches again rejoin."""
        st = self.state
        if not st.partitioned:
            return False
        keep = st.dropped - st.partitioned
        graph = replace(self._variant(), dropped=frozenset(keep)).graph(self.base)
        still = {_original(r, keep) for r in cut_off(graph)}
        back = st.partitioned - still
        for r in back:
            st.partitioned.discard(r)
            st.dropped.discard(r)
            st.failed.discard(r)
            if r in self.server_ranks:
                i = self.server_ranks.index(r)
                st.servers_down.discard(i)
                self._moved.discard(i)
        if back:
            row["recovery"] += f"; devices {sorted(back)} rejoin"
        return bool(back)

    # -- recovery ------------------------------------------------------------------------------------
    def _recover(self, cause: int):
        """Recover from the failure in row ``cause`` (more may arrive meanwhile); returns a further one or None."""
        row = self.failures[cause]
        if self.blocks or self.policy == "checkpoint_restart":
            yield from self._wait(self.faults.detection, "detection", cause)
        if self.policy == "checkpoint_restart" or self._nothing_left():
            row["recovery"] = (row["recovery"] + "; " if row["recovery"] else "") + "restart from the last checkpoint"
            yield from self._restart(cause)
        elif self.policy == "elastic":
            yield from self._elastic(cause, row)
        else:
            yield from self._swap(cause, row)
        self._regrow = False            # the recovery re-formed the groups with whoever is back
        return None

    def _replicas(self, ranks: set[int]) -> set[int]:
        """The data-parallel replicas the device ranks ``ranks`` belong to (server devices belong to none)."""
        return {self.replica_of[r] for r in ranks if r in self.replica_of}

    def _nothing_left(self) -> bool:
        """No replica (or no server) survives: only a restart from the checkpoint can go on."""
        st = self.state
        survivors = self.D - len(self._replicas(st.failed | st.dropped))
        return survivors == 0 or (self.ps and len(st.servers_down) == self.servers)

    def _replacements(self, cause: int):
        """Take a spare for every failed device; wait for repairs while none is on hand."""
        st = self.state
        while st.pool < len(st.failed):
            if self.faults.repair is None or math.isinf(self.source.next_time()):
                st.stopped = f"no spare and no repair for devices {sorted(st.failed)}"
                return
            start = self.env.now
            try:
                yield self.env.timeout(self.source.next_time() - self.env.now)
            except simpy.Interrupt as i:
                self._absorb(i.cause)
            self._phase(Phase("waiting", start, self.env.now, cause=cause))
        st.pool -= len(st.failed)

    def _restart(self, cause: int):
        st = self.state
        yield from self._replacements(cause)
        if st.stopped:
            return
        reload = self.reload_s if st.durable > 0 else 0.0
        yield from self._wait(self.faults.recovery.restart + reload, "restart", cause, restartable=True)
        yield from self._replacements(cause)      # failures during the restart need parts too
        if st.stopped:
            return
        self._rollback(cause)
        for r in sorted(st.failed):
            self.source.renew("device", r, self.env.now)
        for s in sorted(st.servers_down):
            self.source.renew("server", s, self.env.now)
        st.failed.clear()
        st.servers_down.clear()

    def _rollback(self, cause: int) -> None:
        st = self.state
        for p in self.phases[st.durable_phase:]:     # only the stretches since the checkpoint are kept there
            if p.kind == "train":
                p.kind, p.cause = "lost", cause
                self.failures[cause]["time_lost_s"] += p.end - p.start
        st.durable_phase = len(self.phases)
        st.done, st.learner = st.durable, st.durable_state
        st.since_checkpoint = 0.0
        st.pending_write = None

    def _elastic(self, cause: int, row: dict):
        st, rec = self.state, self.faults.recovery
        spares_in = 0
        while st.failed or st.servers_down - self._moved:
            spare = int(min(st.pool, len(st.failed)))
            if spare:
                st.pool -= spare
                spares_in += spare
                yield from self._wait(rec.swap, "restart", cause)
                for r in sorted(st.failed)[:spare]:
                    st.failed.discard(r)
                    self.source.renew("device", r, self.env.now)
            st.dropped |= st.failed
            st.failed.clear()
            self._servers_move(cause)
            if self._nothing_left():
                st.failed |= st.dropped
                st.dropped.clear()
                row["recovery"] += "elastic: no survivor; restart from the last checkpoint"
                yield from self._restart(cause)
                return
            yield from self._wait(rec.reconfigure, "restart", cause, restartable=True)
        alive = self.D - len(self._replicas(st.dropped))
        row["recovery"] += f"elastic: {alive} of {self.D} replicas go on" + (f", {spares_in} spare(s) in"
                                                                          if spares_in else "")

    def _swap(self, cause: int, row: dict):
        st, rec = self.state, self.faults.recovery
        survivors = self.D - len(self._replicas(st.failed))
        while st.failed or st.servers_down:
            yield from self._replacements(cause)
            if st.stopped:
                return
            replaced = sorted(st.failed)
            yield from self._wait(rec.swap + rec.reconfigure, "restart", cause, restartable=True)
            for r in replaced:
                st.failed.discard(r)
                self.source.renew("device", r, self.env.now)
            if len(replaced) < len(st.failed) + len(replaced):
                survivors = min(survivors, self.D - len(self._replicas(st.failed | set(replaced))))
            self._servers_move(cause)
        row["recovery"] += "spare swapped in" + ("" if survivors else ", state from the checkpoint")
        if not survivors:
            self._rollback(cause)

    def _servers_move(self, cause: int) -> None:
        """Dead servers' shards go back to the checkpoint on the survivors (elastic) or a spare server."""
        st = self.state
        new = sorted(st.servers_down - self._moved)
        if not new:
            return
        since = st.done - st.durable
        self.lost_updates += since * self.healthy.sync.contributors * len(new)
        if st.learner is not None:
            slices = np.array_split(np.arange(len(st.learner.params)), self.servers)
            params = st.learner.params.copy()
            back = st.durable_state.params
            for s in new:
                params[slices[s]] = back[slices[s]]
            st.learner = replace(st.learner, params=params)
        if self.policy == "elastic":
            self._moved |= set(new)
            st.dropped |= {self.server_ranks[i] for i in new}
        else:
            for s in new:
                self.source.renew("server", s, self.env.now)
            st.servers_down -= set(new)


def _ek(u: Any, v: Any) -> tuple[str, str]:
    a, b = str(u), str(v)
    return (a, b) if a <= b else (b, a)


def _original(rank: int, dropped: set[int]) -> int:
    """The original rank of ``rank`` in a graph whose ``dropped`` devices were removed and renumbered."""
    for d in sorted(dropped):
        if d <= rank:
            rank += 1
    return rank


@dataclass
class Healthy:
    """The failure-free job the faulted run is compared with (its probe's summary and plan)."""

    plan: Any
    hardware: Any
    sync: Any
    result_summary: dict
    result: Result
    learner_start_params: np.ndarray | None


def simulate_with_faults(config: Config, progress: Callable[[int], None] | None = None,
                         shared: dict | None = None) -> Result:
    """One faulted run: the healthy probe's result, with the failures' keys, tables, trace and timeline.

    ``shared`` keeps the engine's timings between runs that differ only in their seed (replications),
    when the seed cannot change an iteration (no straggler draw, no slow or other devices, no learner).
    """
    from simulator.resolve import build_topology

    t0 = time.perf_counter()
    faults = config.faults
    base = build_topology(config)
    deterministic = config.training.convergence is None and not (
        config.stragglers.distribution != "none" and config.stragglers.sigma > 0)
    closed_form = faults.simulate == "auto" and deterministic
    if not closed_form and config.training.iterations > FULL_LIMIT:
        raise ConfigError(f"training.iterations: {config.training.iterations} iterations simulated one by one "
                          f"(random stragglers, convergence or faults.simulate: every_iteration) exceed "
                          f"{FULL_LIMIT}; use a deterministic job with faults.simulate: auto, or fewer iterations")
    st = config.stragglers
    seedless = closed_form and st.slow_fraction == 0 and not st.heterogeneity
    key = config.model_copy(update={"seed": 0, "faults": None}).model_dump_json() if seedless else None
    if shared is not None and key is not None and key in shared:
        timings = shared[key]
    else:
        timings = Timings(config, base, closed_form)
        if shared is not None and key is not None:
            shared[key] = timings
    probe = timings.probe(Variant())
    job = probe.job
    result = job.result()
    result.summary["iterations"] = config.training.iterations
    healthy = Healthy(job.plan, job.hardware, job.sync, result.summary, result,
                      None if job.learner is None else job.learner.problem.params0.copy())
    if job.learner is not None:
        healthy.learner_start_params = job.learner.problem.params0.copy()
    life = Lifecycle(config, base, timings, healthy, Streams(config.seed))
    life.state.durable_state = None if job.learner is None else LearnerState(healthy.learner_start_params)
    life.state.learner = life.state.durable_state
    life.run(progress)
    result = compose(life, result, closed_form)
    result.run_info["sim_wall_s"] = time.perf_counter() - t0
    return result


def compose(life: Lifecycle, result: Result, closed_form: bool) -> Result:
    """The faulted run's summary keys (docs/config.md, "Failures"), tables and trace."""
    config, phases, env = life.config, life.phases, life.env
    makespan = float(env.now)
    sums = {k: 0.0 for k in ("lost", "checkpoint", "detection", "restart", "waiting")}
    samples = nominal = 0.0
    iterations = 0
    for p in phases:
        if p.kind == "train":
            samples += p.samples
            iterations += p.iterations
        else:
            sums[p.kind] += p.end - p.start
    nominal = samples / life.nominal_rate
    kept = sum(p.end - p.start for p in phases if p.kind == "train")
    degraded = kept - nominal
    if abs(degraded) <= 1e-12 * max(makespan, 1.0):       # rounding of the same sums, not a slowdown
        degraded = 0.0
    lost = makespan - nominal
    faults = [r for r in life.failures if r["event"] in ("failure", "degrade")]
    summary = result.summary
    summary.update({
        "failures": len([r for r in faults if r["event"] == "failure"]),
        "completed": not life.state.stopped and life.state.done >= life.total,
        "iterations_completed": int(life.state.done),
        "wall_time_s": makespan,
        "simulated_time_s": makespan,
        "goodput": nominal / makespan if makespan > 0 else 1.0,
        "effective_throughput_samples_per_s": samples / makespan if makespan > 0 else 0.0,
        "time_lost_s": lost,
        "lost_work_s": sums["lost"],
        "checkpoint_s": sums["checkpoint"],
        "restart_s": sums["restart"],
        "detection_s": sums["detection"],
        "waiting_s": sums["waiting"],
        "degraded_s": degraded,
        "checkpoints": life.checkpoints,
        "checkpoint_bytes": life.checkpoint_bytes,
        "checkpoint_write_s": life.write_s,
        "fault_simulation": "closed_form" if closed_form else "every_iteration",
    })
    if life.ps:
        summary["lost_updates"] = int(life.lost_updates)
    if life.state.stopped:
        summary["stopped"] = life.state.stopped
    mtbf = job_mtbf(config, life.devices)
    if mtbf is not None:
        summary["job_mtbf_s"] = mtbf
        if config.faults.checkpoint.every is not None and life.write_s > 0:
            summary["young_daly_interval_s"] = young_daly_interval(life.write_s, mtbf)
    trace = Trace(result.trace.ranks, list(result.trace.events), dict(result.trace.tracks))
    result.trace = trace
    for p in phases:
        trace.span(p.kind, "job", p.start, p.end, iterations=p.iterations)
    for r in life.failures:
        trace.span(f"{r['event']}: {r['component']}", "faults", r["time_s"], r["time_s"], recovery=r["recovery"])
    result.tables["failures"] = life.failures
    result.tables["timeline"] = [{"start_s": p.start, "end_s": p.end, "phase": p.kind, "iterations": p.iterations,
                                  "samples": p.samples, "iterations_done": p.done} for p in phases]
    if life.curve:
        result.tables["convergence"] = [{"time_s": p.time_s, "updates": p.updates, "gradients": p.gradients,
                                         "loss": p.loss, "accuracy": p.accuracy} for p in life.curve]
        last = life.curve[-1]
        summary.update({"final_loss": last.loss, "final_accuracy": last.accuracy})
    result.run_info.update({"fault_jobs_simulated": life.timings.jobs_simulated,
                            "fault_iterations_simulated": life.timings.iterations_simulated})
    return result


def job_mtbf(config: Config, devices: int) -> float | None:
    """Mean time between device failures of the whole job (devices / per-device rate), when random."""
    law = config.faults.devices
    if law is None:
        return None
    return mean_time_to_failure(law) / devices
