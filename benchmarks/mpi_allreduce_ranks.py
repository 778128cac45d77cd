"""MPI_Allreduce timings, the reference `bench_kernels.py` compares the CPU ring executor with.

Run by bench_kernels.py under ``mpirun -np P``; prints one JSON line per size on rank 0.
Each repetition: ``MPI_Barrier``, then ``MPI_Allreduce`` (float32, sum, out of place)
timed with ``perf_counter``; the repetition's time is the slowest rank's.

    mpirun --allow-run-as-root --oversubscribe -np 2 python benchmarks/mpi_allreduce_ranks.py \\
        --sizes 1024,1048576 --repeats 100,10 --warmup 3
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from mpi4py import MPI


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", required=True, help="bytes per rank, comma separated")
    ap.add_argument("--repeats", required=True, help="timed repetitions per size, comma separated")
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    for size, repeats in zip(map(int, args.sizes.split(",")), map(int, args.repeats.split(",")), strict=True):
        send = np.random.default_rng(comm.rank).uniform(-1, 1, size // 4).astype(np.float32)
        recv = np.empty_like(send)
        times = []
        for rep in range(args.warmup + repeats):
            comm.Barrier()
            t0 = time.perf_counter()
            comm.Allreduce(send, recv, op=MPI.SUM)
            elapsed = comm.allreduce(time.perf_counter() - t0, op=MPI.MAX)
            if rep >= args.warmup:
                times.append(elapsed)
        expected = comm.allreduce(send.astype(np.float64), op=MPI.SUM)
        assert np.allclose(recv, expected, rtol=1e-4, atol=1e-4)
        if comm.rank == 0:
            print(json.dumps({"size_bytes": size, "ranks": comm.size, "times_s": times}), flush=True)


if __name__ == "__main__":
    main()
