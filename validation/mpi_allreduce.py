"""MPI_Allreduce timings: the independent reference of ``trainsim validate --reference mpi``.

Standalone on purpose (numpy and mpi4py only, no trainsim import), so what it measures is
a measurement trainsim did not write. Run under an MPI launcher::

    mpiexec -n 4 python validation/mpi_allreduce.py --sizes 4096,65536 --repeats 10 --warmup 3

Rank 0 prints one JSON line per size: ``{"ranks", "size_bytes", "dtype", "seconds": [...]}``.
Each repetition starts after a barrier; its time is the slowest rank's ``MPI.Wtime``
difference around ``Allreduce`` (the collective ends when its last rank does). Every rank
sends ``rank + 1`` in every element, so the first timed result is checked against
``p(p+1)/2`` exactly; a mismatch exits with status 3.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from mpi4py import MPI


def time_allreduce(comm: MPI.Comm, size_bytes: int, dtype: np.dtype, repeats: int, warmup: int) -> list[float]:
    p, rank = comm.Get_size(), comm.Get_rank()
    send = np.full(size_bytes // dtype.itemsize, rank + 1, dtype=dtype)
    recv = np.empty_like(send)
    times = []
    for i in range(warmup + repeats):
        comm.Barrier()
        t0 = MPI.Wtime()
        comm.Allreduce(send, recv, op=MPI.SUM)
        dt = comm.allreduce(MPI.Wtime() - t0, op=MPI.MAX)
        if i == warmup and not np.all(recv == p * (p + 1) // 2):
            sys.stderr.write(f"mpi_allreduce: wrong result at {size_bytes} bytes on rank {rank}\n")
            comm.Abort(3)
        if i >= warmup:
            times.append(dt)
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", required=True, help="comma-separated bytes per rank")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    dtype = np.dtype(args.dtype)
    for size in (int(s) for s in args.sizes.split(",")):
        seconds = time_allreduce(comm, size, dtype, args.repeats, args.warmup)
        if comm.Get_rank() == 0:
            print(json.dumps({"ranks": comm.Get_size(), "size_bytes": size, "dtype": dtype.name,
                              "seconds": seconds, "library": MPI.Get_library_version().splitlines()[0].strip("\x00 ")}),
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
