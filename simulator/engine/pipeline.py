"""Pipeline, tensor and hybrid parallelism as SimPy processes.

A :class:`StageWorker` stands for the T devices of one stage of one data-parallel
replica: Megatron's per-layer all-reduces keep a tensor group in lockstep, so the
T devices share one process (and one trace row each). It runs its op list from
the plan's schedule (:mod:`simulator.parallel.schedules`) in order; an op first
waits for its input — the previous virtual stage's activation, or the next
one's gradient — then takes the plan's compute plus tensor-parallel all-reduce
time. Its output travels over a :class:`Link` (one per direction between two
stages' devices, one transfer at a time). After a chunk's last backward, the
chunk's gradients join the stage's :class:`GradientStream`, which runs the
data-parallel collectives once every replica's share has arrived, in order, like
an NCCL stream — overlapping with the stage's remaining backwards and with other
stages' work. The optimizer step waits for the stream; ZeRO-1/2 then all-gather
the updated parameters; ZeRO-3 all-gathers a chunk's parameters before each op.

Durations all come from the :class:`~simulator.parallel.plan.ParallelPlan`; these
processes decide only *when*. :func:`simulate_pipeline` runs the whole job and
builds the ``Result`` (its summary adds ``pipeline_bubble_fraction``: the share of
the time from an iteration's first forward to its last backward that the stage
workers spent idle, averaged over workers and measured iterations).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import simpy

from simulator import compute
from simulator.config import Config
from simulator.network import Network
from simulator.parallel.plan import Collective, ParallelPlan, build_plan, stage_rows
from simulator.parallel.schedules import Op
from simulator.resolve import ResolvedHardware, resolve_hardware
from simulator.results import IterationRecord, Result, Trace, summarize
from simulator.rng import Streams

from .stragglers import SlowdownModel

__all__ = ["GradientStream", "PipelineCluster", "StageWorker", "build_pipeline", "simulate_pipeline"]

Process = Generator[simpy.Event, None, None]


@dataclass
class Stats:
    """Per-iteration tallies the summary needs (seconds of simulated time)."""

    iterations: int
    first_start: np.ndarray = field(init=False)
    flush: np.ndarray = field(init=False)
    busy: np.ndarray = field(init=False)          # Σ over stage workers of time spent in ops
    tensor: np.ndarray = field(init=False)        # Σ over stage workers of tensor-parallel all-reduce time
    gathers: np.ndarray = field(init=False)       # Σ over stage workers of ZeRO-3 parameter all-gathers
    sends: np.ndarray = field(init=False)         # Σ of point-to-point transfer times
    stream: np.ndarray = field(init=False)        # Σ over stages of gradient-stream busy time

    def __post_init__(self) -> None:
        n = self.iterations
        self.first_start, self.flush = np.full(n, np.inf), np.zeros(n)
        self.busy, self.tensor, self.gathers, self.sends, self.stream = (np.zeros(n) for _ in range(5))

    def op(self, it: int, start: float, end: float, backward: bool) -> None:
        self.first_start[it] = min(self.first_start[it], start)
        if backward:
            self.flush[it] = max(self.flush[it], end)
        self.busy[it] += end - start

    def bubble(self, workers: int) -> np.ndarray:
        """Idle share of each iteration's pipeline span (first forward → last backward)."""
        span = self.flush - self.first_start
        return np.maximum(0.0, 1.0 - self.busy / (workers * span))  # ≥ 0 up to rounding


