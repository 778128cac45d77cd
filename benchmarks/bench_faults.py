"""Wall time of a month-long, 16,384-GPU job with random failures, 20 replications, as one process.

The issue's target: a 30-day job on 16,384 GPUs (ResNet-50 data parallelism, ring allreduce,
2,048 servers of 8 A100s behind a leaf-spine fabric, as in ``bench_bsp_iteration.py``), per-GPU
MTBF 5 years (job MTBF 2.7 h, ~270 failures a month), a checkpoint every 30 minutes, 20
replications — under 60 s. The job's iteration count is set so that failure-free training lasts
30 days (from a 2-iteration run that is not timed). Each point is a fresh ``trainsim run``
process (imports included); the median of ``--repeats``.

    python benchmarks/bench_faults.py --workers 16384 --replications 20 --repeats 1
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


def run(path: Path, out: Path) -> tuple[float, dict]:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    res = subprocess.run([sys.executable, "-m", "simulator", "run", str(path), "--out", str(out), "--json",
                          "--no-plots"], capture_output=True, text=True, check=True, env=env)
    return time.perf_counter() - t0, json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=16384)
    ap.add_argument("--replications", type=int, default=20)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = yaml.safe_load(EXAMPLE.read_text())
        cfg["cluster"]["topology"]["nodes"] = args.workers // 8
        cfg["training"] = {"iterations": 2, "warmup": 1}
        cfg["output"] = {"trace_ranks": 16, "plots": False}
        path = Path(tmp) / "job.yaml"
        path.write_text(yaml.safe_dump(cfg))
        _, healthy = run(path, Path(tmp) / "healthy")
        iterations = int(args.days * 86400 / healthy["iteration_time_s"])
        cfg["training"] = {"iterations": iterations, "warmup": 1, "replications": args.replications}
        cfg["faults"] = {"devices": {"mtbf": "43800h"}, "detection": "30s",
                         "recovery": {"policy": "checkpoint_restart", "restart": "10min"},
                         "checkpoint": {"every": "30min", "bandwidth": "2TB/s"}}
        path.write_text(yaml.safe_dump(cfg))
        walls, summary = [], {}
        for i in range(args.repeats):
            seconds, summary = run(path, Path(tmp) / f"faulted{i}")
            walls.append(seconds)
    print(json.dumps({"workers": args.workers, "replications": args.replications, "days": args.days,
                      "iterations": iterations, "iteration_time_s": healthy["iteration_time_s"],
                      "wall_s": statistics.median(walls), "failures_mean": summary["failures"],
                      "goodput": summary["goodput"], "goodput_ci95": summary["goodput_ci95"],
                      "fault_simulation": summary["fault_simulation"]}, indent=1))


if __name__ == "__main__":
    main()
