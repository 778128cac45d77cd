"""Elaboration: turn a validated config into wired SimPy components, before time zero.

``build_cluster`` resolves every name (topology, device, model, algorithm), checks
what can only be checked with the pieces together (enough devices, the model fits
in memory, the algorithm supports the rank count), creates the components and
wires them. Nothing runs until ``Cluster.run``; a mis-wired model fails here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import simpy

from simulator import compute
from simulator.collectives import ScheduleError
from simulator.config import Config, ConfigError
from simulator.convergence import make_problem
from simulator.network import Network
from simulator.resolve import ResolvedHardware, resolve_hardware
from simulator.results import IterationRecord, Trace
from simulator.rng import Streams
from simulator.tuner import best_algorithm
from simulator.workloads import gradient_buckets

from .communicator import Communicator
from .learning import Learner
from .stragglers import SlowdownModel, device_factors
from .worker import ComputePlan, Worker

__all__ = ["Cluster", "build_cluster"]


@dataclass
class Cluster:
    env: simpy.Environment
    config: Config
    hardware: ResolvedHardware
    network: Network
    plan: ComputePlan
    comm: Communicator
    workers: list[Worker]
    trace: Trace
    records: list[IterationRecord] = field(default_factory=list)
    auto_candidates_s: dict[str, float] = field(default_factory=dict)  # algorithm: auto's scores
    learner: Learner | None = None    # training.convergence: the real problem trained alongside

    def run(self, progress: Callable[[int], None] | None = None) -> None:
        """Run every process to the end; ``progress(i)`` is called as iteration ``i`` completes."""
        iterations = self.config.training.iterations
        self.env.process(self.comm.serve(iterations))
        for w in self.workers:
            self.env.process(w.train(iterations))
        if progress is not None:
            for it in range(iterations):
                self.env.run(until=self.comm.done(it))
                progress(it)
        self.env.run()
        if self.learner is not None:
            self.learner.finish()


def compute_plan(hw: ResolvedHardware, config: Config, buckets_bytes: float) -> tuple[ComputePlan, list[int]]:
    """Nominal per-worker compute times, grouped by gradient bucket, and the bucket sizes."""
    model, device, batch = hw.model, hw.device, config.workload.batch_per_device
    per_layer = compute.backward_times(model, device, batch)
    if config.communication.overlap:
        buckets = gradient_buckets(model, buckets_bytes)
        backward = tuple(float(sum(per_layer[i] for i in b.layers)) for b in buckets)
        sizes = [int(b.bytes) for b in buckets]
    else:  # one fused allreduce after the whole backward pass
        backward = (float(np.sum(per_layer)),)
        sizes = [int(model.gradient_bytes)]
    plan = ComputePlan(compute.forward_time(model, device, batch), backward, compute.step_time(model, device))
    return plan, sizes


def build_cluster(config: Config, env: simpy.Environment | None = None) -> Cluster:
    env = env or simpy.Environment()
    hw = resolve_hardware(config)
    workers = hw.workers
    network = Network(hw.graph, config.network.model, gamma=hw.gamma, profile=hw.profile)
    plan, sizes = compute_plan(hw, config, config.communication.bucket_size)
    placement = np.arange(workers)
    candidates: dict[str, float] = {}
    if hw.algorithm == "auto":
        best, candidates = best_algorithm(network, workers, sizes, placement=placement, **hw.topology_info)
        hw = dataclasses.replace(hw, algorithm=best)
    cache: dict[int, tuple[float, float]] = {}

    def cost(nbytes: int) -> tuple[float, float]:
        if nbytes not in cache:
            try:
                sched = hw.schedule(nbytes)
            except ScheduleError as e:
                raise ConfigError(f"communication.algorithm: {e}") from None
            cache[nbytes] = network.schedule_cost(sched, placement)
        return cache[nbytes]

    for nbytes in sizes:  # elaborate every collective now: a bad algorithm fails before time zero
        cost(nbytes)
    trace_ranks = _traced_ranks(workers, config.output.trace_ranks)
    trace = Trace(frozenset(trace_ranks))
    trace.label_ranks()
    comm = Communicator(env, workers, sizes, cost, hw.algorithm, trace)
    batch = config.workload.batch_per_device
    factors = device_factors(config.stragglers, hw.model, hw.device, batch)
    slowdown = SlowdownModel(config.stragglers, workers, Streams(config.seed), factors)
    records: list[IterationRecord] = []
    ranks = [Worker(env, r, plan, comm, slowdown, trace, records) for r in range(workers)]
    cluster = Cluster(env, config, hw, network, plan, comm, ranks, trace, records, candidates)
    spec = config.training.convergence
    if spec is not None:  # every rank's gradient at the step's parameters, averaged when the allreduce ends
        problem = make_problem(spec, Streams(config.seed), workers, spec.batch or batch)
        learner = cluster.learner = Learner(env, problem, spec.lr, 1, spec.eval_every, spec.target_loss)
        comm.on_done = lambda it: learner.apply_mean(
            [learner.gradient(learner.params, r, it) for r in range(workers)])
    return cluster


def _traced_ranks(workers: int, limit: int) -> list[int]:
    """The first and last ranks (up to ``limit`` in all), so a big cluster's trace stays small."""
    if workers <= limit:
        return list(range(workers))
    head = limit - limit // 2
    return list(range(head)) + list(range(workers - limit // 2, workers))