class Board:
    """Arrival events of op inputs, keyed (iteration, replica, virtual stage, microbatch, kind)."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self._events: dict[tuple, simpy.Event] = {}

    def event(self, key: tuple) -> simpy.Event:
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = self.env.event()
        return ev

    def arrive_after(self, key: tuple, delay: float) -> None:
        """The input ``key`` arrives ``delay`` seconds from now."""
        waiting = self._events.get(key)
        if waiting is None:
            self._events[key] = self.env.timeout(delay)  # a Timeout is the arrival event itself
        else:
            self.env.timeout(delay).callbacks.append(lambda _: waiting.succeed())

    def forget(self, key: tuple) -> None:
        del self._events[key]


class Link:
    """Transfers between two stages' devices in one direction, one at a time, first come first served.

    Durations are known when a transfer is queued, so the link keeps only the time it
    becomes free (cheaper than a SimPy resource and a process per transfer, and the same).
    """

    def __init__(self, env: simpy.Environment, stats: Stats):
        self.env, self.stats, self.free_at = env, stats, 0.0

    def send(self, it: int, seconds: float, board: Board, key: tuple) -> None:
        start = max(self.env.now, self.free_at)
        self.free_at = start + seconds
        self.stats.sends[it] += seconds
        board.arrive_after(key, self.free_at - self.env.now)


class GradientStream:
    """One stage's data-parallel collectives across the D replicas, in order of readiness."""

    def __init__(self, env: simpy.Environment, stage: int, replicas: int, order: list[int],
                 sync: tuple[tuple[Collective, ...], ...], after_step: tuple[Collective, ...],
                 stats: Stats, trace: Trace):
        self.env, self.stage, self.replicas, self.order = env, stage, replicas, order
        self.sync, self.after_step, self.stats, self.trace = sync, after_step, stats, trace
        self._arrived: dict[tuple[int, int | str], int] = {}
        self._events: dict[tuple, simpy.Event] = {}
        self.track = f"stage {stage} gradient sync"

    def _event(self, *key: object) -> simpy.Event:
        ev = self._events.get(key)
        if ev is None:
            ev = self._events[key] = self.env.event()
        return ev

    def submit(self, it: int, part: int | str) -> None:
        """A replica has finished ``part`` (a chunk's gradients, or "step"); the D-th releases it."""
        n = self._arrived.get((it, part), 0) + 1
        self._arrived[(it, part)] = n
        if n == self.replicas:
            del self._arrived[(it, part)]
            self._event("ready", it, part).succeed()

    def done(self, it: int) -> simpy.Event:
        return self._event("done", it)

    def gathered(self, it: int) -> simpy.Event:
        return self._event("gathered", it)

    def serve(self, iterations: int) -> Process:
        for it in range(iterations):
            for c in self.order:
                yield self._event("ready", it, c)
                yield from self._run(it, self.sync[c], chunk=c)
            self.done(it).succeed()
            if self.after_step:
                yield self._event("ready", it, "step")
                yield from self._run(it, self.after_step, chunk=-1)
                self.gathered(it).succeed()

    def _run(self, it: int, work: tuple[Collective, ...], chunk: int) -> Process:
        for coll in work:
            start = self.env.now
            yield self.env.timeout(coll.seconds)
            self.stats.stream[it] += coll.seconds
            if coll.seconds > 0:
                self.trace.span(f"{coll.name} {coll.bytes / 2**20:.1f} MiB", self.track, start, self.env.now,
                                iteration=it, chunk=chunk)


