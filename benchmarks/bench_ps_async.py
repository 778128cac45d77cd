"""Benchmark: asynchronous parameter-server training, the fully dynamic flow case (issue 4).

ASP, 256 workers and 4 dedicated servers on a k=12 fat-tree (432 hosts, 100 Gb/s links),
ResNet-50 on A100s with lognormal stragglers: every push and pull is a set of flows that
starts whenever a worker gets there, so the links are re-shared at every arrival and departure.
Target (issue 19): 1,000 iterations per worker in at most 10 s of simulation (``wall_s``: the ``simulate``
call, with the flow kernels loaded before it; ``import_s`` is reported apart).

    python benchmarks/bench_ps_async.py --workers 256 --servers 4 --iterations 1000 --repeats 3
    python benchmarks/bench_ps_async.py ... --overlap false      # the serial model: pull, compute, push
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "ps_async.jsonl"


def config(workers: int, servers: int, iterations: int, mode: str, overlap: bool = True) -> dict:
    return {
        "name": f"bench-ps-{mode}-{workers}w-{servers}s",
        "seed": 1,
        "cluster": {"topology": {"kind": "fat_tree", "k": 12, "link": {"bandwidth": "100Gbps", "latency": "1us"}},
                    "device": "a100"},
        "workload": {"model": "resnet50", "batch_per_device": 64},
        "parallelism": {"data": workers},
        "communication": {"pattern": "parameter_server", "servers": servers, "overlap": overlap,
                          **({} if overlap else {"bucket_size": None})},   # off: the serial model, one push
        "sync": {"mode": mode},
        "stragglers": {"distribution": "lognormal", "sigma": 0.2},
        "training": {"iterations": iterations, "warmup": min(5, iterations - 1)},
    }


# --fixed-transfer S: an experiment, not a model — every push and pull takes S seconds and the flow model is never
# called, so the time left is the engine's own (rank processes, PS bookkeeping, SimPy); the predictions are not
# the real ones
_FIXED = (
    "def _fixed(self, group, _s={s!r}):\n"
    "    ev = self.env.event(); ev._ok, ev._value = True, None\n"
    "    self.env.schedule(ev, delay=_s); self.flows_started += len(group.sizes); return ev\n"
    "dyn.FlowSimulator.start = _fixed\n"
)


def one_run(workers: int, servers: int, iterations: int, mode: str, overlap: bool = True,
            fixed_transfer_s: float | None = None) -> dict:
    """Run in a fresh process (numba kernels from the on-disk cache, as a user's second run).

    ``import_s``: importing the simulator and the flow model and loading its Numba kernels, before the
    timed region (a tree without ``load_kernels`` loads them on first use, inside it); ``wall_s``: the
    ``simulate`` call; ``cpu_s``: the process's CPU seconds in it (steadier than wall time when other jobs
    share the machine); ``sim_wall_s``: what the run itself reports in ``run_info``.
    """
    code = (
        "import json, sys, time; t0 = time.perf_counter(); from simulator import simulate, load_config; "
        "import simulator.network.dynamic as dyn; getattr(dyn, 'load_kernels', lambda: None)(); "
        "imp = time.perf_counter() - t0; "
        + ("\n" + _FIXED.format(s=fixed_transfer_s) if fixed_transfer_s is not None else "") +
        f"cfg = load_config({config(workers, servers, iterations, mode, overlap)!r}); "
        "t, c = time.perf_counter(), time.process_time(); r = simulate(cfg); "
        "w, c = time.perf_counter() - t, time.process_time() - c; "
        "print(json.dumps({'wall_s': w, 'cpu_s': c, 'import_s': imp, 'sim_wall_s': r.run_info['sim_wall_s'], "
        "'flows': r.run_info['flows'], "
        "'iteration_time_s': r.summary['iteration_time_s'], 'staleness_mean': r.summary.get('staleness_mean'), "
        "'server_utilization': r.summary['server_utilization']}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=256)
    ap.add_argument("--servers", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--mode", default="asp", choices=["asp", "ssp", "bsp"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--overlap", choices=["true", "false"], default="true",
                    help="communication.overlap: pushes per bucket during backward, pulls per bucket (true), "
                         "or pull / compute / push in series (false, the model before the one-engine issue)")
    ap.add_argument("--fixed-transfer", type=float, default=None, metavar="S",
                    help="an experiment: every push and pull takes S seconds, the flow model is not called (what "
                         "the engine costs alone; the predictions are not the real ones)")
    ap.add_argument("--tree", default="", help="a label for the tree measured (recorded in the row)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="jsonl file the row is appended to")
    args = ap.parse_args()
    overlap = args.overlap == "true"
    one_run(args.workers, args.servers, 2, args.mode, overlap)  # compile the flow kernels into the cache once
    runs = [one_run(args.workers, args.servers, args.iterations, args.mode, overlap, args.fixed_transfer)
            for _ in range(args.repeats)]
    walls = sorted(r["wall_s"] for r in runs)
    row = {"bench": "ps_async", "mode": args.mode, "overlap": overlap, "workers": args.workers, "servers": args.servers,
           "iterations": args.iterations, "median_wall_s": walls[len(walls) // 2], "walls_s": walls,
           "cpu_s": sorted(r["cpu_s"] for r in runs), "import_s": sorted(r["import_s"] for r in runs),
           "sim_wall_s": sorted(r["sim_wall_s"] for r in runs),
           "tree": args.tree, "fixed_transfer_s": args.fixed_transfer,
           "flows": runs[0]["flows"], "iteration_time_s": runs[0]["iteration_time_s"],
           "staleness_mean": runs[0]["staleness_mean"], "server_utilization": runs[0]["server_utilization"],
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "python": platform.python_version(),
           "when": time.strftime("%Y-%m-%d")}
    print(json.dumps(row, indent=2))
    args.out.parent.mkdir(exist_ok=True)
    with args.out.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
