"""Elaboration and the run of one training job: the only dispatcher.

``build_job`` resolves every name (topology, device, model, algorithm), elaborates the
parallel plan (data parallelism is the plan with T = P = 1), and wires one rank
process per (replica, stage) to the pieces every job has — stragglers with device
heterogeneity, the trace, the learner of the convergence problem — and to one
synchronisation component: an allreduce stream per stage (``communication.pattern:
allreduce``) or parameter servers with a protocol (``parameter_server``). Nothing
runs until ``Job.run``; a mis-wired or meaningless job fails here, before time zero.

``Job.result`` composes the summary: the keys every run has (one definition of
iteration time and of ``scaling_efficiency``, see docs/config.md), then each
component's own keys and tables.
"""

from __future__ import annotations

import gc
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import networkx as nx
import numpy as np
import simpy

from simulator import compute
from simulator.config import Config, ConfigError
from simulator.convergence import make_problem
from simulator.network import Network
from simulator.parallel.plan import ParallelPlan, build_plan, memory_summary, stage_rows
from simulator.resolve import ResolvedHardware, resolve_device, resolve_hardware
from simulator.results import IterationRecord, Result, Trace, summarize
from simulator.rng import Streams

from .allreduce import AllreduceSync, LocalRounds
from .environment import Environment
from .learning import Learner, LearnerState
from .pipeline import Board, Link
from .quorum import Quorum
from .rank import Rank, Stats
from .stragglers import SlowdownModel, device_factors

__all__ = ["Job", "build_job"]


