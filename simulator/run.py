"""The two verbs of the library: ``simulate(config)`` and ``collective_time(...)``."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import networkx as nx
import numpy as np

from simulator import collectives
from simulator.config import Config, load_config
from simulator.engine import build_cluster
from simulator.engine.pipeline import simulate_pipeline
from simulator.network import Network
from simulator.parallel import needs_parallel_engine
from simulator.results import Result, summarize

__all__ = ["collective_time", "simulate"]


def simulate(config: Config | str | Path | Mapping, progress: Callable[[int], None] | None = None) -> Result:
    """Run one training simulation and return its ``Result`` (nothing is written).

    ``progress(i)`` is called as each iteration ``i`` completes (the CLI draws a bar with it).
    """
    if not isinstance(config, Config):
        config = load_config(config)
    if config.communication.pattern == "parameter_server":
        return _simulate_parameter_server(config, progress)
    if needs_parallel_engine(config.parallelism):  # tensor / pipeline / microbatches / ZeRO / recompute
        return simulate_pipeline(config, progress)
    t0 = time.perf_counter()
    cluster = build_cluster(config)
    cluster.run(progress)
    hw = cluster.hardware
    single = cluster.plan.total_s
    network_model = "profile" if hw.profile is not None else config.network.model
    summary = summarize(
        sorted(cluster.records, key=lambda r: (r.iteration, r.rank)),
        name=config.name, workers=hw.workers, iterations=config.training.iterations,
        warmup=config.training.warmup, batch_per_worker=config.workload.batch_per_device,
        single_worker_compute_s=single, communication_s=cluster.comm.busy_per_iteration(),
        algorithm=hw.algorithm,
        extra={"model": hw.model.name, "device": hw.device.name, "network_model": network_model,
               "gradient_bytes": int(hw.model.gradient_bytes),
               "buckets": len(cluster.comm.bucket_bytes),
               "bytes_sent_per_iteration": float(np.mean(cluster.comm.bytes_sent)),
               **({"auto_candidates_s": cluster.auto_candidates_s} if cluster.auto_candidates_s else {}),
               **(cluster.learner.summary() if cluster.learner else {})},
    )
    run_info = {"sim_wall_s": time.perf_counter() - t0, "host": platform.node(),
                "python": platform.python_version(), "network_steps_solved": cluster.network.steps_solved,
                "simpy_events_final_time_s": cluster.env.now}
    records = sorted(cluster.records, key=lambda r: (r.iteration, r.rank))
    tables = {"convergence": _curve_rows(cluster.learner)} if cluster.learner else {}
    return Result(summary, records, cluster.trace, config.model_dump(mode="json"), run_info, tables)


def _simulate_parameter_server(config: Config, progress: Callable[[int], None] | None) -> Result:
    from simulator.engine.ps_cluster import build_ps_cluster  # numba (the flow kernels) only when needed

    t0 = time.perf_counter()
    cluster = build_ps_cluster(config)
    cluster.run(progress)
    hw, protocol, servers = cluster.hardware, cluster.protocol, cluster.servers
    records = sorted(cluster.records, key=lambda r: (r.iteration, r.rank))
    warmup = config.training.warmup
    comm = np.zeros(config.training.iterations)
    counts = np.zeros(config.training.iterations)
    for r in records:
        if r.iteration < len(comm):
            comm[r.iteration] += r.comm_exposed_s
            counts[r.iteration] += 1
    comm = comm / np.maximum(counts, 1)
    step_ends = protocol.step_ends()
    summary = summarize(
        records, name=config.name, workers=hw.workers, iterations=config.training.iterations, warmup=warmup,
        batch_per_worker=config.workload.batch_per_device, single_worker_compute_s=cluster.compute_s,
        communication_s=comm, algorithm=f"parameter_server/{protocol.name}", step_ends=step_ends,
        per_worker_clock=protocol.asynchronous, contributors=protocol.contributors,
        extra={"model": hw.model.name, "device": hw.device.name, "network_model": config.network.model,
               "gradient_bytes": int(hw.model.gradient_bytes), "sync": protocol.name,
               "servers": servers.k, "server_utilization": servers.utilization(cluster.env.now),
               "bytes_sent_per_iteration": cluster.flows.bytes_carried / max(len(records), 1) * hw.workers,
               **_staleness_summary(cluster), **(cluster.learner.summary() if cluster.learner else {})})
    run_info = {"sim_wall_s": time.perf_counter() - t0, "host": platform.node(),
                "python": platform.python_version(), "flows": cluster.flows.flows_started,
                "simpy_events_final_time_s": cluster.env.now}
    tables = {"workers": _worker_rows(records, hw.workers, warmup),
              "servers": [{"server": j, "device_rank": rank, "shard_bytes": float(servers.shard_bytes[j]),
                           "busy_s": float(servers.busy_s[j]),
                           "utilization": float(servers.busy_s[j] / cluster.env.now) if cluster.env.now else 0.0}
                          for j, rank in enumerate(servers.server_ranks)]}
    if protocol.asynchronous:
        tables["staleness"] = [{"update": i, "staleness": s, "clock_staleness": c}
                               for i, (s, c) in enumerate(zip(cluster.log.staleness, cluster.log.clock_staleness,
                                                              strict=True))]
    if cluster.learner is not None:
        tables["convergence"] = _curve_rows(cluster.learner)
    return Result(summary, records, cluster.trace, config.model_dump(mode="json"), run_info, tables)


def _staleness_summary(cluster) -> dict[str, float | int]:
    if not cluster.protocol.asynchronous:
        return {}
    s = np.array(cluster.log.staleness)
    c = np.array(cluster.log.clock_staleness)
    return {"staleness_mean": float(s.mean()), "staleness_max": int(s.max()),
            "clock_staleness_max": int(c.max())}


def _worker_rows(records, workers: int, warmup: int) -> list[dict[str, float | int]]:
    """Per-worker means over measured iterations: where each worker's time went."""
    arr = np.array([(r.rank, r.compute_s, r.comm_exposed_s, r.wait_s) for r in records if r.iteration >= warmup])
    if len(arr) == 0:
        arr = np.array([(r.rank, r.compute_s, r.comm_exposed_s, r.wait_s) for r in records])
    rank = arr[:, 0].astype(np.int64)
    n = np.bincount(rank, minlength=workers)
    means = [np.bincount(rank, weights=arr[:, c], minlength=workers) / np.maximum(n, 1) for c in (1, 2, 3)]
    return [{"rank": r, "iterations": int(n[r]), "compute_s": float(means[0][r]),
             "communication_s": float(means[1][r]), "wait_s": float(means[2][r])} for r in range(workers)]


def _curve_rows(learner) -> list[dict[str, float | int]]:
    return [{"time_s": p.time_s, "updates": p.updates, "gradients": p.gradients, "loss": p.loss,
             "accuracy": p.accuracy} for p in learner.curve]


def collective_time(name: str, topology: nx.Graph, size_bytes: int, ranks: int | None = None, *,
                    collective: str = "allreduce", model: str = "fluid", gamma: float = 0.0) -> float:
    """Simulated seconds of one collective on a topology graph.

    Parameters
    ----------
    name : algorithm (``simulator.collectives.algorithms(collective)``).
    topology : graph from ``topologies.build``/``load``.
    size_bytes : message size per rank, bytes.
    ranks : number of participating devices (the first ``ranks`` in rank order); default all.
    """
    net = Network(topology, model, gamma=gamma)
    p = ranks or net.devices
    info = {"devices_per_node": int(topology.graph.get("devices_per_host", 1))}
    sched = collectives.schedule(name, p, size_bytes, collective=collective, **info)
    return net.schedule_time(sched, np.arange(sched.ranks))
