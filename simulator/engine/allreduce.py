"""Data-parallel gradient synchronisation by collectives: one stream per pipeline stage, like an NCCL stream.

With ``sync.mode: local_sgd`` (Stich 2019; Lin et al. 2020, post-local SGD) an iteration is
*local* once ``post_local_after`` BSP iterations are done: no gradient is synchronised, each
replica steps its own model, and after every ``period``-th local step the stream averages the
parameters (``ParallelPlan.average``, fp32 allreduces) once every replica has stepped.

With ``communication.priority`` (P3, Jayarajan et al. 2019; ByteScheduler, Peng et al. 2019)
the stream always runs next the released piece whose layers the next forward needs first (a
part's collectives, cut into ``communication.partition`` pieces, so a part released later can
overtake the rest of an earlier one), applies each part's share of the optimizer step as soon as
the part is synchronised, and the next iteration's forward waits only for its own parts.

A stage's stream runs the collectives of its gradient parts (``ParallelPlan.grad_sync``)
one at a time, in the order the stage releases them; a part's collective starts when
every one of the D replicas has released it (a :class:`~.quorum.Quorum` of D) *and*
the previous collective has finished, so it overlaps with the stage's remaining
backward and with other stages' work. ZeRO-1/2 then all-gather the updated
parameters once every replica has taken its optimizer step. Durations come from the
plan (priced by ``simulator.network``); this module decides only *when*.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from simulator.parallel.plan import Collective, ParallelPlan
from simulator.results import Trace

from .quorum import Quorum

__all__ = ["AllreduceSync", "GradientStream", "LocalRounds"]

Process = Generator[simpy.Event, None, None]


class GradientStream:
    """Stage ``stage``'s data-parallel collectives across the D replicas, in release order."""

    def __init__(self, env: simpy.Environment, stage: int, replicas: int, order: list[tuple[int, int]],
                 plan: ParallelPlan, iterations: int, trace: Trace, track: str, rounds: LocalRounds):
        self.env, self.stage, self.order, self.trace, self.track = env, stage, order, trace, track
        self.plan, self.rounds = plan, rounds
        self.sync = plan.grad_sync[stage]                   # [chunk][part] -> collectives
        self.after = plan.after_step[stage]
        self.ready = Quorum(env, replicas)                 # (iteration, chunk, part) and (iteration, "step")
        self.finished = Quorum(env, 1)                      # (iteration, "done") and (iteration, "gathered")
        self.busy_s = np.zeros(iterations)
        self.bytes_sent = np.zeros(iterations)
        self.last_ready_at = np.zeros(iterations)           # when every replica had released its last part
        self.done_at = np.zeros(iterations)                 # when its last part (and its update) was done
        self.algorithm = plan.algorithm
        self.priority: dict[tuple[int, int], tuple[int, int]] | None = None   # part -> (chunk, first layer)
        self.optimizer_share: dict[tuple[int, int], Collective] = {}
        self._wake: simpy.Event | None = None

    def prioritise(self, optimizer_s: float) -> None:
        """``communication.priority``: serve by forward order, and apply each part's update when it is synced."""
        P = self.plan.sizes.pipeline
        parts = {(c, b): self.plan.parts[c * P + self.stage][b] for c, b in self.order}
        self.priority = {k: (k[0], min(part.layers)) for k, part in parts.items()}
        total = sum(part.values for part in parts.values()) or 1
        self.optimizer_share = {k: Collective("optimizer", optimizer_s * part.values / total, 0.0)
                                for k, part in parts.items()}

    def released(self) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def serve(self, iterations: int) -> Process:
        if self.priority is not None:
            yield from self._serve_by_priority(iterations)
            return
        P = self.plan.sizes.pipeline
        for it in range(iterations):
            if self.rounds.local(it):
                if self.rounds.averages(it):              # every replica has stepped: average the parameters
                    yield self.ready.reached((it, "step"))
                    yield from self._run(it, self.plan.average[self.stage], None, chunk=-1, bucket=-1)
                    self.finished.arrive((it, "gathered"))
                continue
            for c, b in self.order:
                yield self.ready.reached((it, c, b))
                self.ready.forget((it, c, b))
                nbytes = self.plan.parts[c * P + self.stage][b].bytes
                yield from self._run(it, self.sync[c][b], nbytes, chunk=c, bucket=b)
            self.last_ready_at[it] = self.ready.reached_at.pop((it, *self.order[-1]))
            self.done_at[it] = self.env.now
            self.finished.arrive((it, "done"))
            if self.after:
                yield self.ready.reached((it, "step"))
                yield from self._run(it, self.after, None, chunk=-1, bucket=-1)
                self.finished.arrive((it, "gathered"))

    def _serve_by_priority(self, iterations: int) -> Process:
        """Each time the stream is free: the next piece of the released part the next forward needs first."""
        P = self.plan.sizes.pipeline
        for it in range(iterations):
            left = {k: list(self.sync[k[0]][k[1]]) for k in self.order}
            while left:
                ready = [k for k in left if self.ready.is_reached((it, *k))]
                if not ready:
                    self._wake = self.env.event()
                    yield self._wake
                    continue
                c, b = min(ready, key=self.priority.__getitem__)
                piece = left[(c, b)].pop(0)
                yield from self._run(it, (piece,), self.plan.parts[c * P + self.stage][b].bytes, chunk=c, bucket=b)
                if not left[(c, b)]:
                    del left[(c, b)]
                    yield from self._run(it, (self.optimizer_share[(c, b)],), 0, chunk=c, bucket=b)
                    self.finished.arrive((it, c, b, "synced"))
            self.last_ready_at[it] = max(self.ready.reached_at.pop((it, *k)) for k in self.order)
            self.done_at[it] = self.env.now
            self.finished.arrive((it, "done"))

    def _run(self, it: int, work: tuple[Collective, ...], nbytes: int | None, **where: int) -> Process:
        for coll in work:
            start = self.env.now
            if coll.seconds > 0:
                yield self.env.timeout(coll.seconds)
                size = (coll.bytes if nbytes is None else nbytes) / 2**20
                self.trace.span(f"{coll.name} {size:.1f} MiB", self.track, start, self.env.now,
                                algorithm=self.algorithm, iteration=it, **where)
            self.busy_s[it] += coll.seconds
            self.bytes_sent[it] += coll.bytes