@dataclass
class Job:
    env: simpy.Environment
    config: Config
    hardware: ResolvedHardware
    network: Network
    plan: ParallelPlan
    sync: Any                        # AllreduceSync | PSSync
    ranks: list[Rank]
    stats: Stats
    trace: Trace
    records: list[IterationRecord]
    learner: Learner | None
    progress_quorum: Quorum
    wall_s: float = 0.0
    _progress: Callable[[int], None] | None = field(default=None, repr=False)

    def run(self, progress: Callable[[int], None] | None = None) -> Job:
        """Run every process to the end; ``progress(i)`` is called as every rank finishes iteration ``i``."""
        t0 = time.perf_counter()
        self._progress = progress
        # what elaboration built lives as long as the run: keep the cyclic GC from rescanning it
        # on every collection (each full collection walks every object of a 16k-rank job)
        gc.freeze()
        try:
            self.sync.start()
            finished = [self.env.process(r.train()) for r in self.ranks]
            self.env.run()
        finally:
            gc.unfreeze()
        if not all(p.triggered for p in finished):  # dependencies that cycle: a bug, not input
            raise RuntimeError(f"job {self.config.name} deadlocked at {self.env.now} s")
        if self.learner is not None:
            self.learner.finish()
        if progress is not None:
            progress(self.config.training.iterations - 1)
        self.wall_s = time.perf_counter() - t0
        return self

    def on_iteration(self, clock: int) -> None:
        if self._progress is None:
            return
        self.progress_quorum.arrive(clock)
        if self.progress_quorum.is_reached(clock):
            self.progress_quorum.reached_at.pop(clock)
            self._progress(clock)

    # -- results ------------------------------------------------------------------------------
    def result(self) -> Result:
        config, plan, hw, sync = self.config, self.plan, self.hardware, self.sync
        records = sorted(self.records, key=lambda r: (r.iteration, r.rank))
        D, P, T = plan.placement.device.shape
        warmup, batch = config.training.warmup, config.workload.batch_per_device
        devices = D * P * T
        per_device_comm = (self.stats.tensor + self.stats.gathers + self.stats.sends) / (D * P)
        summary = summarize(
            records, name=config.name, devices=devices, iterations=config.training.iterations, warmup=warmup,
            samples_per_step=sync.contributors * batch,
            samples_per_replica=batch,
            single_device_s=compute.iteration_compute_time(hw.model, hw.device, batch),
            communication_s=sync.communication_s() + per_device_comm,
            algorithm=sync.algorithm, step_ends=sync.step_ends(), per_worker_clock=sync.per_worker_clock,
            replica_of_record={int(plan.placement.device[d, s, t]): d
                               for d in range(D) for s in range(P) for t in range(T)},
        )
        summary.update({"model": hw.model.name, "device": hw.device.name,
                        "network_model": "profile" if hw.profile is not None else config.network.model,
                        "gradient_bytes": int(hw.model.gradient_bytes)})
        summary.update(sync.summary())
        summary.update(self._bytes(per_device_comm))
        summary.update(self.network.efficiency_summary())
        if plan.auto is not None:
            summary["auto_candidates_s"] = plan.auto.seconds
            summary["auto_pruned_lower_bound_s"] = plan.auto.pruned
        if plan.compression != "fp32":
            raw, wire, codec = (float(np.mean(col)) for col in zip(*plan.wire, strict=True))
            summary.update({"compression": plan.compression, "compression_ratio": raw / wire,
                            "bytes_on_wire_per_iteration": wire, "compression_s": codec})
        if plan.model_parallel:
            summary.update(self._parallel_summary())
        if self.learner is not None:
            summary.update(self.learner.summary())
        tables = {"workers": _worker_rows(records, devices, warmup), **sync.tables()}
        if plan.model_parallel:
            tables["stages"] = [{**row, "devices": " ".join(map(str, row["devices"]))}
                                for row in stage_rows(plan, hw.model)]
        if self.learner is not None:
            tables["convergence"] = [{"time_s": p.time_s, "updates": p.updates, "gradients": p.gradients,
                                      "loss": p.loss, "accuracy": p.accuracy} for p in self.learner.curve]
        run_info = {"sim_wall_s": self.wall_s, "host": platform.node(), "python": platform.python_version(),
                    "network_steps_solved": self.network.steps_solved, "simpy_events_final_time_s": self.env.now,
                    **sync.run_info()}
        return Result(summary, records, self.trace, config.model_dump(mode="json"), run_info, tables)

    def _bytes(self, per_device_comm: np.ndarray) -> dict[str, float]:
        plan = self.plan
        D, M, T = plan.sizes.data, plan.microbatches, plan.sizes.tensor
        data = float(np.mean(self.sync.bytes_per_iteration()))
        if not plan.model_parallel:
            return {"bytes_sent_per_iteration": data}
        data += 2 * M * float(plan.gather_bytes.sum())          # ZeRO-3 gathers, in every op's time
        tensor = D * M * float(plan.tensor_bytes.sum())
        sends = D * M * 2 * T * float(plan.send_bytes.sum())    # T slices + the receivers' all-gather, both ways
        return {"bytes_sent_per_iteration": data + tensor + sends, "data_parallel_bytes_per_iteration": data,
                "tensor_parallel_bytes_per_iteration": tensor, "pipeline_bytes_per_iteration": sends}

    def _parallel_summary(self) -> dict[str, Any]:
        plan, stats, config, hw = self.plan, self.stats, self.config, self.hardware
        D, P, T = plan.placement.device.shape
        warmup, processes = config.training.warmup, D * P
        return {"data_parallel": D, "tensor_parallel": T, "pipeline_parallel": P,
                "microbatches": plan.microbatches, "microbatch_size": plan.microbatch_size,
                "schedule": plan.schedule_name, "chunks": plan.chunks, "zero": plan.zero,
                "recompute": plan.recompute, "sequence_parallel": plan.sequence_parallel,
                "pipeline_bubble_fraction": float(np.mean(stats.bubble(processes)[warmup:])),
                "stage_layers": [len(r) for r in plan.virtual],
                "tensor_parallel_s": float(np.mean(stats.tensor[warmup:])) / processes,
                "pipeline_send_s": float(np.mean(stats.sends[warmup:])) / processes,
                "gradient_sync_s": float(np.mean(self.sync.communication_s()[warmup:])),
                "zero_gather_s": float(np.mean(stats.gathers[warmup:])) / processes,
                **memory_summary(plan, hw.device)}


