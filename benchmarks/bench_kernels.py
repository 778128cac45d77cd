"""CPU kernels against the machine's memory bandwidth and against MPI, in one run (issue 5).

1. Memory bandwidth, STREAM style, on arrays of ``--array`` bytes (default 128 MiB,
   4x a 32 MiB L3): numpy copy (``np.copyto``, counted as 2n bytes: n read, n
   written), a Numba triad ``a = b + s*c`` (3n: two arrays read, one written) and
   the executor's reduce kernel ``dst += src`` (``kernels._cpu_rank.sum_into``,
   3n, counted exactly like the triad: two arrays read, one written), each on 1
   thread and on 2 threads (two halves at once, the kernels release the GIL), and
   numpy's in-place ``np.add(a, b, out=a)`` (3n), the same access pattern as the
   reduce kernel. Write-allocate traffic is not counted, as in STREAM: the triad
   and copy write a third array (really 4n and 3n bytes move), the reduce writes
   one it has just read.
2. Ring allreduce busbw (nccl-tests: ``2(p-1)/p * size / time``) of the CPU
   executor, one process per rank (and one thread per rank, for comparison), at
   ``--ranks`` for ``--sizes``, float32; median of the timed repetitions, after
   warm-up, the first checked against numpy.
3. ``MPI_Allreduce`` on the same sizes and ranks (``mpirun`` + mpi4py), when both
   are installed; otherwise a record says why not.

Rounds alternate the executor and MPI so that both see the same machine; the
median is taken over the repetitions of all rounds.

    python benchmarks/bench_kernels.py --ranks 2,4 --sizes 1KiB..64MiB:x4 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from numba import njit

import kernels
from kernels._cpu_rank import sum_into
from kernels.lowering import element_schedule
from simulator.collectives import bus_factor
from simulator.sizes import parse_ranks, parse_sizes

HERE = Path(__file__).resolve().parent


@njit(nogil=True, cache=True)
def triad(a, b, c, s):
    for i in range(a.shape[0]):
        a[i] = b[i] + s * c[i]


def timed(fn, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def on_threads(kernel, arrays: list[np.ndarray], threads: int, *extra):
    """A callable running ``kernel`` on ``threads`` equal slices of ``arrays`` at once."""
    n = arrays[0].shape[0]
    cuts = [slice(i * n // threads, (i + 1) * n // threads) for i in range(threads)]
    if threads == 1:
        return lambda: kernel(*arrays, *extra)

    def run():
        workers = [threading.Thread(target=kernel, args=(*[a[c] for a in arrays], *extra)) for c in cuts]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    return run


def _add_inplace(x: np.ndarray, y: np.ndarray) -> None:
    np.add(x, y, out=x)  # the reduce kernel's access pattern, by numpy (releases the GIL)


def memory(array_bytes: int, repeats: int, when: str) -> list[dict]:
    n = array_bytes // 4
    rng = np.random.default_rng(0)
    a, b, c = (rng.uniform(-1, 1, n).astype(np.float32) for _ in range(3))
    rows = [{"kind": "memory", "name": "numpy_copy", "threads": 1, "bytes_counted": 2 * a.nbytes,
             "seconds": timed(lambda: np.copyto(b, a), repeats)}]
    for threads in (1, 2):
        rows.append({"kind": "memory", "name": "triad", "threads": threads, "bytes_counted": 3 * a.nbytes,
                     "seconds": timed(on_threads(triad, [a, b, c], threads, np.float32(3.0)), repeats)})
        rows.append({"kind": "memory", "name": "reduce_kernel", "threads": threads, "bytes_counted": 3 * a.nbytes,
                     "seconds": timed(on_threads(sum_into, [a, b], threads), repeats)})
        rows.append({"kind": "memory", "name": "numpy_add_inplace", "threads": threads, "bytes_counted": 3 * a.nbytes,
                     "seconds": timed(on_threads(_add_inplace, [a, b], threads), repeats)})
    for row in rows:
        row["GBps"] = row["bytes_counted"] / row["seconds"] / 1e9
        row["when"] = when
    return rows


def repeats_for(size: int) -> int:
    return 100 if size <= 64 << 10 else 30 if size <= 1 << 20 else 10


def ours(mode: str, p: int, sizes: list[int]) -> dict[int, list[float]]:
    out = {}
    with kernels.executor("cpu", p, mode=mode) as ex:
        for size in sizes:
            s = element_schedule("ring", p, size // 4, "float32")
            out[size] = ex.time(s, "float32", repeats=repeats_for(size), warmup=3).tolist()
    return out


def mpi_command() -> tuple[list[str] | None, str]:
    launcher = shutil.which("mpirun") or shutil.which("mpiexec")
    if launcher is None:
        return None, "no mpirun/mpiexec on PATH"
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None, "mpi4py is not installed (pip install 'trainsim[mpi]')"
    extra = ["--allow-run-as-root", "--oversubscribe"] if "Open MPI" in _version(launcher) else []
    return [launcher, *extra], _version(launcher).splitlines()[0]


def _version(launcher: str) -> str:
    res = subprocess.run([launcher, "--version"], capture_output=True, text=True)
    return (res.stdout or res.stderr).strip()


def mpi(launcher: list[str], p: int, sizes: list[int]) -> dict[int, list[float]]:
    cmd = [*launcher, "-np", str(p), sys.executable, str(HERE / "mpi_allreduce_ranks.py"),
           "--sizes", ",".join(map(str, sizes)), "--repeats", ",".join(str(repeats_for(s)) for s in sizes)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=1200)
    return {rec["size_bytes"]: rec["times_s"] for rec in map(json.loads, res.stdout.splitlines())}


def allreduce(ranks: list[int], sizes: list[int], rounds: int, launcher: list[str] | None,
              modes: list[str]) -> list[dict]:
    times: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    for r in range(rounds):
        for p in ranks:
            impls = [("mpi", None)] * (launcher is not None) + [(f"trainsim-{m}", m) for m in modes]
            if r % 2:
                impls.reverse()
            for name, mode in impls:
                got = mpi(launcher, p, sizes) if mode is None else ours(mode, p, sizes)
                for size, ts in got.items():
                    times[(name, p, size)].extend(ts)
                print(f"round {r + 1}: {name} at {p} ranks done", file=sys.stderr, flush=True)
    rows = []
    for (name, p, size), ts in sorted(times.items()):
        t = float(np.median(ts))
        algbw = size / t / 1e9
        rows.append({"kind": "allreduce", "impl": name, "algorithm": "ring" if name != "mpi" else "MPI_Allreduce",
                     "ranks": p, "size_bytes": size, "dtype": "float32", "time_s": t, "repeats": len(ts),
                     "algbw_GBps": algbw, "busbw_GBps": algbw * bus_factor("allreduce", p)})
    return rows


def machine(mpi_note: str) -> dict:
    import numba

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"kind": "machine", "date": time.strftime("%Y-%m-%d"), "cpu": cpu, "cpus": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "mpi": mpi_note, "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])}


def report(rows: list[dict]) -> None:
    mem = {(r["when"], r["name"], r["threads"]): r["GBps"] for r in rows if r["kind"] == "memory"}
    names = ("numpy_copy", "triad", "numpy_add_inplace", "reduce_kernel")
    for when, threads in [(w, t) for w in ("before", "after") for t in (1, 2)]:
        copy, tri, add, red = (mem.get((when, name, threads), float("nan")) for name in names)
        print(f"{when}, {threads} thread(s) GB/s: copy {copy:.1f}  triad {tri:.1f}  numpy a+=b {add:.1f}  "
              f"reduce kernel {red:.1f} -> reduce/triad {red / tri:.0%}, reduce/numpy {red / add:.0%}")
    table = defaultdict(dict)
    for r in rows:
        if r["kind"] == "allreduce":
            table[(r["ranks"], r["size_bytes"])][r["impl"]] = r["busbw_GBps"]
    impls = sorted({r["impl"] for r in rows if r["kind"] == "allreduce"})
    print("ranks      size  " + "  ".join(f"{i:>18}" for i in impls) + "   mpi/process")
    for (p, size), got in sorted(table.items()):
        ratio = got["mpi"] / got["trainsim-process"] if "mpi" in got else float("nan")
        print(f"{p:5d} {size:9d}  " + "  ".join(f"{got.get(i, float('nan')):18.3f}" for i in impls)
              + f"   {ratio:10.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", default="2,4")
    ap.add_argument("--sizes", default="1KiB..64MiB:x4")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--array", default="128MiB", help="bytes per array for the bandwidth tests")
    ap.add_argument("--modes", default="process,thread", help="executor modes to time")
    ap.add_argument("--no-mpi", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "kernels_cpu.jsonl")
    args = ap.parse_args()
    ranks, sizes = parse_ranks(args.ranks), parse_sizes(args.sizes)
    launcher, note = (None, "not requested (--no-mpi)") if args.no_mpi else mpi_command()
    rows = [machine(note)]
    array = parse_sizes(args.array)[0]
    rows += memory(array, repeats=10, when="before")
    rows += allreduce(ranks, sizes, args.rounds, launcher, args.modes.split(","))
    rows += memory(array, repeats=10, when="after")  # the machine may have changed meanwhile
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report(rows)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
