"""Wall time of one BSP iteration of ResNet-50 data-parallel ring allreduce, as whole processes.

Compares ``trainsim run`` (flow-level network, memoised steps) with the naive
per-message SimPy model in ``naive_ring.py``. Each point is the median of
``--repeats`` fresh processes (imports included), as a user would see it.

    python benchmarks/bench_bsp_iteration.py --workers 128,1024,4096 --naive 128,1024
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


def wall(cmd: list[str], repeats: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeats):
        t0 = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        times.append(time.perf_counter() - t0)
        out = res.stdout
    return statistics.median(times), out


def trainsim_point(workers: int, repeats: int, tmp: Path) -> dict:
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["cluster"]["topology"]["nodes"] = workers // 8
    cfg["training"] = {"iterations": 1, "warmup": 0}
    cfg["output"] = {"trace_ranks": 16, "plots": False}
    path = tmp / f"w{workers}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    seconds, out = wall([sys.executable, "-m", "simulator", "run", str(path), "--out", str(tmp / f"o{workers}"),
                         "--json", "--no-plots"], repeats)
    return {"model": "trainsim", "workers": workers, "wall_s": seconds,
            "iteration_time_s": json.loads(out)["iteration_time_s"]}


def naive_point(workers: int, repeats: int) -> dict:
    seconds, out = wall([sys.executable, str(ROOT / "benchmarks" / "naive_ring.py"), str(workers)], repeats)
    return {"model": "naive per-message", "workers": workers, "wall_s": seconds, "detail": out.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="128,1024,4096")
    ap.add_argument("--naive", default="128,1024")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in map(int, args.workers.split(",")):
            rows.append(trainsim_point(w, args.repeats, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
        for w in (map(int, args.naive.split(",")) if args.naive else []):
            rows.append(naive_point(w, args.repeats))
            print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
