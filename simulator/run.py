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
from simulator.network import Network
from simulator.results import Result, summarize

__all__ = ["collective_time", "simulate"]


def simulate(config: Config | str | Path | Mapping, progress: Callable[[int], None] | None = None) -> Result:
    """Run one training simulation and return its ``Result`` (nothing is written).

    ``progress(i)`` is called as each iteration ``i`` completes (the CLI draws a bar with it).
    """
    if not isinstance(config, Config):
        config = load_config(config)
    t0 = time.perf_counter()
    cluster = build_cluster(config)
    cluster.run(progress)
    hw = cluster.hardware
    single = cluster.plan.total_s
    summary = summarize(
        sorted(cluster.records, key=lambda r: (r.iteration, r.rank)),
        name=config.name, workers=hw.workers, iterations=config.training.iterations,
        warmup=config.training.warmup, batch_per_worker=config.workload.batch_per_device,
        single_worker_compute_s=single, communication_s=cluster.comm.busy_per_iteration(),
        algorithm=hw.algorithm,
        extra={"model": hw.model.name, "device": hw.device.name, "network_model": config.network.model,
               "gradient_bytes": int(hw.model.gradient_bytes),
               "buckets": len(cluster.comm.bucket_bytes),
               "bytes_sent_per_iteration": float(np.mean(cluster.comm.bytes_sent)),
               **({"auto_candidates_s": cluster.auto_candidates_s} if cluster.auto_candidates_s else {})},
    )
    run_info = {"sim_wall_s": time.perf_counter() - t0, "host": platform.node(),
                "python": platform.python_version(), "network_steps_solved": cluster.network.steps_solved,
                "simpy_events_final_time_s": cluster.env.now}
    records = sorted(cluster.records, key=lambda r: (r.iteration, r.rank))
    return Result(summary, records, cluster.trace, config.model_dump(mode="json"), run_info)


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