class LocalRounds:
    """Which iterations are local steps, and after which ones the parameters are averaged (local SGD)."""

    def __init__(self, mode: str, period: int, bsp_first: int):
        self.on, self.period, self.bsp_first = mode == "local_sgd", period, bsp_first

    def local(self, it: int) -> bool:
        return self.on and it >= self.bsp_first

    def averages(self, it: int) -> bool:
        return self.local(it) and (it - self.bsp_first + 1) % self.period == 0


class AllreduceSync:
    """The rank processes' view of collective gradient sync (one :class:`GradientStream` per stage)."""

    name = "allreduce"
    optimizer_on_device = True     # every replica applies the reduced gradients itself
    per_worker_clock = False

    def __init__(self, env: simpy.Environment, plan: ParallelPlan, iterations: int, trace: Trace,
                 rounds: LocalRounds | None = None):
        self.env, self.plan, self.iterations, self.trace = env, plan, iterations, trace
        self.rounds = rounds or LocalRounds("bsp", 1, 0)
        self.streams: list[GradientStream] = []
        self.synced = Quorum(env, plan.sizes.pipeline)   # iteration -> every stage's gradients are reduced
        self.stepped = Quorum(env, plan.sizes.data * plan.sizes.pipeline)   # local SGD: every rank took step it
        self.on_synced: Callable[[int], None] | None = None   # the learner's synchronous step
        self.on_local: Callable[[int, bool], None] | None = None   # local SGD: every replica stepped (averaged?)
        self.prioritised = plan.priority
        self.optimizer_on_device = not self.prioritised    # with priority the stream applies each part's update
        self._waits: dict[int, tuple[tuple[int, tuple[int, int]], ...]] = {}
        for u in range(plan.virtual_stages if self.prioritised else 0):   # where forward first needs each part
            c = u // plan.sizes.pipeline
            first = {b: min(part.layers) for b, part in enumerate(plan.parts[u])}
            ordered = sorted(first, key=first.__getitem__)
            self._waits[u] = tuple((plan.virtual[u].index(first[b]), (c, b)) for b in ordered)

    def attach(self, release_order: list[list[tuple[int, int]]]) -> None:
        """One stream per stage, serving parts in the order that stage's ranks release them."""
        P = self.plan.sizes.pipeline
        self.streams = [GradientStream(self.env, s, self.plan.sizes.data, release_order[s], self.plan,
                                       self.iterations, self.trace,
                                       "gradient allreduce" if P == 1 else f"stage {s} gradient sync", self.rounds)
                        for s in range(P)]
        if self.prioritised:
            for s, stream in enumerate(self.streams):
                stream.prioritise(float(self.plan.optimizer_s[s]))

    @property
    def contributors(self) -> int:
        """Replicas whose samples one step trains."""
        return self.plan.sizes.data

    @property
    def algorithm(self) -> str:
        return self.plan.algorithm

    def start(self) -> None:
        for stream in self.streams:
            self.env.process(stream.serve(self.iterations))
            self.env.process(self._count_done(stream))

    def _count_done(self, stream: GradientStream) -> Process:
        for it in range(self.iterations):
            if self.rounds.local(it):
                continue
            yield stream.finished.reached((it, "done"))
            stream.finished.forget((it, "done"))
            self.synced.arrive(it)
            if self.synced.is_reached(it) and self.on_synced is not None:
                self.on_synced(it)

    # -- what a rank asks ---------------------------------------------------------------
    def more(self, replica: int, clock: int) -> bool:
        return clock < self.iterations

    def tag(self, replica: int, clock: int) -> int:
        return clock

    def gate(self, rank: Any, it: int) -> None:
        return None                      # replicas hold their own parameters: nothing to wait for

    def fetch(self, rank: Any, it: int) -> None:
        return None                      # nothing to fetch

    def forward_waits(self, u: int) -> tuple[tuple[int, Any], ...]:
        """With priority: where in virtual stage ``u``'s forward each of its parts is first needed."""
        return self._waits[u] if self.prioritised else ()

    def param_ready(self, rank: Any, clock: int, part: tuple[int, int]) -> simpy.Event:
        """Priority: fires when ``part`` of the previous iteration is synchronised and applied."""
        if clock == 0:
            ev = self.env.event()
            ev.succeed()
            return ev
        return self.streams[rank.stage].finished.reached((clock - 1, *part, "synced"))

    def param_wait_split(self, rank: Any, clock: int, part: tuple[int, int], waited_from: float) -> float:
        return 0.0                                      # waiting for a part's sync is exposed communication

    def submit(self, rank: Any, it: int, chunk: int, part: int) -> None:
        if not self.rounds.local(it):                   # a local step keeps its gradients
            stream = self.streams[rank.stage]
            stream.ready.arrive((it, chunk, part))
            if stream.ready.is_reached((it, chunk, part)):
                stream.released()

    def step_done(self, rank: Any, it: int) -> simpy.Event:
        if self.prioritised:           # the next forward waits per part instead (the step ends on the stream)
            done = self.env.event()
            done.succeed()
            return done
        if self.rounds.local(it):
            done = self.env.event()
            done.succeed()
            return done
        return self.streams[rank.stage].finished.reached((it, "done"))

    def peers_ready_at(self, rank: Any, it: int) -> float | None:
        if self.rounds.local(it) or self.prioritised:
            return None
        return float(self.streams[rank.stage].last_ready_at[it])

    def after_step(self, rank: Any, it: int) -> Process | None:
        """ZeRO-1/2: the parameter all-gathers once every replica has stepped; local SGD: the averaging
        (``None``: nothing follows)."""
        stream = self.streams[rank.stage]
        if self.rounds.local(it):
            self.stepped.arrive(it)
            if self.stepped.is_reached(it):
                self.stepped.reached_at.pop(it)
                if self.on_local is not None:
                    self.on_local(it, self.rounds.averages(it))
            return self._gathered(stream, it) if self.rounds.averages(it) else None
        return self._gathered(stream, it) if stream.after else None

    def _gathered(self, stream: GradientStream, it: int) -> Process:
        stream.ready.arrive((it, "step"))
        yield stream.finished.reached((it, "gathered"))

    # -- what the results ask --------------------------------------------------------------
    def communication_s(self) -> np.ndarray:
        """Per iteration: seconds the stages' streams were busy (mean over stages)."""
        return np.mean([s.busy_s for s in self.streams], axis=0)

    def bytes_per_iteration(self) -> np.ndarray:
        return np.sum([s.bytes_sent for s in self.streams], axis=0)

    def step_ends(self) -> np.ndarray | None:
        """Priority: step i ends when every stage's last part of it is synced and applied; otherwise
        (``None``) when its last rank finishes it, optimizer included."""
        if not self.prioritised:
            return None
        return np.max([s.done_at for s in self.streams], axis=0)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"buckets": int(sum(len(p) for p in self.plan.parts))}
        if self.rounds.on:
            syncs = sum(1 for it in range(self.iterations) if not self.rounds.local(it) or self.rounds.averages(it))
            out.update({"sync": "local_sgd", "averaging_period": self.rounds.period, "sync_rounds": syncs})
        return out

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        return {}

    def run_info(self) -> dict[str, Any]:
        return {}
