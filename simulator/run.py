"""The two verbs of the library: ``simulate(config)`` and ``collective_time(...)``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import networkx as nx
import numpy as np

from simulator import collectives
from simulator.config import Config, load_config
from simulator.engine import build_job
from simulator.network import Network
from simulator.results import Result, check_finite

__all__ = ["collective_time", "simulate"]


def simulate(config: Config | str | Path | Mapping, progress: Callable[[int], None] | None = None) -> Result:
    """Run one training simulation and return its ``Result`` (nothing is written).

    ``progress(i)`` is called as each iteration ``i`` completes (the CLI draws a bar with it).
    """
    if not isinstance(config, Config):
        config = load_config(config)
    if config.training.replications > 1:
        from simulator.replications import replicate

        shared: dict = {}      # iteration timings the replications have in common (see simulate_with_faults)
        result = replicate(config, lambda c, p: _simulate_one(c, p, shared), progress)
    else:
        result = _simulate_one(config, progress, None)
    check_finite(result.summary)
    result.context.setdefault("config", config)
    return result


def _simulate_one(config: Config, progress: Callable[[int], None] | None, shared: dict | None) -> Result:
    if config.faults is not None:
        from simulator.engine.lifecycle import simulate_with_faults

        return simulate_with_faults(config, progress, shared)
    job = build_job(config).run(progress)
    result = job.result()
    result.context.update(config=config, hardware=job.hardware, network=job.network, plan=job.plan)
    return result


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
    return net.schedule_time(sched, np.arange(sched.ranks - sched.switches))
