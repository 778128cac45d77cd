"""Wall time to simulate one collective, per algorithm, on an ideal switch and a fat-tree.

Each point builds the schedule and times it on the fluid network from a fresh
``Network`` (no memo carried between points), in this process, after a warm-up
of the imports. Fat-trees are the smallest k-ary tree with enough hosts.

    python benchmarks/bench_collectives.py --ranks 64,1024,8192 --size 256MiB
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import topologies
from simulator import collectives
from simulator.network import Network
from topologies.fat_tree import smallest_k
from topologies.units import parse


def point(kind: str, algorithm: str, p: int, size: int, limit_s: float) -> dict:
    if kind == "switch":
        g = topologies.build("switch", n=p, bandwidth="100Gbps", latency="1us")
    else:
        g = topologies.build("fat_tree", k=smallest_k(p), bandwidth="100Gbps", latency="1us")
    t0 = time.perf_counter()
    try:
        sched = collectives.schedule(algorithm, p, size, devices_per_node=8 if p % 8 == 0 else 1)
    except collectives.ScheduleError as e:
        return {"topology": kind, "algorithm": algorithm, "ranks": p, "skipped": str(e)}
    built = time.perf_counter() - t0
    simulated = Network(g).schedule_time(sched, np.arange(p))
    wall = time.perf_counter() - t0
    return {"topology": kind, "algorithm": algorithm, "ranks": p, "steps": len(sched.steps),
            "build_s": round(built, 4), "wall_s": round(wall, 4), "simulated_s": simulated}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default="64,1024,8192")
    ap.add_argument("--size", default="256MiB")
    ap.add_argument("--topologies", default="switch,fat_tree")
    ap.add_argument("--algorithms", default=",".join(collectives.algorithms("allreduce")))
    ap.add_argument("--skip-over", type=int, default=0,
                    help="skip algorithms other than ring above this many ranks (0: run all)")
    args = ap.parse_args()
    size = int(parse(args.size, "bytes"))
    for kind in args.topologies.split(","):
        for p in map(int, args.ranks.split(",")):
            for alg in args.algorithms.split(","):
                if args.skip_over and p > args.skip_over and alg != "ring":
                    continue
                print(json.dumps(point(kind, alg, p, size, 0.0)), flush=True)


if __name__ == "__main__":
    main()