def _worker_rows(records: list[IterationRecord], devices: int, warmup: int) -> list[dict[str, float | int]]:
    """Per-device means over measured iterations: where each device's time went."""
    arr = np.array([(r.rank, r.compute_s, r.comm_exposed_s, r.wait_s) for r in records if r.iteration >= warmup])
    if len(arr) == 0:
        arr = np.array([(r.rank, r.compute_s, r.comm_exposed_s, r.wait_s) for r in records])
    rank = arr[:, 0].astype(np.int64)
    size = max(devices, int(rank.max()) + 1)
    n = np.bincount(rank, minlength=size)
    means = [np.bincount(rank, weights=arr[:, c], minlength=size) / np.maximum(n, 1) for c in (1, 2, 3)]
    return [{"rank": r, "iterations": int(n[r]), "compute_s": float(means[0][r]),
             "communication_s": float(means[1][r]), "wait_s": float(means[2][r])} for r in range(size) if n[r]]


# -- elaboration ------------------------------------------------------------------------------------


def build_job(config: Config, env: simpy.Environment | None = None, *, graph: nx.Graph | None = None,
              segment: int = 0, learner_start: LearnerState | None = None) -> Job:
    """Resolve, elaborate and wire every process, before time zero.

    ``graph`` replaces the config's topology, ``segment`` numbers the stretch of a faulted job (its
    straggler noise is its own), ``learner_start`` is where the convergence problem continues from.
    """
    gc.freeze()   # what exists already (imports, the config) outlives the job: no GC rescans of it
    try:
        return _build_job(config, env, graph=graph, segment=segment, learner_start=learner_start)
    finally:
        gc.unfreeze()


def _build_job(config: Config, env: simpy.Environment | None, *, graph: nx.Graph | None, segment: int,
               learner_start: LearnerState | None) -> Job:
    env = env or Environment()
    hw = resolve_hardware(config, graph)
    _check_size(config, hw)
    network = Network(hw.graph, config.network.model, gamma=hw.gamma, profile=hw.profile,
                      launch_latency=config.communication.launch_latency)
    plan = build_plan(config, hw, network)
    D, P, T = plan.placement.device.shape
    iterations = config.training.iterations
    trace = Trace(frozenset(_traced_devices(plan, config.output.trace_ranks)))
    trace.label_ranks(_labels(plan))
    applied = network.efficiency_summary()
    if applied:
        trace.label_process("network efficiency applied: " + json.dumps(applied, sort_keys=True))
    streams = Streams(config.seed)
    batch = config.workload.batch_per_device
    slowdown = SlowdownModel(config.stragglers, D * P, streams, device_factors(config.stragglers, hw.model,
                                                                               hw.device, batch), segment)
    learner_for = partial(_learner, start=learner_start)
    stats, board, records = Stats(iterations), Board(env), []
    links = {(d, a, b, k): Link(env) for d in range(D) for a in range(P) for b in range(P) for k in "FB" if a != b}
    if config.communication.pattern == "parameter_server":
        from .parameter_server import build_ps_sync  # numba (the flow kernels) only when a job has servers

        sync, learner = build_ps_sync(config, env, hw, network, plan, trace, streams, learner_for)
    else:
        learner = learner_for(config, env, D, 1, streams)
        rounds = LocalRounds(config.sync.mode, config.sync.period, config.sync.post_local_after)
        sync = AllreduceSync(env, plan, iterations, trace, rounds)
        if learner is not None:
            sync.on_synced = lambda it: learner.apply_mean([learner.gradient(learner.params, d, it)
                                                            for d in range(D)])
            sync.on_local = lambda it, average: learner.local_step(it, D, average)
    if learner is not None and config.communication.compression.method != "fp32":
        from simulator.compression import Compressor

        learner.compressor = Compressor(config.communication.compression, learner.problem.shapes, D, streams)
    job = Job(env, config, hw, network, plan, sync, [], stats, trace, records, learner, Quorum(env, D * P))
    shared: dict = {}           # per stage, what its ops cost: worked out once, not per replica
    job.ranks = [Rank(env, d, s, plan, board, links, sync, slowdown, stats, trace, records, job.on_iteration, shared)
                 for d in range(D) for s in range(P)]
    if isinstance(sync, AllreduceSync):
        sync.attach([[r for r in job.ranks if r.stage == s][0].release_order for s in range(P)])
    return job


