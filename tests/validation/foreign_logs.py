"""nccl-tests and OSU micro-benchmark logs, written in those tools' exact layouts.

``nccl_log`` / ``osu_log`` print tables the way the tools do (nccl-tests: ``%12li  %12li  %8s
%6s  %6i`` then, out-of-place and in-place, ``%7s  %6.2f  %6.2f  %5s`` with the time as
``%7.2f`` below 100 µs, ``%7.1f`` below 10 ms and ``%7.0f`` above; OSU: ``%-10d%18.2f``), so
synthetic timings go through the same rounding a real log does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from simulator.collectives import bus_factor

NCCL_BINARIES = {"allreduce": "all_reduce", "allgather": "all_gather", "reduce_scatter": "reduce_scatter",
                 "broadcast": "broadcast", "reduce": "reduce", "alltoall": "alltoall"}
NCCL_HEADER = """\
#                                                              out-of-place                       in-place          
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)       
"""  # noqa: W291 (the tool pads these lines)


def _us(t_us: float) -> str:
    return f"{t_us:7.0f}" if t_us >= 10000 else f"{t_us:7.1f}" if t_us >= 100 else f"{t_us:7.2f}"


def nccl_log(seconds: Callable[[int], float], *, collective: str = "allreduce", ranks: int = 8, gpus: int = 8,
             sizes: Sequence[int] = tuple(4096 << (2 * k) for k in range(8)), named: bool = True,
             wrong: int = 0, in_place_factor: float = 1.0) -> str:
    """An ``X_perf -b .. -e .. -f 4 -g GPUS`` log: ``ranks // gpus`` processes of ``gpus`` GPUs each."""
    binary = NCCL_BINARIES[collective]
    lines = ["# nccl-tests version 2.17.6 nccl-headers=22603 nccl-library=22603"]
    if named:
        lines.append(f"# Collective test starting: {binary}_perf")
    lines += [f"# nThread 1 nGpus {gpus} minBytes {min(sizes)} maxBytes {max(sizes)} step: 4(factor) warmup iters: 5 "
              "iters: 20 agg iters: 1 validation: 1 graph: 0", "#", "# Using devices"]
    for r in range(ranks):
        node, dev = divmod(r, gpus)
        lines.append(f"#  Rank {r:2d} Group  0 Pid {4000 + r // gpus:6d} on    node-{node} device {dev:2d} "
                     f"[0000:{0x18 + 0x11 * dev:02x}:00] NVIDIA H100 80GB HBM3")
    lines.append("#")
    text = "\n".join(lines) + "\n" + NCCL_HEADER
    reduces = collective in ("allreduce", "reduce_scatter", "reduce")
    root = 0 if collective in ("broadcast", "reduce") else -1
    busbws = []
    for n in sizes:
        count = n // 4 // (ranks if collective in ("allgather", "reduce_scatter", "alltoall") else 1)
        row = f"{n:12d}  {count:12d}  {'float':>8s}  {'sum' if reduces else 'none':>6s}  {root:6d}"
        for t in (seconds(n), seconds(n) * in_place_factor):
            algbw = n / t / 1e9
            busbw = algbw * bus_factor(collective, ranks)
            busbws.append(busbw)
            row += f"  {_us(t * 1e6)}  {algbw:6.2f}  {busbw:6.2f}  {wrong:5d}"
        text += row + "\n"
    return text + f"# Out of bounds values : 0 OK\n# Avg bus bandwidth    : {sum(busbws) / len(busbws):.5g} \n#\n"


OSU_TITLES = {"allreduce": "Allreduce Latency", "allgather": "Allgather Latency", "latency": "Latency",
              "bw": "Bandwidth", "bibw": "Bi-Directional Bandwidth"}


def osu_log(values: Callable[[int], float], *, test: str = "allreduce", sizes: Sequence[int] = (4, 64, 1024),
            full: bool = False) -> str:
    """``osu_<test>`` output (v7.3): the value column is µs, or MB/s for ``bw`` / ``bibw``."""
    dtype = "MPI_FLOAT" if test == "allreduce" else "MPI_CHAR"
    lines = [f"# OSU MPI {OSU_TITLES[test]} Test v7.3", f"# Datatype: {dtype}."]
    if test in ("bw", "bibw"):
        lines.append("# Size      Bandwidth (MB/s)")
    elif test == "latency":
        lines.append("# Size          Latency (us)")
    elif full:
        lines.append("# Size       Avg Latency(us)   Min Latency(us)   Max Latency(us)  Iterations")
    else:
        lines.append("# Size       Avg Latency(us)")
    for n in sizes:
        v = values(n)
        lines.append(f"{n:<10d}{v:18.2f}" + (f"{v * 0.9:18.2f}{v * 1.1:18.2f}{1000:12d}" if full else ""))
    return "\n".join(lines) + "\n"
