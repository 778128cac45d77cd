"""Benchmark: drawing a run's plots (``plots.run_plots``) at growing worker counts (issue 19).

Example 01 (ResNet-50, ring, hierarchical leaf-spine) with ``parallelism.data=P`` and ``cluster.topology.nodes=P/8``;
each point simulates once, draws the plots once untimed (matplotlib's first-figure costs), then times a second
``run_plots`` of the same result. Run it from a tree's root to time that tree.

    python benchmarks/bench_plots.py --workers 128,1024,4096
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "01_resnet50_128gpu_ring.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="128,1024,4096", help="comma-separated worker counts (multiples of 8)")
    args = ap.parse_args()
    from simulator import plots
    from simulator.config import load_config
    from simulator.run import simulate

    with tempfile.TemporaryDirectory() as tmp:
        for p in (int(w) for w in args.workers.split(",")):
            result = simulate(load_config(EXAMPLE, [f"parallelism.data={p}", f"cluster.topology.nodes={p // 8}"]))
            plots.run_plots(result, Path(tmp) / f"warm{p}")
            t = time.perf_counter()
            plots.run_plots(result, Path(tmp) / f"p{p}")
            print(json.dumps({"workers": p, "plots_s": time.perf_counter() - t,
                              "files": sorted(f.name for f in (Path(tmp) / f"p{p}").glob("*.png"))}))


if __name__ == "__main__":
    main()
