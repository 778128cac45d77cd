"""The reference to beat: a deliberately naive per-message SimPy model of one ring allreduce.

Every chunk transfer is a message that walks its path hop by hop, holding each
directed link (a SimPy ``Resource``) for ``bytes / bandwidth`` plus the hop's
latency; every rank waits for its incoming message before the next step. This is
how a first simulator is usually written, and it costs O(p²) events per ring
allreduce. Run as a whole process: ``python benchmarks/naive_ring.py 1024``.
"""

from __future__ import annotations

import sys
import time

import simpy

import topologies
from simulator.network.routing import Routing


def naive_ring_allreduce(graph, size_bytes: int) -> float:
    env = simpy.Environment()
    routing = Routing(graph)
    p = len(routing.devices)
    links = {i: simpy.Resource(env, capacity=1) for i in range(len(routing.capacity))}
    inbox = [simpy.Store(env) for _ in range(p)]
    chunk = size_bytes / p

    def send(src: int, dst: int, step: int):
        path = routing.path_links(routing.device_node(src), routing.device_node(dst))
        for link in path.tolist():
            with links[link].request() as req:
                yield req
                yield env.timeout(chunk / routing.capacity[link] + routing.latency[link])
        yield inbox[dst].put(step)

    def rank(r: int):
        for step in range(2 * (p - 1)):
            env.process(send(r, (r + 1) % p, step))
            yield inbox[r].get()

    for r in range(p):
        env.process(rank(r))
    env.run()
    return env.now


if __name__ == "__main__":
    workers = int(sys.argv[1])
    g = topologies.build("hierarchical", nodes=max(1, workers // 8), devices_per_node=min(8, workers),
                         intra_bandwidth="300GB/s", intra_latency="1us", inter_bandwidth="100Gbps",
                         inter_latency="2us")
    t0 = time.perf_counter()
    simulated = naive_ring_allreduce(g, 102_228_128)  # ResNet-50 fp32 gradients
    print(f"naive per-message ring allreduce, {workers} workers: simulated {simulated:.6f} s "
          f"in {time.perf_counter() - t0:.2f} s wall")
