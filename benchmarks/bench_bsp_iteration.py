"""Wall time of one BSP iteration of ResNet-50 data-parallel ring allreduce, as whole processes.

Compares ``trainsim run`` (flow-level network, memoised steps) with the naive
per-message SimPy model in ``naive_ring.py``. Each point is the median of
``--repeats`` fresh processes (imports included), as a user would see it. Each
process also reports its *simulation part*: ``build_s`` (``build_job``: topology,
routing, the plan pricing every bucket's collective) + ``run_s`` (the SimPy run,
what ``run_info.json`` calls ``sim_wall_s``), the CPU time of the same span
(``simulation_cpu_s``, less sensitive to other jobs on a shared machine), and its peak RSS.

    python benchmarks/bench_bsp_iteration.py --workers 128,1024,4096 --naive 128,1024
    python benchmarks/bench_bsp_iteration.py --workers 1024 --algorithms ring,auto --naive ""
    python benchmarks/bench_bsp_iteration.py --tree /path/to/other/checkout ...   # time another tree

The per-process driver (``DRIVER``) uses only ``load_config``, ``build_job`` and
``Result.write``, so it runs on older trees too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "01_resnet50_128gpu_ring.yaml"

DRIVER = """
import json, resource, sys, time
t0 = time.perf_counter()
import simulator
from simulator.config import load_config
from simulator.engine import build_job
t1 = time.perf_counter()
config = load_config(sys.argv[1])
t2, c2 = time.perf_counter(), time.process_time()
job = build_job(config)
t3 = time.perf_counter()
job.run()
t4, c4 = time.perf_counter(), time.process_time()
result = job.result()
result.write(sys.argv[2], plots=False)
t5 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "build_s": t3 - t2, "run_s": t4 - t3,
                  "sim_wall_s": result.run_info["sim_wall_s"], "result_write_s": t5 - t4, "simulation_cpu_s": c4 - c2,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "iteration_time_s": result.summary["iteration_time_s"], "algorithm": result.summary["algorithm"],
                  "code": simulator.__file__}))
"""


def runs(cmd: list[str], repeats: int, tree: Path) -> list[tuple[float, str]]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(tree)}
        # cwd = the tree: ``python -c`` puts the working directory first on sys.path
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, cwd=tree)
        out.append((time.perf_counter() - t0, res.stdout))
    return out


def trainsim_point(workers: int, algorithm: str, repeats: int, tmp: Path, tree: Path) -> dict:
    cfg = yaml.safe_load((tree / "examples" / EXAMPLE.name).read_text())
    cfg["cluster"]["topology"]["nodes"] = workers // 8
    cfg["communication"]["algorithm"] = algorithm
    cfg["training"] = {"iterations": 1, "warmup": 0}
    cfg["output"] = {"trace_ranks": 16, "plots": False}
    path = tmp / f"w{workers}-{algorithm}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    done = runs([sys.executable, "-c", DRIVER, str(path), str(tmp / f"o{workers}-{algorithm}")], repeats, tree)
    rows = [{"wall_s": wall, **json.loads(out)} for wall, out in done]
    med = {k: statistics.median(r[k] for r in rows) for k in ("wall_s", "build_s", "run_s", "sim_wall_s",
                                                                "simulation_cpu_s", "peak_rss_mb")}
    assert all(r["code"].startswith(str(tree)) for r in rows), rows[0]["code"]
    return {"model": "trainsim", "tree": str(tree), "workers": workers, "algorithm": rows[0]["algorithm"],
            "configured": algorithm, **med, "simulation_s": statistics.median(r["build_s"] + r["run_s"] for r in rows),
            "repeats": repeats, "iteration_time_s": rows[0]["iteration_time_s"],
            "simulation_s_each": [round(r["build_s"] + r["run_s"], 4) for r in rows]}


def naive_point(workers: int, repeats: int, tree: Path) -> dict:
    done = runs([sys.executable, str(tree / "benchmarks" / "naive_ring.py"), str(workers)], repeats, tree)
    return {"model": "naive per-message", "workers": workers, "wall_s": statistics.median(w for w, _ in done),
            "detail": done[-1][1].strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="128,1024,4096")
    ap.add_argument("--naive", default="128,1024")
    ap.add_argument("--algorithms", default="ring", help="communication.algorithm values, e.g. ring,auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout to time (PYTHONPATH and example from there)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in map(int, args.workers.split(",")) if args.workers else []:
            for alg in args.algorithms.split(","):
                rows.append(trainsim_point(w, alg, args.repeats, Path(tmp), args.tree.resolve()))
                print(json.dumps(rows[-1]), flush=True)
        for w in (map(int, args.naive.split(",")) if args.naive else []):
            rows.append(naive_point(w, args.repeats, args.tree.resolve()))
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
