"""Sweep throughput: points per minute for a 200-point sweep of 128-GPU configs, and Dask's per-point overhead.

The sweep is examples/01 (16 servers × 8 A100s, ring allreduce, 5 iterations)
over 10 bucket sizes × 5 NIC speeds × 4 seeds (lognormal stragglers), 200
points. For each case the output folder starts empty (no cache hits):

- ``serial``: ``run_point`` on every point in this process, no Dask (the floor);
- ``dask N``: ``run_sweep`` on an embedded LocalCluster of N worker processes,
  timed without and with starting the cluster.

Per-point scheduling overhead = (1-worker Dask wall − serial wall) / points.

    python benchmarks/bench_sweep.py --workers 1,2 --json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import yaml

from simulator.sweep import load_sweep, run_point, run_sweep

ROOT = Path(__file__).resolve().parents[1]

SWEEP = {
    "base": str(ROOT / "examples" / "01_resnet50_128gpu_ring.yaml"),
    "set": {"training.iterations": 5, "training.warmup": 1,
            "stragglers": {"distribution": "lognormal", "sigma": 0.05}},
    "grid": {
        "communication.bucket_size": [f"{m}MiB" for m in (2, 4, 8, 12, 16, 25, 32, 50, 64, 100)],
        "cluster.topology.inter.bandwidth": ["25Gbps", "50Gbps", "100Gbps", "200Gbps", "400Gbps"],
    },
    "seeds": [1, 2, 3, 4],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="1,2", help="comma-separated Dask worker counts")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from dask.distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(SWEEP))
        sweep = load_sweep(path)
        n = len(sweep.points)
        run_point(sweep.points[0].config, str(Path(tmp) / "warm"))  # imports and caches warm
        t0 = time.perf_counter()
        for p in sweep.points:
            run_point(p.config, str(Path(tmp) / "serial" / p.hash))
        serial = time.perf_counter() - t0
        rows = [{"case": "serial", "points": n, "wall_s": serial, "points_per_min": 60 * n / serial}]
        for w in (int(x) for x in args.workers.split(",")):
            t0 = time.perf_counter()
            cluster = LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
            client = Client(cluster)
            startup = time.perf_counter() - t0
            try:
                t1 = time.perf_counter()
                res = run_sweep(sweep, Path(tmp) / f"dask{w}", client=client, plots=False)
                wall = time.perf_counter() - t1
            finally:
                client.close()
                cluster.close()
            assert res.computed == n and res.failed == 0
            rows.append({"case": f"dask {w}", "points": n, "wall_s": wall, "startup_s": startup,
                         "points_per_min": 60 * n / wall, "points_per_min_with_startup": 60 * n / (wall + startup)})
    one = next((r for r in rows if r["case"] == "dask 1"), None)
    overhead = {"per_point_overhead_ms": 1e3 * (one["wall_s"] - serial) / n} if one else {}
    if args.json:
        print(json.dumps({"rows": rows, **overhead}, indent=2))
        return
    for r in rows:
        extra = f"  (+{r['startup_s']:.2f} s cluster start → {r['points_per_min_with_startup']:.0f}/min)" \
            if "startup_s" in r else ""
        rate = f"{r['points_per_min']:.0f} points/min"
        print(f"{r['case']:>8}: {r['points']} points in {r['wall_s']:.2f} s = {rate}{extra}")
    if overhead:
        print(f"per-point Dask overhead (1 worker vs serial): {overhead['per_point_overhead_ms']:.1f} ms")


if __name__ == "__main__":
    main()