class StageWorker:
    """The T devices of stage ``stage`` of replica ``replica``, running the schedule's ops in order."""

    def __init__(self, env: simpy.Environment, replica: int, stage: int, plan: ParallelPlan, board: Board,
                 links: dict[tuple, Link], stream: GradientStream, stats: Stats, trace: Trace,
                 slowdown: SlowdownModel, records: list[IterationRecord]):
        self.env, self.d, self.s, self.plan = env, replica, stage, plan
        self.board, self.links, self.stream, self.stats = board, links, stream, stats
        self.trace, self.slowdown, self.records = trace, slowdown, records
        self.ops = plan.ops[stage]
        self.devices = plan.placement.tensor_group(replica, stage).tolist()
        self.traced = [dev for dev in self.devices if trace.traced(dev)]
        last_b = {op.chunk: i for i, op in enumerate(self.ops) if op.kind == "B"}
        self.releases = {i: c for c, i in last_b.items()}
        self.P, self.V = plan.sizes.pipeline, plan.virtual_stages

    def train(self, iterations: int) -> Process:
        for it in range(iterations):
            start = self.env.now
            factor = self.slowdown.factor(self.d * self.P + self.s)
            tally = np.zeros(3)                      # compute, device communication, waiting for inputs
            for i, op in enumerate(self.ops):
                yield from self.await_input(it, op, tally)
                yield from self.run_op(it, op, factor, tally)
                self.send_output(it, op)
                if i in self.releases:
                    self.stream.submit(it, self.releases[i])
            backward_end = self.env.now
            yield self.stream.done(it)
            synced = self.env.now
            step = self.plan.optimizer_s[self.s] * factor
            yield from self.optimizer_step(it, step)
            compute_s = tally[0] + step
            exposed = tally[1] + (synced - backward_end) + (self.env.now - synced - step)  # + ZeRO-1/2 gathers
            for dev in self.devices:
                self.records.append(IterationRecord(rank=dev, iteration=it, start_s=start, compute_s=compute_s,
                                                    comm_exposed_s=exposed, wait_s=tally[2], end_s=self.env.now))

    def await_input(self, it: int, op: Op, tally: np.ndarray) -> Process:
        u = op.virtual_stage(self.P)
        if (op.kind == "F" and u > 0) or (op.kind == "B" and u < self.V - 1):
            start, key = self.env.now, (it, self.d, u, op.microbatch, op.kind)
            yield self.board.event(key)
            self.board.forget(key)
            tally[2] += self.env.now - start

    def run_op(self, it: int, op: Op, factor: float, tally: np.ndarray) -> Process:
        u, plan, forward = op.virtual_stage(self.P), self.plan, op.kind == "F"
        work = (plan.compute_f[u] if forward else plan.compute_b[u]) * factor
        tensor, gather = (plan.tensor_f if forward else plan.tensor_b)[self.d, u], plan.gather[self.s, op.chunk]
        comm = tensor + gather
        start = self.env.now
        yield self.env.timeout(work + comm)
        tally[:2] += (work, comm)
        self.stats.op(it, start, self.env.now, not forward)
        self.stats.tensor[it] += tensor
        self.stats.gathers[it] += gather
        name = f"{op.kind}{op.microbatch}" + (f".{op.chunk}" if plan.chunks > 1 else "")
        for dev in self.traced:
            self.trace.span(name, dev, start, self.env.now, iteration=it, stage=self.s, microbatch=op.microbatch,
                            chunk=op.chunk, compute_s=work, tensor_comm_s=comm)

    def send_output(self, it: int, op: Op) -> None:
        u, m = op.virtual_stage(self.P), op.microbatch
        if op.kind == "F" and u < self.V - 1:
            key, seconds, to = (it, self.d, u + 1, m, "F"), self.plan.send_f[self.d, u], (u + 1) % self.P
        elif op.kind == "B" and u > 0:
            key, seconds, to = (it, self.d, u - 1, m, "B"), self.plan.send_b[self.d, u - 1], (u - 1) % self.P
        else:
            return
        self.links[(self.d, self.s, to, op.kind)].send(it, float(seconds), self.board, key)

    def optimizer_step(self, it: int, seconds: float) -> Process:
        start = self.env.now
        yield self.env.timeout(seconds)
        for dev in self.traced:
            self.trace.span("optimizer", dev, start, self.env.now, iteration=it)
        if self.plan.after_step[self.s]:
            self.stream.submit(it, "step")
            yield self.stream.gathered(it)


@dataclass
class PipelineCluster:
    env: simpy.Environment
    config: Config
    hardware: ResolvedHardware
    network: Network
    plan: ParallelPlan
    workers: list[StageWorker]
    streams: list[GradientStream]
    stats: Stats
    trace: Trace
    records: list[IterationRecord]

    def run(self, progress: Callable[[int], None] | None = None) -> None:
        iterations = self.config.training.iterations
        for stream in self.streams:
            self.env.process(stream.serve(iterations))
        finished = [self.env.process(w.train(iterations)) for w in self.workers]
        if progress is not None:
            for it in range(iterations):
                self.env.run(until=simpy.AllOf(self.env, [s.done(it) for s in self.streams]))
                progress(it)
        self.env.run()
        if not all(p.triggered for p in finished):  # a schedule whose dependencies cycle: a bug, not input
            raise RuntimeError(f"pipeline schedule {self.plan.schedule_name} deadlocked")


def _traced_devices(plan: ParallelPlan, limit: int) -> list[int]:
    """Replica 0's stages first (tensor index 0, then the others), then further replicas, up to ``limit``."""
    dev = plan.placement.device                      # [D, P, T]
    order = [int(dev[d, s, t]) for d in range(dev.shape[0]) for t in range(dev.shape[2]) for s in range(dev.shape[1])]
    return order[:limit]