MAX_ITERATIONS = 10**7              # simulated one by one (per-iteration statistics are arrays of this length)
MAX_DEVICE_ITERATIONS = 5 * 10**6   # iterations x devices: one record each (~0.5 GB at the bound)


def _check_size(config: Config, hw: ResolvedHardware) -> None:
    """Refuse, in one line, a job this machine cannot simulate event by event."""
    n = config.training.iterations
    par = config.parallelism
    devices = hw.workers * par.pipeline * par.tensor
    if n > MAX_ITERATIONS:
        raise ConfigError(f"training.iterations: {n} iterations are simulated one by one here, at most "
                          f"{MAX_ITERATIONS:,}; a longer job is a faults: run (its closed form)")
    if n * devices > MAX_DEVICE_ITERATIONS:
        raise ConfigError(f"training.iterations: {n} iterations x {devices} devices = {n * devices:.3g} device-"
                          f"iterations to simulate, at most {MAX_DEVICE_ITERATIONS:.0e}; use fewer iterations "
                          "(steady state comes after a few)")


def _learner(config: Config, env: simpy.Environment, replicas: int, shards: int, streams: Streams,
             start: LearnerState | None = None) -> Learner | None:
    spec = config.training.convergence
    if spec is None:
        return None
    problem = make_problem(spec, streams, replicas, spec.batch or config.workload.batch_per_device)
    return Learner(env, problem, spec.lr, shards, spec.eval_every, spec.target_loss, start)


def server_device(config: Config, hw: ResolvedHardware):
    spec = config.communication.server_device
    if spec is None:
        return hw.device if config.communication.server_placement == "colocated" else resolve_device("cpu")
    for key in ("fp32_flops", "tf32_flops"):   # a server applies updates (memory-bound): no precision's peak
        if not isinstance(spec, str) and getattr(spec, key) is not None:
            raise ConfigError(f"communication.server_device.{key}: a parameter server's updates are timed by "
                              "its memory bandwidth, not a peak; remove it")
    try:
        return resolve_device(spec)
    except ConfigError as e:
        raise ConfigError(str(e).replace("cluster.device", "communication.server_device")) from None


def _traced_devices(plan: ParallelPlan, limit: int) -> list[int]:
    """Replica 0's stages first (tensor index 0, then the others), then further replicas: the first and
    last of that order, up to ``limit`` in all, so a big cluster's trace stays small."""
    dev = plan.placement.device                      # [D, P, T]
    order = [int(dev[d, s, t]) for d in range(dev.shape[0]) for t in range(dev.shape[2]) for s in range(dev.shape[1])]
    if len(order) <= limit:
        return order
    head = limit - limit // 2
    return order[:head] + order[len(order) - limit // 2:]


def _labels(plan: ParallelPlan) -> dict[int, str]:
    D, P, T = plan.placement.device.shape
    dev = plan.placement.device
    if not plan.model_parallel:
        return {int(dev[d, 0, 0]): f"worker {d}" for d in range(D)}
    return {int(dev[d, s, t]): f"device {int(dev[d, s, t])}: stage {s}, replica {d}, tensor {t}"
            for d in range(D) for s in range(P) for t in range(T)}
