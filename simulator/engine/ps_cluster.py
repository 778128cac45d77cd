"""Elaboration of a parameter-server job: servers placed and sharded, workers wired to a protocol.

Placement: ``dedicated`` servers take the k devices after the p workers (device
ranks p … p+k−1, as ``collectives.schedule("sharded", collective="ps_push")``
numbers them), on hosts of their own where the topology has them; ``colocated``
servers share the devices of workers 0, p/k, 2p/k, … (their own shard then never
crosses the network). Sharding: ``even`` splits the gradient into k equal shards;
``layer`` assigns whole layers, largest first, to the least-loaded server (as
key-value parameter servers do), so shards are uneven.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import simpy

from simulator import compute
from simulator.config import Config, ConfigError
from simulator.convergence import make_problem
from simulator.devices import Device
from simulator.network import Network
from simulator.network.dynamic import FlowSimulator
from simulator.resolve import ResolvedHardware, resolve_device, resolve_hardware
from simulator.results import IterationRecord, Trace
from simulator.rng import Streams
from simulator.workloads import Model

from .cluster import _traced_ranks
from .learning import Learner, UpdateLog
from .parameter_server import ParameterServers
from .protocols import Protocol, make_protocol
from .ps_worker import PSWorker
from .stragglers import SlowdownModel, device_factors

__all__ = ["PSCluster", "build_ps_cluster", "server_ranks", "shard_bytes"]


@dataclass
class PSCluster:
    env: simpy.Environment
    config: Config
    hardware: ResolvedHardware
    network: Network
    flows: FlowSimulator
    servers: ParameterServers
    protocol: Protocol
    log: UpdateLog
    learner: Learner | None
    workers: list[PSWorker]
    compute_s: float
    trace: Trace
    records: list[IterationRecord] = field(default_factory=list)

    def run(self, progress: Callable[[int], None] | None = None) -> None:
        for w in self.workers:
            self.env.process(w.train())
        if progress is None:
            self.env.run()
        else:
            # one step at a time; progress counts iterations every worker has finished
            done, steps = 0, 0
            while self.env.peek() != float("inf"):
                self.env.step()
                steps += 1
                if steps % 512 == 0 and len(self.records) // len(self.workers) > done:
                    done = len(self.records) // len(self.workers)
                    progress(min(done, self.config.training.iterations) - 1)
            progress(self.config.training.iterations - 1)
        if self.learner is not None:
            self.learner.finish()


def server_ranks(workers: int, k: int, placement: str, n_devices: int) -> list[int]:
    if placement == "colocated":
        if k > workers:
            raise ConfigError(f"communication.servers: {k} colocated servers need at least {k} workers, got {workers}")
        return [int(j * workers // k) for j in range(k)]
    if workers + k > n_devices:
        raise ConfigError(f"communication.servers: {workers} workers and {k} dedicated servers need "
                          f"{workers + k} devices, but the topology has {n_devices} "
                          "(lower parallelism.data, or use server_placement: colocated)")
    return list(range(workers, workers + k))


def shard_bytes(model: Model, k: int, sharding: str) -> np.ndarray:
    total = float(model.gradient_bytes)
    if sharding == "even" or k == 1:
        return np.full(k, total / k)
    load = np.zeros(k)
    per_layer = sorted((layer.params * model.bytes_per_param for layer in model.layers), reverse=True)
    for nbytes in per_layer:
        load[int(np.argmin(load))] += nbytes
    return load


def _server_device(config: Config, hw: ResolvedHardware) -> Device:
    spec = config.communication.server_device
    if spec is None:
        return hw.device if config.communication.server_placement == "colocated" else resolve_device("cpu")
    try:
        return resolve_device(spec)
    except ConfigError as e:
        raise ConfigError(str(e).replace("cluster.device", "communication.server_device")) from None


def build_ps_cluster(config: Config, env: simpy.Environment | None = None) -> PSCluster:
    env = env or simpy.Environment()
    hw = resolve_hardware(config)
    p, comm = hw.workers, config.communication
    n_devices = sum(1 for _, d in hw.graph.nodes(data=True) if d.get("role") == "device")
    ranks = server_ranks(p, comm.servers, comm.server_placement, n_devices)
    if config.sync.backup_workers >= p:
        raise ConfigError(f"sync.backup_workers: must be less than the {p} workers, got {config.sync.backup_workers}")
    shards = shard_bytes(hw.model, comm.servers, comm.sharding)
    apply_s = 3.0 * shards / _server_device(config, hw).memory_bandwidth
    batch = config.workload.batch_per_device
    compute_s = compute.forward_time(hw.model, hw.device, batch) + float(
        np.sum(compute.backward_times(hw.model, hw.device, batch)))
    network = Network(hw.graph, config.network.model, gamma=hw.gamma)
    flows = FlowSimulator(env, network)
    trace = Trace(frozenset(_traced_ranks(p, config.output.trace_ranks)))
    trace.label_ranks()
    servers = ParameterServers(env, flows, ranks, shards, apply_s, trace)
    protocol = make_protocol(config.sync, env, p, config.training.iterations)
    learner = _learner(config, env, p, comm.servers)
    log = UpdateLog(p, comm.servers, protocol, learner)
    if learner is not None:
        servers.on_shard_applied = log.shard_applied
    streams = Streams(config.seed)
    factors = device_factors(config.stragglers, hw.model, hw.device, batch)
    slowdown = SlowdownModel(config.stragglers, p, streams, factors)
    records: list[IterationRecord] = []
    workers = [PSWorker(env, r, compute_s, servers, protocol, log, slowdown, trace, records) for r in range(p)]
    return PSCluster(env, config, hw, network, flows, servers, protocol, log, learner, workers, compute_s,
                     trace, records)


def _learner(config: Config, env: simpy.Environment, workers: int, shards: int) -> Learner | None:
    spec = config.training.convergence
    if spec is None:
        return None
    batch = spec.batch or config.workload.batch_per_device
    problem = make_problem(spec, Streams(config.seed), workers, batch)
    return Learner(env, problem, spec.lr, shards, spec.eval_every, spec.target_loss)
