"""Wall time of a 1,024-worker ResNet-50 run with top-k compression and convergence on, vs uncompressed.

The issue's target: within 2x the wall time of the same run uncompressed. Example 01's cluster
grown to 128 servers × 8 A100s (leaf-spine), ring allreduce, a softmax problem trained inside the
simulation (every worker's gradient computed, compressed with error feedback and decoded each
iteration), ``--iterations`` iterations. Each point is the median of ``--repeats`` fresh
``trainsim run`` processes (imports included).

    python benchmarks/bench_compression.py --workers 1024 --iterations 20 --repeats 3
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


def wall(path: Path, out: Path, repeats: int) -> tuple[float, dict]:
    times, summary = [], {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
        res = subprocess.run([sys.executable, "-m", "simulator", "run", str(path), "--out", str(out), "--json",
                              "--no-plots"], capture_output=True, text=True, check=True, env=env)
        times.append(time.perf_counter() - t0)
        summary = json.loads(res.stdout)
    return statistics.median(times), summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=1024)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method", default="topk")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("fp32", args.method):
            cfg = yaml.safe_load(EXAMPLE.read_text())
            cfg["cluster"]["topology"]["nodes"] = args.workers // 8
            cfg["communication"]["compression"] = method
            cfg["training"] = {"iterations": args.iterations, "warmup": 1,
                               "convergence": {"problem": "softmax", "classes": 10, "features": 64,
                                               "samples": 16384, "batch": 16, "lr": 0.05}}
            cfg["output"] = {"trace_ranks": 16, "plots": False}
            path = Path(tmp) / f"{method}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            seconds, summary = wall(path, Path(tmp) / method, args.repeats)
            rows.append({"method": method, "wall_s": seconds, "iteration_time_s": summary["iteration_time_s"],
                         "final_loss": summary["final_loss"]})
    rows.append({"ratio": rows[1]["wall_s"] / rows[0]["wall_s"]})
    print(json.dumps({"workers": args.workers, "iterations": args.iterations, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
