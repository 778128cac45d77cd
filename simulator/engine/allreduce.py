"""Data-parallel gradient synchronisation by collectives: one stream per pipeline stage, like an NCCL stream.

With ``sync.mode: local_sgd`` (Stich 2019; Lin et al. 2020, post-local SGD) an iteration is
*local* once ``post_local_after`` BSP iterations are done: no gradient is synchronised, each
replica steps its own model, and after every ``period``-th local step the stream averages the
parameters (``ParallelPlan.average``, fp32 allreduces) once every replica has stepped.

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
        self.algorithm = plan.algorithm

    def serve(self, iterations: int) -> Process:
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
            self.finished.arrive((it, "done"))
            if self.after:
                yield self.ready.reached((it, "step"))
                yield from self._run(it, self.after, None, chunk=-1, bucket=-1)
                self.finished.arrive((it, "gathered"))

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

    def attach(self, release_order: list[list[tuple[int, int]]]) -> None:
        """One stream per stage, serving parts in the order that stage's ranks release them."""
        P = self.plan.sizes.pipeline
        self.streams = [GradientStream(self.env, s, self.plan.sizes.data, release_order[s], self.plan,
                                       self.iterations, self.trace,
                                       "gradient allreduce" if P == 1 else f"stage {s} gradient sync", self.rounds)
                        for s in range(P)]

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
        return ()

    def submit(self, rank: Any, it: int, chunk: int, part: int) -> None:
        if not self.rounds.local(it):                   # a local step keeps its gradients
            self.streams[rank.stage].ready.arrive((it, chunk, part))

    def step_done(self, rank: Any, it: int) -> simpy.Event:
        if self.rounds.local(it):
            done = self.env.event()
            done.succeed()
            return done
        return self.streams[rank.stage].finished.reached((it, "done"))

    def peers_ready_at(self, rank: Any, it: int) -> float | None:
        return None if self.rounds.local(it) else float(self.streams[rank.stage].last_ready_at[it])

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

    def step_ends(self) -> None:
        return None                      # an iteration ends when its last rank finishes (optimizer included)

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
