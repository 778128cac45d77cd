"""The one rank process: a data-parallel worker, or the T devices of one pipeline stage of one replica.

For each iteration a rank

1. passes its synchronisation's gate (BSP barrier, SSP bound; nothing for an allreduce)
   and starts fetching parameters (parameter-server pulls; nothing for an allreduce);
2. runs its stage's ops from the plan's schedule in order: each waits for its input
   (the previous virtual stage's activation, the next one's gradient), and for the
   parameters its layers need (a pulled part), then computes — the tensor-parallel
   all-reduces and ZeRO-3 gathers are part of the op's time — and sends its output;
3. releases each gradient part to the sync as the chunk's last backward produces it
   (all of them after the last backward when ``communication.overlap`` is off);
4. waits for its gradients to be synchronised (the stage's allreduce stream; its pushes
   applied at the servers), takes the optimizer step (on the device for an allreduce;
   the servers apply it for a parameter server), then ZeRO-1/2's parameter gathers;
5. records one :class:`~simulator.results.IterationRecord` per device.

Megatron's per-layer all-reduces keep a tensor group in lockstep, so its T devices
share one process (and one trace row each). Durations all come from the
:class:`~simulator.parallel.plan.ParallelPlan`; a rank decides only *when*.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from simulator.parallel.plan import ParallelPlan
from simulator.parallel.schedules import Op
from simulator.results import IterationRecord, Trace

from .pipeline import Board, Link
from .stragglers import SlowdownModel

__all__ = ["Rank", "Stats"]

Process = Generator[simpy.Event, None, None]


@dataclass
class Stats:
    """Per-iteration tallies the summary needs (seconds of simulated time, summed over rank processes)."""

    iterations: int
    first_start: list[float] = field(init=False)  # (plain lists: one op updates them, per op)
    flush: list[float] = field(init=False)
    busy: list[float] = field(init=False)         # time spent in ops (compute and in-op communication)
    tensor: np.ndarray = field(init=False)        # tensor-parallel all-reduce time
    gathers: np.ndarray = field(init=False)       # ZeRO-3 parameter all-gathers
    sends: np.ndarray = field(init=False)         # point-to-point transfer times

    def __post_init__(self) -> None:
        n = self.iterations
        self.first_start, self.flush, self.busy = [np.inf] * n, [0.0] * n, [0.0] * n
        self.tensor, self.gathers, self.sends = (np.zeros(n) for _ in range(3))

    def op(self, it: int, start: float, end: float, busy: float, backward: bool) -> None:
        if start < self.first_start[it]:
            self.first_start[it] = start
        if backward and end > self.flush[it]:
            self.flush[it] = end
        self.busy[it] += busy

    def bubble(self, processes: int) -> np.ndarray:
        """Idle share of each iteration's pipeline span (first forward → last backward)."""
        span = np.array(self.flush) - np.array(self.first_start)
        return np.maximum(0.0, 1.0 - np.array(self.busy) / (processes * span))  # ≥ 0 up to rounding


