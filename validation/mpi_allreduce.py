"""MPI_Allreduce timings: the independent reference of ``trainsim validate --reference mpi``.

Standalone on purpose (numpy and mpi4py only, no trainsim import), so what it measures is
a measurement trainsim did not write. Run under an MPI launcher::

    mpiexec -n 4 python validation/mpi_allreduce.py --sizes 4096,65536 --repeats 10 --warmup 3

Rank 0 prints one JSON line per batch of repetitions: ``{"ranks", "size_bytes", "dtype", "seconds": [...],
"sentinel_s"}``. With ``--sentinel BYTES`` a sentinel (:class:`Sentinel`: in-cache adds over that many
bytes) is timed just before and just after each size's batch, as ``validation.measure`` does for the
kernels: before a batch, while the sentinel is slower than 1.25 times its fastest so far, the script
waits (up to 2 s); a batch whose
sentinel after it was slow is timed again (at most 3 times); each batch's line carries the slower of
its two sentinel readings (0 without ``--sentinel``).
Each repetition starts after a barrier; its time is the slowest rank's ``MPI.Wtime``
difference around ``Allreduce`` (the collective ends when its last rank does). Every rank
sends ``rank + 1`` in every element, so the first timed result is checked against
``p(p+1)/2`` exactly; a mismatch exits with status 3.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

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


GATE, WAIT_S, ATTEMPTS = 1.25, 2.0, 3   # validation.records.QUIET_GATE, validation.measure's SENTINEL_WAIT_S, ATTEMPTS


class Sentinel:
    """The machine's state next to every batch: each rank adds two in-cache arrays of ``size_bytes`` eight
    times (median of 5 such passes), the slowest rank's time. Not an MPI call: Open MPI's time at 256 KiB
    depends on what it ran before (37 us before a 64 MiB allreduce and 61 us after it, for good, on a quiet
    2-core VM), so a sentinel through MPI would watch MPI's state, not the machine's. Every rank sees the
    same (MAX-reduced) times, so every rank takes the same decisions."""

    def __init__(self, comm: MPI.Comm, size_bytes: int, dtype: np.dtype) -> None:
        self.comm, self.fastest = comm, float("inf")
        self.a = np.ones(max(1, size_bytes // dtype.itemsize), dtype=dtype)
        self.b = np.ones_like(self.a)

    def read(self) -> float:
        passes = []
        for _ in range(6):
            self.comm.Barrier()
            t0 = MPI.Wtime()
            for _ in range(8):
                np.add(self.a, self.b, out=self.a)
            passes.append(self.comm.allreduce(MPI.Wtime() - t0, op=MPI.MAX))
        t = float(np.median(passes[1:]))
        self.fastest = min(self.fastest, t)
        return t

    def quiet(self, t: float) -> bool:
        return t <= GATE * self.fastest

    def await_quiet(self) -> float:
        t, start = self.read(), time.monotonic()
        while not self.quiet(t) and time.monotonic() - start < WAIT_S:
            time.sleep(0.02)
            t = self.read()
        return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", required=True, help="comma-separated bytes per rank")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--sentinel", type=int, default=0, help="bytes of the sentinel allreduce (0: none)")
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    dtype = np.dtype(args.dtype)
    watch = Sentinel(comm, args.sentinel, dtype) if args.sentinel > 0 else None
    for size in (int(s) for s in args.sizes.split(",")):
        for _ in range(ATTEMPTS if watch else 1):
            before = watch.await_quiet() if watch else 0.0
            seconds = time_allreduce(comm, size, dtype, args.repeats, args.warmup)
            seen = max(before, watch.read()) if watch else 0.0
            if comm.Get_rank() == 0:
                print(json.dumps({"ranks": comm.Get_size(), "size_bytes": size, "dtype": dtype.name,
                                  "seconds": seconds, "sentinel_s": seen,
                                  "library": MPI.Get_library_version().splitlines()[0].strip("\x00 ")}), flush=True)
            if not watch or watch.quiet(seen):
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