def build_pipeline(config: Config, env: simpy.Environment | None = None) -> PipelineCluster:
    """Resolve, elaborate (placement, stages, prices, memory check) and wire every process, before time zero."""
    env = env or simpy.Environment()
    hw = resolve_hardware(config)
    network = Network(hw.graph, config.network.model, gamma=hw.gamma, profile=getattr(hw, "profile", None))
    plan = build_plan(config, hw, network)
    D, P, T = plan.placement.device.shape
    stats = Stats(config.training.iterations)
    trace = Trace(frozenset(_traced_devices(plan, config.output.trace_ranks)))
    labels = {int(plan.placement.device[d, s, t]): f"device {int(plan.placement.device[d, s, t])}: "
              f"stage {s}, replica {d}, tensor {t}" for d in range(D) for s in range(P) for t in range(T)}
    trace.label_ranks(labels)
    board, records = Board(env), []
    links = {(d, a, b, k): Link(env, stats) for d in range(D) for a in range(P) for b in range(P) for k in "FB"
             if a != b}
    streams = []
    for s in range(P):
        last_b = {op.chunk: i for i, op in enumerate(plan.ops[s]) if op.kind == "B"}
        order = sorted(last_b, key=last_b.__getitem__)
        streams.append(GradientStream(env, s, D, order, plan.grad_sync[s], plan.after_step[s], stats, trace))
    slowdown = SlowdownModel(config.stragglers, D * P, Streams(config.seed))
    workers = [StageWorker(env, d, s, plan, board, links, streams[s], stats, trace, slowdown, records)
               for d in range(D) for s in range(P)]
    return PipelineCluster(env, config, hw, network, plan, workers, streams, stats, trace, records)


def _bytes_per_iteration(plan: ParallelPlan) -> dict[str, float]:
    D, M, T = plan.sizes.data, plan.microbatches, plan.sizes.tensor
    data = sum(c.bytes for chunk in plan.grad_sync for work in chunk for c in work)
    data += sum(c.bytes for work in plan.after_step for c in work) + 2 * M * float(plan.gather_bytes.sum())
    tensor = D * M * float(plan.tensor_bytes.sum())
    sends = D * M * 2 * T * float(plan.send_bytes.sum())    # T slices + the receivers' all-gather, both ways
    return {"bytes_sent_per_iteration": data + tensor + sends, "data_parallel_bytes_per_iteration": data,
            "tensor_parallel_bytes_per_iteration": tensor, "pipeline_bytes_per_iteration": sends}


def simulate_pipeline(config: Config, progress: Callable[[int], None] | None = None) -> Result:
    """Run a tensor/pipeline/hybrid job and return its ``Result`` (nothing is written)."""
    t0 = time.perf_counter()
    cluster = build_pipeline(config)
    cluster.run(progress)
    plan, hw, stats = cluster.plan, cluster.hardware, cluster.stats
    D, P, T = plan.placement.device.shape
    warmup, batch = config.training.warmup, config.workload.batch_per_device
    records = sorted(cluster.records, key=lambda r: (r.iteration, r.rank))
    workers = D * P
    comm = (stats.tensor + stats.gathers + stats.sends) / workers + stats.stream / P
    worst = max(plan.memory, key=lambda m: m.total)
    network_model = "profile" if hw.profile is not None else config.network.model
    summary = summarize(
        records, name=config.name, workers=D * P * T, iterations=config.training.iterations, warmup=warmup,
        batch_per_worker=batch / (T * P),
        single_worker_compute_s=compute.iteration_compute_time(hw.model, hw.device, batch) / (T * P),
        communication_s=comm, algorithm=plan.algorithm,
        extra={"model": hw.model.name, "device": hw.device.name, "network_model": network_model,
               "data_parallel": D, "tensor_parallel": T, "pipeline_parallel": P,
               "microbatches": plan.microbatches, "microbatch_size": plan.microbatch_size,
               "schedule": plan.schedule_name, "chunks": plan.chunks, "zero": config.parallelism.zero,
               "recompute": config.parallelism.recompute,
               "pipeline_bubble_fraction": float(np.mean(stats.bubble(workers)[warmup:])),
               "stage_layers": [len(r) for r in plan.virtual],
               "tensor_parallel_s": float(np.mean(stats.tensor[warmup:])) / workers,
               "pipeline_send_s": float(np.mean(stats.sends[warmup:])) / workers,
               "gradient_sync_s": float(np.mean(stats.stream[warmup:])) / P,
               "zero_gather_s": float(np.mean(stats.gathers[warmup:])) / workers,
               "gradient_bytes": int(hw.model.gradient_bytes), **_bytes_per_iteration(plan),
               "memory_per_device_bytes": float(worst.total), "memory_capacity_bytes": hw.device.memory_bytes},
    )
    run_info = {"sim_wall_s": time.perf_counter() - t0, "host": platform.node(),
                "python": platform.python_version(), "network_steps_solved": cluster.network.steps_solved,
                "simpy_events_final_time_s": cluster.env.now}
    stages = [{**row, "devices": " ".join(map(str, row["devices"]))} for row in stage_rows(plan, hw.model)]
    return Result(summary, records, cluster.trace, config.model_dump(mode="json"), run_info, {"stages": stages})