class Rank:
    """Stage ``stage`` of replica ``replica``: its T devices, running the schedule's ops in order."""

    def __init__(self, env: simpy.Environment, replica: int, stage: int, plan: ParallelPlan, board: Board,
                 links: dict[tuple, Link], sync: Any, slowdown: SlowdownModel, stats: Stats, trace: Trace,
                 records: list[IterationRecord], on_iteration: Any, shared: dict):
        self.env, self.replica, self.stage, self.plan = env, replica, stage, plan
        self.board, self.links, self.sync, self.slowdown = board, links, sync, slowdown
        self.stats, self.trace, self.records, self.on_iteration = stats, trace, records, on_iteration
        self.ops = plan.ops[stage]
        self.devices = plan.placement.tensor_group(replica, stage).tolist()
        self.traced_devices = [dev for dev in self.devices if trace.traced(dev)]
        self.traced = bool(self.traced_devices)
        self.P, self.V = plan.sizes.pipeline, plan.virtual_stages
        self.index = replica * self.P + stage           # the rank's straggler stream
        # what the stage's ops cost and need is the same for every replica with the same tensor prices
        key = (stage, plan.tensor_f[replica].tobytes(), plan.tensor_b[replica].tobytes())
        if key not in shared:
            shared[key] = self._elaborate()
        (self.fetch_at, self.release_at, self.release_order, self.last_op, self._prices,
         self._inputs, self._simple, self._sends, self._groups) = shared[key]

    def _elaborate(self) -> tuple:
        first_f = {op.chunk: i for i, op in reversed(list(enumerate(self.ops))) if op.kind == "F"}
        last_b = {op.chunk: i for i, op in enumerate(self.ops) if op.kind == "B"}
        self.fetch_at = {i: c for c, i in first_f.items()}
        self.release_at = {i: c for c, i in last_b.items()}
        release_order = [(c, b) for c in sorted(last_b, key=last_b.__getitem__)
                         for b in range(len(self.plan.parts[c * self.P + self.stage]))]
        prices = [self._price(i, op) for i, op in enumerate(self.ops)]
        inputs = [self._needs_input(op) for op in self.ops]
        simple = [len(p[4]) == 1 and not p[4][0][1] and p[4][0][2] is None for p in prices]
        sends = [(op.kind == "F" and op.virtual_stage(self.P) < self.V - 1)
                 or (op.kind == "B" and op.virtual_stage(self.P) > 0) for op in self.ops]
        last_op = max(last_b.values())
        groups: list[list[int]] = []
        for i in range(len(self.ops)):
            prev = groups[-1][-1] if groups else None
            joins = (prev is not None and simple[prev] and simple[i] and not inputs[i] and not sends[prev]
                     and prev != last_op)
            if joins:
                groups[-1].append(i)
            else:
                groups.append([i])
        return self.fetch_at, self.release_at, release_order, last_op, prices, inputs, simple, sends, groups

    def span(self, name: str, start: float, end: float, clock: int, **args: Any) -> None:
        for dev in self.traced_devices:
            self.trace.span(name, dev, start, end, iteration=clock, **args)

    def train(self) -> Process:
        """Every iteration of this rank, in one generator (each event resumes one frame, not three)."""
        clock = 0
        while True:
            start = self.env.now
            gate = self.sync.gate(self, clock)
            if gate is not None:
                yield gate
            if not self.sync.more(self.replica, clock):     # asked after the gate: BSP counts completed steps
                return
            read_at = self.env.now
            if self.traced and read_at > start:
                self.span("wait for peers", start, read_at, clock)
            fetch = self.sync.fetch(self, clock)
            if fetch is not None:
                yield fetch
            fetched = self.env.now
            factor = self.slowdown.factor(self.index)
            tally = [0.0, 0.0, 0.0]              # compute, communication inside ops, waiting (inputs, peers)
            for group in self._groups:
                i = group[0]
                if self._inputs[i]:
                    yield from self.await_input(clock, self.ops[i], tally)
                if self._simple[i]:              # one segment each, nothing to wait for or release inside:
                    begin = ends = self.env.now  # the group's ops run back to back, one timeout for all
                    bounds = []
                    for k in group:
                        _, total, tensor, gather, _ = self._prices[k]
                        bounds.append((ends, ends := ends + (total * factor + (tensor + gather))))
                    yield self.env.timeout(ends - begin)
                    for k, (first, last) in zip(group, bounds, strict=True):
                        self.op_done(clock, k, self.ops[k], factor, tally, first, last, 0.0, 0.0)
                else:
                    yield from self.run_op(clock, i, self.ops[i], factor, tally)
                last = group[-1]
                if self._sends[last]:
                    self.send_output(clock, self.ops[last])
            backward_end = self.env.now
            yield self.sync.step_done(self, clock)
            synced = self.env.now
            if self.traced and synced > backward_end:
                self.span("wait for gradients", backward_end, synced, clock)
            step = self.plan.optimizer_s[self.stage] * factor if self.sync.optimizer_on_device else 0.0
            if step > 0:
                yield self.env.timeout(step)
                self.span("optimizer", synced, self.env.now, clock)
            stepped = self.env.now
            after = self.sync.after_step(self, clock)
            if after is not None:
                yield from after
            self.record(clock, start, read_at, fetched, backward_end, synced, stepped, step, tally)
            clock += 1

    def record(self, clock: int, start: float, read_at: float, fetched: float, backward_end: float, synced: float,
               stepped: float, step: float, tally: list[float]) -> None:
        """One record per device: compute, exposed communication and waiting of this iteration."""
        ready = self.sync.peers_ready_at(self, clock)
        peers = 0.0 if ready is None else max(0.0, min(ready, synced) - backward_end)
        wait = (read_at - start) + tally[2] + peers
        exposed = (fetched - read_at) + tally[1] + (synced - backward_end - peers) + (self.env.now - stepped)
        label = self.sync.tag(self.replica, clock)
        for dev in self.devices:
            self.records.append(IterationRecord(rank=dev, iteration=label, start_s=start, compute_s=tally[0] + step,
                                                comm_exposed_s=exposed, wait_s=wait, end_s=self.env.now))
        self.on_iteration(clock)

    def _needs_input(self, op: Op) -> bool:
        """A forward after the first virtual stage needs an activation; a backward before the last, a gradient."""
        u = op.virtual_stage(self.P)
        return (op.kind == "F" and u > 0) or (op.kind == "B" and u < self.V - 1)

    def await_input(self, clock: int, op: Op, tally: list[float]) -> Process:
        start, key = self.env.now, (clock, self.replica, op.virtual_stage(self.P), op.microbatch, op.kind)
        yield self.board.event(key)
        self.board.forget(key)
        tally[2] += self.env.now - start

    def run_op(self, clock: int, i: int, op: Op, factor: float, tally: list[float]) -> Process:
        """One op as segments: forward segments wait for their parameters, backward ones release parts."""
        forward, total, tensor, gather, segments = self._prices[i]
        start, waited, peers = self.env.now, 0.0, 0.0
        for k, (seconds, wait_for, release, share) in enumerate(segments):
            for part in wait_for:
                before = self.env.now
                yield self.sync.param_ready(self, clock, part)
                peers += self.sync.param_wait_split(self, clock, part, before)
                waited += self.env.now - before
            yield self.env.timeout(seconds * factor + (tensor * share + (gather if k == 0 else 0.0)))
            if release is not None:
                self.sync.submit(self, clock, op.chunk, release)
        self.op_done(clock, i, op, factor, tally, start, self.env.now, waited, peers)

    def op_done(self, clock: int, i: int, op: Op, factor: float, tally: list[float], start: float, now: float,
                waited: float, peers: float) -> None:
        """Tally, statistics and trace of op ``i``, which ran from ``start`` until ``now``."""
        forward, total, tensor, gather, _ = self._prices[i]
        if i == self.last_op and not self.plan.overlap:     # every part at once, after the whole backward
            for c, b in self.release_order:
                self.sync.submit(self, clock, c, b)
        work = total * factor
        tally[0] += work
        tally[1] += tensor + gather + waited - peers
        tally[2] += peers
        self.stats.op(clock, start, now, now - start - waited, not forward)
        if tensor:
            self.stats.tensor[clock] += tensor
        if gather:
            self.stats.gathers[clock] += gather
        if self.traced:
            self.span(self._name(op), start, now, clock, stage=self.stage, microbatch=op.microbatch,
                      chunk=op.chunk, compute_s=work, tensor_comm_s=tensor + gather)

    def _price(self, i: int, op: Op) -> tuple[bool, float, float, float, list]:
        """What op ``i`` costs, worked out once: (forward?, compute s, tensor s, gather s, segments)."""
        u, plan, forward = op.virtual_stage(self.P), self.plan, op.kind == "F"
        total = float(plan.compute_f[u] if forward else plan.compute_b[u])
        tensor = float((plan.tensor_f if forward else plan.tensor_b)[self.replica, u])
        gather = float(plan.gather[self.stage, op.chunk])
        segments = self._segments(i, u, forward, total)
        share = [1.0] if len(segments) == 1 else [seconds / total if total > 0 else 0.0 for seconds, *_ in segments]
        return forward, total, tensor, gather, [(*seg, sh) for seg, sh in zip(segments, share, strict=True)]

    def _segments(self, i: int, u: int, forward: bool, total: float
                  ) -> list[tuple[float, tuple, int | None]]:
        """(compute seconds, parameter parts to wait for first, part to release after) of each segment of op ``i``."""
        plan = self.plan
        if forward:
            waits = self.sync.forward_waits(u) if i in self.fetch_at else ()
            if not waits:
                return [(total, (), None)]
            layers = plan.forward_layers[u]
            cuts = sorted({0} | {pos for pos, _ in waits} | {len(layers)})
            return [(float(layers[a:b].sum()), tuple(j for p, j in waits if p == a), None)
                    for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
        if i in self.release_at and plan.overlap:
            return [(part.backward_s, (), b) for b, part in enumerate(plan.parts[u])]
        return [(total, (), None)]

    def _name(self, op: Op) -> str:
        if not self.plan.model_parallel:
            return "forward" if op.kind == "F" else "backward"
        return f"{op.kind}{op.microbatch}" + (f".{op.chunk}" if self.plan.chunks > 1 else "")

    def send_output(self, clock: int, op: Op) -> None:
        u, m = op.virtual_stage(self.P), op.microbatch
        if op.kind == "F" and u < self.V - 1:
            key, seconds, to = (clock, self.replica, u + 1, m, "F"), self.plan.send_f[self.replica, u], (u + 1) % self.P
        elif op.kind == "B" and u > 0:
            key, seconds, to = (clock, self.replica, u - 1, m, "B"), self.plan.send_b[self.replica, u - 1], \
                (u - 1) % self.P
        else:
            return
        self.stats.sends[clock] += float(seconds)
        self.links[(self.replica, self.stage, to, op.kind)].send(float(seconds), self.board, key)
