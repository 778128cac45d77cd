"""The classroom course: numbered lessons that run, plot and check their own answers.

A lesson is a page (``docs/lessons/NN-slug.md``: question, prediction, command, plot,
exercise, answer), the runs that answer it (sweep files in ``docs/lessons/NN-slug/``, or
collectives timed over sizes) and *claims*: the page's stated answer as code, each a
function of the runs' results that says whether it holds and shows the numbers.
``trainsim lesson run N`` runs the lesson, writes every run's files and plots under
``--out``, and prints each claim with ✓ or ✗; the test suite runs every lesson and fails
when a claim stops holding, so the course cannot drift from the simulator.

Lessons need a checkout (they read ``docs/lessons/`` and ``examples/``).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TrainsimInputError

__all__ = ["LESSONS", "Claim", "Lesson", "LessonRun", "lesson", "run_lesson"]

def _checkout() -> Path:
    """The checkout the lessons live in: beside the package (editable install), else the working folder."""
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        if (root / "docs" / "lessons" / "README.md").is_file():
            return root
    return Path(__file__).resolve().parents[1]


ROOT = _checkout()
PAGES = ROOT / "docs" / "lessons"

Rows = list[dict[str, Any]]
Outputs = dict[str, Rows]


@dataclass(frozen=True)
class Claim:
    """One sentence of a lesson's answer and the check that makes it true or false."""

    text: str
    check: Callable[[Outputs], tuple[bool, str]]


@dataclass(frozen=True)
class LessonStep:
    """What a lesson runs: ``sweep`` (a sweep file), ``run`` (``(config file, [--set overrides])``: one run
    with its plots and report) or ``collective`` (keyword arguments of
    :func:`simulator.collective_report.collective_rows`); paths are relative to the checkout."""

    id: str
    kind: str
    spec: Any


@dataclass(frozen=True)
class Lesson:
    number: int
    slug: str
    title: str
    question: str
    steps: tuple[LessonStep, ...]
    claims: tuple[Claim, ...]
    plots: tuple[str, ...] = ()    # the plots that answer the question, relative to the lesson's --out

    @property
    def page(self) -> Path:
        return PAGES / f"{self.number:02d}-{self.slug}.md"

    @property
    def folder(self) -> Path:
        return PAGES / f"{self.number:02d}-{self.slug}"


@dataclass
class LessonRun:
    lesson: Lesson
    out: Path
    outputs: Outputs
    results: list[dict[str, Any]] = field(default_factory=list)   # {claim, holds, detail}
    files: list[Path] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        return all(r["holds"] for r in self.results)


# --- helpers the claims use ------------------------------------------------------------


def _num(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    return value


def pick(rows: Rows, **where: Any) -> Rows:
    """Rows whose columns equal ``where`` (a value may be a tuple of accepted values)."""
    def ok(row: dict[str, Any]) -> bool:
        return all(row.get(k) in (v if isinstance(v, tuple) else (v,)) for k, v in where.items())
    found = [r for r in rows if ok(r)]
    if not found:
        raise LookupError(f"no row with {where}")
    return found


def one(rows: Rows, key: str, **where: Any) -> float:
    found = pick(rows, **where)
    if len(found) != 1:
        raise LookupError(f"{len(found)} rows with {where}, expected one")
    return float(found[0][key])


def close(a: float, b: float, rel: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rel * abs(b)


def groups(rows: Rows, *cols: str) -> list[Rows]:
    """Rows grouped by the values of ``cols`` (a sweep's varied keys), in the sweep's order; each group
    holds that variant's seeds."""
    out: dict[tuple, Rows] = {}
    for r in rows:
        out.setdefault(tuple(r[c] for c in cols), []).append(r)
    return list(out.values())


def values(group: Rows, key: str) -> list[float]:
    return [float(r[key]) if r.get(key) not in (None, "") else math.nan for r in group]


def mean(group: Rows, key: str) -> float:
    xs = values(group, key)
    return sum(xs) / len(xs)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


# --- the lessons -------------------------------------------------------------------------

KiB, MiB = 1024, 1024 * 1024


def _l1_small(out: Outputs) -> tuple[bool, str]:
    rows = out["sizes"]
    small = min(r["size_bytes"] for r in rows)
    at = pick(rows, size_bytes=small)
    best = min(at, key=lambda r: r["simulated_s"])
    rd = one(rows, "simulated_s", algorithm="recursive_doubling", size_bytes=small)
    alpha = 2 * 2e-6  # two hops of 2 µs through the switch per step
    formula = math.log2(16) * alpha  # at 8 B the bytes add less than 1 % to the latency
    return (best["algorithm"] == "recursive_doubling" and close(rd, formula, 1e-2),
            f"fastest at {small} B: {best['algorithm']} ({_fmt(rd * 1e6)} µs; log2(16) × 2 hops × 2 µs = "
            f"{_fmt(formula * 1e6)} µs)")


def _l1_large(out: Outputs) -> tuple[bool, str]:
    rows = out["sizes"]
    n = max(r["size_bytes"] for r in rows)
    ring = one(rows, "simulated_s", algorithm="ring", size_bytes=n)
    rd = one(rows, "simulated_s", algorithm="recursive_doubling", size_bytes=n)
    p, bandwidth, alpha = 16, 100e9 / 8, 2 * 2e-6
    formula = 2 * (p - 1) * (alpha + n / p / bandwidth)
    return (close(ring, formula, 1e-3) and rd >= 2 * ring,
            f"at {n // MiB} MiB ring {_fmt(ring * 1e3)} ms (2(p-1)(α + n/(pB)) = {_fmt(formula * 1e3)} ms), "
            f"recursive doubling {_fmt(rd * 1e3)} ms = {_fmt(rd / ring)}× ring")


def _l1_crossover(out: Outputs) -> tuple[bool, str]:
    rows = out["sizes"]
    sizes = sorted({r["size_bytes"] for r in rows})
    faster = [n for n in sizes if one(rows, "simulated_s", algorithm="ring", size_bytes=n)
              < one(rows, "simulated_s", algorithm="recursive_doubling", size_bytes=n)]
    first = faster[0] if faster else None
    ok = first is not None and 64 * KiB <= first <= 4 * MiB and all(n in faster for n in sizes if n >= first)
    return ok, f"ring first beats recursive doubling at {first} B and stays ahead above it"


def _l2_busbw(out: Outputs) -> tuple[bool, str]:
    rows = out["fabric"]
    n = max(r["size_bytes"] for r in rows)
    busbw = one(rows, "busbw_GBps", algorithm="ring", size_bytes=n)
    return close(busbw, 12.5, 0.01), f"ring busbw at {n // MiB} MiB: {_fmt(busbw)} GB/s; a NIC: 12.5 GB/s"


def _l2_hierarchical(out: Outputs) -> tuple[bool, str]:
    rows = out["fabric"]
    n = max(r["size_bytes"] for r in rows)
    at = {r["algorithm"]: r["simulated_s"] for r in pick(rows, size_bytes=n)}
    best = min(at, key=at.__getitem__)
    return (best == "hierarchical" and at["ring"] > 1.1 * at["hierarchical"],
            f"at {n // MiB} MiB: "
            + ", ".join(f"{a} {_fmt(t * 1e3)} ms" for a, t in sorted(at.items(), key=lambda x: x[1])))


def _l2_contention(out: Outputs) -> tuple[bool, str]:
    rows = out["fabric"]
    n = max(r["size_bytes"] for r in rows)
    r = pick(rows, algorithm="recursive_doubling", size_bytes=n)[0]
    return (r["simulated_s"] >= 2 * r["analytic_s"],
            f"recursive doubling: {_fmt(r['simulated_s'] * 1e3)} ms simulated vs {_fmt(r['analytic_s'] * 1e3)} ms "
            "contention-free α-β")


# lesson 3: parameter servers
def _l3_one_server(out: Outputs) -> tuple[bool, str]:
    g = groups(out["servers"], "communication")
    t1, grad = mean(g[0], "iteration_time_s"), mean(g[0], "gradient_bytes")
    floor = 32 * grad / 12.5e9   # every worker's gradient through the server's one 100 Gb/s link, one way
    return (floor <= t1 <= 2 * floor,
            f"1 server: {_fmt(t1)} s per iteration; 32 × {_fmt(grad / 1e6)} MB / 12.5 GB/s = {_fmt(floor)} s "
            f"(push and pull: at most {_fmt(2 * floor)} s)")


def _l3_halving(out: Outputs) -> tuple[bool, str]:
    g = groups(out["servers"], "communication")
    t = [mean(x, "iteration_time_s") for x in g[:5]]
    ratios = [a / b for a, b in zip(t, t[1:], strict=False)]
    return (all(1.6 <= r <= 2.1 for r in ratios),
            "1 → 2 → 4 → 8 → 16 servers: " + " → ".join(f"{_fmt(x * 1e3)} ms" for x in t)
            + " (each doubling ÷" + ", ÷".join(_fmt(r) for r in ratios) + ")")


def _l3_allreduce(out: Outputs) -> tuple[bool, str]:
    g = groups(out["servers"], "communication")
    ring, ps4, ps16 = mean(g[6], "iteration_time_s"), mean(g[2], "iteration_time_s"), mean(g[4], "iteration_time_s")
    return (ps4 > 2 * ring and ps16 < 2 * ring,
            f"ring allreduce {_fmt(ring * 1e3)} ms; 4 servers {_fmt(ps4 * 1e3)} ms; 16 servers {_fmt(ps16 * 1e3)} ms")


def _l3_layer(out: Outputs) -> tuple[bool, str]:
    g = groups(out["servers"], "communication")
    even, layer = mean(g[4], "iteration_time_s"), mean(g[5], "iteration_time_s")
    return layer > 1.2 * even, f"16 servers: even shards {_fmt(even * 1e3)} ms, whole layers {_fmt(layer * 1e3)} ms"


# lesson 4: stragglers and sync modes
def _l4_modes(out: Outputs) -> dict[str, Rows]:
    bsp, asp, ssp, backup = groups(out["modes"], "sync")
    return {"bsp": bsp, "asp": asp, "ssp": ssp, "backup": backup}


def _seeds_where(a: Rows, b: Rows, key: str, better: Callable[[float, float], bool]) -> int:
    return sum(better(x, y) for x, y in zip(values(a, key), values(b, key), strict=True))


def _l4_throughput(out: Outputs) -> tuple[bool, str]:
    m = _l4_modes(out)
    wins = sum(all(x > y for y in (b, s, k)) for x, b, s, k in zip(
        *(values(m[k], "throughput_samples_per_s") for k in ("asp", "bsp", "ssp", "backup")), strict=True))
    return (wins == len(m["asp"]),
            f"ASP has the highest throughput in {wins} of {len(m['asp'])} seeds (means: "
            + ", ".join(f"{k} {_fmt(mean(v, 'throughput_samples_per_s'))}" for k, v in m.items()) + " samples/s)")


def _l4_target(out: Outputs) -> tuple[bool, str]:
    """ASP's lead in samples/s mostly evaporates in time to target; SSP's time to target varies least."""
    m = _l4_modes(out)
    thr = {k: values(m[k], "throughput_samples_per_s") for k in ("asp", "bsp")}
    ttt = {k: [x if math.isfinite(x) else math.inf for x in values(v, "time_to_target_s")] for k, v in m.items()}
    lead = [(a / b - 1, tb / ta - 1) for a, b, ta, tb in zip(thr["asp"], thr["bsp"], ttt["asp"], ttt["bsp"],
                                                             strict=True)]
    halved = sum(t < x / 2 for x, t in lead)

    def spread(k: str) -> float:
        return max(ttt[k]) / min(ttt[k])

    steadiest = all(spread("ssp") < spread(k) for k in ("bsp", "asp", "backup"))
    return (halved == len(lead) and steadiest,
            f"ASP's lead over BSP: {', '.join(f'{100 * x:.0f} %' for x, _ in lead)} in samples/s, "
            f"{', '.join(f'{100 * t:.0f} %' for _, t in lead)} in time to target; time to target max/min over "
            f"seeds: " + ", ".join(f"{k} {spread(k):.2f}" for k in m) + "; time to target (s): "
            + "; ".join(f"{k} " + ", ".join(_fmt(x) for x in v) for k, v in ttt.items()))


def _l4_updates(out: Outputs) -> tuple[bool, str]:
    m = _l4_modes(out)
    bsp, asp = mean(m["bsp"], "updates_to_target"), mean(m["asp"], "updates_to_target")
    return asp > 4 * bsp, f"updates to the target: BSP {_fmt(bsp)}, ASP {_fmt(asp)} (an ASP update: one stale gradient)"


def _l4_backup(out: Outputs) -> tuple[bool, str]:
    m = _l4_modes(out)
    n = len(m["bsp"])
    shorter = _seeds_where(m["backup"], m["bsp"], "iteration_time_s", lambda x, y: x < y)
    fewer = _seeds_where(m["backup"], m["bsp"], "throughput_samples_per_s", lambda x, y: x < y)
    t_backup, t_bsp = mean(m["backup"], "iteration_time_s"), mean(m["bsp"], "iteration_time_s")
    x_backup, x_bsp = mean(m["backup"], "throughput_samples_per_s"), mean(m["bsp"], "throughput_samples_per_s")
    return (shorter == n and fewer == n,
            f"4 backup workers: iterations shorter in {shorter} of {n} seeds ({_fmt(t_backup * 1e3)} vs "
            f"{_fmt(t_bsp * 1e3)} ms), useful samples/s lower in {fewer} of {n} ({_fmt(x_backup)} vs {_fmt(x_bsp)})")


# lesson 5: oversubscription and ECMP
def _l5_variant(out: Outputs, kind: str, over: float, algorithm: str) -> float:
    return mean(pick(out["fabrics"], **{"cluster.topology.inter.kind": kind,
                                         "cluster.topology.inter.oversubscription": over,
                                         "communication.algorithm": algorithm}), "iteration_time_s")


def _l5_fat_tree(out: Outputs) -> tuple[bool, str]:
    full, over = _l5_variant(out, "fat_tree", 1.0, "ring"), _l5_variant(out, "fat_tree", 4.0, "ring")
    return over > 2 * full, f"ring on the fat tree: 1:1 {_fmt(full * 1e3)} ms, 4:1 {_fmt(over * 1e3)} ms"


def _l5_leaf_spine(out: Outputs) -> tuple[bool, str]:
    full, over = _l5_variant(out, "leaf_spine", 1.0, "ring"), _l5_variant(out, "leaf_spine", 4.0, "ring")
    return (close(over, full, 0.01),
            f"ring on leaf-spine: 1:1 {_fmt(full * 1e3)} ms, 4:1 {_fmt(over * 1e3)} ms (neighbours share a leaf)")


def _l5_switch(out: Outputs) -> tuple[bool, str]:
    one, tree = _l5_variant(out, "switch", 1.0, "ring"), _l5_variant(out, "fat_tree", 1.0, "ring")
    return tree > 1.2 * one, f"ring: one switch {_fmt(one * 1e3)} ms, non-blocking fat tree {_fmt(tree * 1e3)} ms"


def _l5_hierarchical(out: Outputs) -> tuple[bool, str]:
    pairs = [(k, o) for k, o in (("switch", 1.0), ("leaf_spine", 1.0), ("leaf_spine", 4.0), ("fat_tree", 1.0),
                                 ("fat_tree", 4.0))]
    faster = [(k, o) for k, o in pairs if _l5_variant(out, k, o, "hierarchical") < _l5_variant(out, k, o, "ring")]
    return len(faster) == len(pairs), f"hierarchical is faster than ring on {len(faster)} of {len(pairs)} fabrics"


# lesson 6: pipeline schedules
def _l6(out: Outputs) -> dict[str, dict[str, Any]]:
    gpipe, f1b, inter = groups(out["schedules"], "parallelism.schedule")
    return {"gpipe": gpipe[0], "1f1b": f1b[0], "interleaved": inter[0]}


def _l6_memory(out: Outputs) -> tuple[bool, str]:
    s = _l6(out)
    g, f = s["gpipe"]["memory_per_device_bytes"], s["1f1b"]["memory_per_device_bytes"]
    return f <= 0.5 * g, f"memory per device: GPipe {_fmt(g / 1e9)} GB, 1F1B {_fmt(f / 1e9)} GB"


def _l6_bubble(out: Outputs) -> tuple[bool, str]:
    s = _l6(out)
    p, m = s["1f1b"]["pipeline_parallel"], s["1f1b"]["microbatches"]
    ideal = {"gpipe": (p - 1) / (m + p - 1), "1f1b": (p - 1) / (m + p - 1),
             "interleaved": (p - 1) / 2 / (m + (p - 1) / 2)}
    got = {k: float(v["pipeline_bubble_fraction"]) for k, v in s.items()}
    ok = all(got[k] >= ideal[k] - 1e-9 for k in got) and min(got, key=got.__getitem__) == "interleaved"
    return ok, "bubble (ideal): " + ", ".join(f"{k} {_fmt(got[k])} ({_fmt(ideal[k])})" for k in got)


# lesson 7: what fits
def _l7(out: Outputs) -> list[dict[str, Any]]:
    return [g[0] for g in groups(out["zero"], "parallelism.zero", "parallelism.recompute")]


def _l7_fits(out: Outputs) -> tuple[bool, str]:
    z0, z0r, z1 = _l7(out)[:3]
    refused = z0["status"] != "ok" and "needs" in str(z0["error"]) and "v100 has 32.0 GB" in str(z0["error"])
    return (refused and z0r["status"] == "ok" and z1["status"] == "ok",
            f"ZeRO-0: {'refused' if refused else z0['status']} ({str(z0['error'])[:90]}...); with recompute: "
            f"{z0r['status']}; ZeRO-1: {z1['status']}")


def _l7_memory(out: Outputs) -> tuple[bool, str]:
    rows = _l7(out)[2:]
    mem = [float(r["memory_per_device_bytes"]) for r in rows]
    return (mem[0] > mem[1] > mem[2],
            "memory per device, ZeRO-1 → 2 → 3: " + " → ".join(f"{_fmt(x / 1e9)} GB" for x in mem))


def _l7_cost(out: Outputs) -> tuple[bool, str]:
    z0r, z1, z2, z3 = _l7(out)[1:]
    b1, b3 = float(z1["bytes_sent_per_iteration"]), float(z3["bytes_sent_per_iteration"])
    t1, t3, tr = (float(r["iteration_time_s"]) for r in (z1, z3, z0r))
    return (b3 >= 1.5 * b1 and t3 > t1 and tr > t1,
            f"ZeRO-3 sends {_fmt(b3 / b1)}× ZeRO-1's bytes and takes {_fmt(t3)} s vs {_fmt(t1)} s; "
            f"recomputation instead: {_fmt(tr)} s")


# lesson 8: checkpoints
def _l8_best(out: Outputs) -> tuple[bool, str]:
    rows = out["interval"]
    best = max(rows, key=lambda r: float(r["goodput"]))
    young = float(rows[0]["young_daly_interval_s"])
    every = {r["faults.checkpoint.every"]: float(r["goodput"]) for r in rows}
    from topologies.units import parse

    nearest = min(every, key=lambda k: abs(math.log(parse(k, "duration") / young)))
    return (best["faults.checkpoint.every"] == nearest,
            f"best goodput {_fmt(float(best['goodput']))} at {best['faults.checkpoint.every']}; Young/Daly "
            f"{_fmt(young / 60)} min; goodput: " + ", ".join(f"{k} {_fmt(v)}" for k, v in every.items()))


def _l8_flat(out: Outputs) -> tuple[bool, str]:
    every = {r["faults.checkpoint.every"]: float(r["goodput"]) for r in out["interval"]}
    best = max(every.values())
    near = [every["20min"], every["1h"]]
    far = [every["10min"], every["2h"]]
    return (all(best - g < 0.005 for g in near) and all(best - g > 0.005 for g in far),
            f"within half a point of the best at 20 min and 1 h ({', '.join(_fmt(best - g) for g in near)} lost), "
            f"more at 10 min and 2 h ({', '.join(_fmt(best - g) for g in far)} lost)")


# lesson 9: communication-efficient training
def _l9(out: Outputs) -> dict[str, Rows]:
    names = ["fp32", "fp16", "topk", "topk_no_ef", "powersgd", "qsgd", "local_sgd"]
    return dict(zip(names, groups(out["compression"], "communication.compression", "sync"), strict=True))


def _l9_fp16(out: Outputs) -> tuple[bool, str]:
    m = _l9(out)
    fp16 = mean(m["fp16"], "bytes_on_wire_per_iteration")
    grad = mean(m["fp32"], "gradient_bytes")
    t32, t16 = mean(m["fp32"], "iteration_time_s"), mean(m["fp16"], "iteration_time_s")
    return (close(fp16, grad / 2, 1e-9) and t16 < 0.6 * t32,
            f"fp16 puts {_fmt(fp16 / 1e6)} MB on the wire (fp32 gradient: {_fmt(grad / 1e6)} MB); iteration "
            f"{_fmt(t16 * 1e3)} ms vs {_fmt(t32 * 1e3)} ms")


def _l9_feedback(out: Outputs) -> tuple[bool, str]:
    m = _l9(out)
    with_ef = values(m["topk"], "time_to_target_s")
    without = values(m["topk_no_ef"], "time_to_target_s")
    final = ", ".join(_fmt(x) for x in values(m["topk_no_ef"], "final_loss"))
    return (all(math.isfinite(x) for x in with_ef) and not any(math.isfinite(x) for x in without),
            f"top-1 % with error feedback reaches the target in {', '.join(_fmt(x) for x in with_ef)} s; without "
            f"it does not within 120 iterations (final loss {final})")


def _l9_powersgd(out: Outputs) -> tuple[bool, str]:
    m = _l9(out)
    p, f = values(m["powersgd"], "time_to_target_s"), values(m["fp32"], "time_to_target_s")
    return (all(3 * a < b for a, b in zip(p, f, strict=True)),
            f"time to target: PowerSGD {', '.join(_fmt(x) for x in p)} s, fp32 {', '.join(_fmt(x) for x in f)} s")


LESSONS: tuple[Lesson, ...] = (
    Lesson(1, "alpha-beta", "α-β regimes: latency-bound and bandwidth-bound collectives",
           "Which allreduce algorithm is fastest for an 8-byte message, and which for 128 MiB, on 16 ranks of "
           "one switch — and where do they cross?",
           (LessonStep("sizes", "collective", dict(algorithm="all", collective="allreduce", ranks=[16],
                                             sizes="8B..128MiB:x4", topology="switch", bandwidth="100Gbps",
                                             latency="2us", params=[], gamma=0.0, network="fluid")),),
           (Claim("At 8 B recursive doubling is fastest, and it costs log2(p) steps of 2 hops × α", _l1_small),
            Claim("At 128 MiB ring follows 2(p−1)(α + n/(pB)) and is at least 2× faster than recursive doubling",
                  _l1_large),
            Claim("Ring overtakes recursive doubling between 64 KiB and 4 MiB and stays ahead", _l1_crossover)),
           ("sizes/time_vs_size.png",)),
    Lesson(2, "fabric", "Ring, tree and hierarchical allreduce on a real fabric; why nccl-tests reports busbw",
           "32 GPUs in 4 servers (150 GB/s inside, one 100 Gb/s NIC each): which algorithm wins at 256 MiB, and "
           "what does ring's bus bandwidth equal?",
           (LessonStep("fabric", "collective", dict(algorithm="all", collective="allreduce", ranks=[32],
                                              sizes="1MiB..256MiB:x16", topology="hierarchical",
                                              bandwidth="100Gbps", latency="2us",
                                              params=["devices_per_node=8", "intra_bandwidth=150GB/s",
                                                      "intra_latency=1us"], gamma=0.0, network="fluid")),),
           (Claim("Ring's busbw equals the bottleneck link (a NIC, 12.5 GB/s) whatever p: that is why "
                  "nccl-tests reports it", _l2_busbw),
            Claim("Hierarchical (reduce inside servers, ring between them) is the fastest at 256 MiB",
                  _l2_hierarchical),
            Claim("Recursive doubling's 8 GPUs per NIC contend: simulated ≥ 2× its contention-free α-β time",
                  _l2_contention)),
           ("fabric/time_vs_size.png",)),
    Lesson(3, "parameter-servers", "Parameter servers against allreduce: where the server link saturates",
           "32 GPUs push ResNet-50's gradients to dedicated servers on a 100 Gb/s fat tree: how slow is one "
           "server, how many does it take to approach a ring allreduce, and does sharding by whole layers hurt?",
           (LessonStep("servers", "sweep", "docs/lessons/03-parameter-servers/servers.yaml"),),
           (Claim("One server is bound by its own link: the iteration takes between W·G/B and 2·W·G/B",
                  _l3_one_server),
            Claim("Each doubling of the servers (1 → 16) cuts the iteration time by 1.6–2.1×", _l3_halving),
            Claim("Four servers are more than 2× slower than a ring allreduce; sixteen come within 2×", _l3_allreduce),
            Claim("Sharding by whole layers is > 20 % slower than even shards at 16 servers: the biggest "
                  "shard sets the pace", _l3_layer)),
           ("servers/plots/iteration_time_vs_communication.png", "servers/report.html")),
    Lesson(4, "stragglers", "Stragglers: BSP, ASP, SSP and backup workers, in throughput and time to accuracy",
           "A quarter of 16 workers are 2× slow: which sync mode trains fastest in samples per second, which "
           "reaches the target loss first — and is one seed enough to say?",
           (LessonStep("modes", "sweep", "docs/lessons/04-stragglers/sync_modes.yaml"),),
           (Claim("ASP has the highest throughput in every seed", _l4_throughput),
            Claim("ASP's lead over BSP in samples/s more than halves in time to target in every seed; SSP (s = 2) "
                  "has the steadiest time to target across seeds", _l4_target),
            Claim("ASP needs > 4× BSP's updates to reach the target: each update is one stale gradient",
                  _l4_updates),
            Claim("Four backup workers shorten every iteration but, dropping 4 of 16 gradients, lower the useful "
                  "throughput in every seed", _l4_backup)),
           ("modes/plots/loss.png", "modes/plots/target.png")),
    Lesson(5, "oversubscription", "Oversubscribed fabrics and ECMP collisions",
           "128 GPUs (16 servers) on one switch, a leaf-spine and a fat tree, each non-blocking or 4:1 "
           "oversubscribed: which fabric does a ring mind, and why does a non-blocking fat tree still lose to "
           "one big switch?",
           (LessonStep("fabrics", "sweep", "examples/sweeps/topology.yaml"),),
           (Claim("4:1 oversubscription makes the ring > 2× slower on the fat tree", _l5_fat_tree),
            Claim("…but costs it < 1 % on the leaf-spine: ring neighbours sit on the same leaf", _l5_leaf_spine),
            Claim("A non-blocking fat tree is still > 20 % slower than one switch (more hops, ECMP collisions)",
                  _l5_switch),
            Claim("Hierarchical allreduce is faster than ring on every fabric", _l5_hierarchical)),
           ("fabrics/plots/iteration_time_vs_cluster.topology.inter.kind.png",)),
    Lesson(6, "pipeline", "Pipeline parallelism: bubbles, GPipe vs 1F1B vs interleaved, memory",
           "BERT-large in 4 stages with 16 microbatches: how much of an iteration is bubble under GPipe, 1F1B "
           "and interleaved 1F1B, and what does each schedule keep in memory?",
           (LessonStep("schedules", "sweep", "docs/lessons/06-pipeline/schedules.yaml"),
            LessonStep("gpipe", "run", ("examples/04_bert_large_model_parallel_16gpu.yaml",
                                        ["parallelism.schedule=gpipe"])),
            LessonStep("1f1b", "run", ("examples/04_bert_large_model_parallel_16gpu.yaml", []))),
           (Claim("1F1B needs at most half of GPipe's memory per device (p, not m, microbatches in flight)",
                  _l6_memory),
            Claim("Every bubble is at least its ideal ((p−1)/(m+p−1), interleaved ÷ chunks) and interleaved "
                  "has the smallest", _l6_bubble)),
           ("gpipe/plots/pipeline.png", "1f1b/plots/pipeline.png", "gpipe/report.html")),
    Lesson(7, "memory", "What fits: model states, activations, ZeRO and recomputation",
           "GPT-2 XL (1.5 B parameters) on 16 V100s of 32 GB: does plain data parallelism fit, and what do "
           "recomputation and the ZeRO stages cost in time and traffic to make it fit?",
           (LessonStep("zero", "sweep", "docs/lessons/07-memory/zero.yaml"),),
           (Claim("Plain data parallelism does not fit (the run is refused, naming the memory); recomputation "
                  "or ZeRO-1 makes it fit", _l7_fits),
            Claim("Each ZeRO stage needs less memory per device than the one before", _l7_memory),
            Claim("ZeRO-3 sends ≥ 1.5× ZeRO-1's bytes and is slower; recomputation is slower too", _l7_cost)),
           ("zero/plots/iteration_time_vs_parallelism.zero.png", "zero/results.csv")),
    Lesson(8, "checkpoints", "Failures and checkpointing: goodput against the checkpoint interval",
           "GPT-3 on 1,024 GPUs for a month with random GPU failures: how often should it checkpoint, and "
           "how much goodput does a wrong interval cost?",
           (LessonStep("interval", "sweep", "docs/lessons/08-checkpoints/interval.yaml"),),
           (Claim("The best interval of the sweep is the one nearest Young's √(2δM)", _l8_best),
            Claim("The optimum is flat: 20 min and 1 h lose < 0.5 points of goodput, 10 min and 2 h more",
                  _l8_flat)),
           ("interval/plots/checkpoint.png",)),
    Lesson(9, "compression", "Communication-efficient training: compression and local SGD on a slow network",
           "64 V100s (8 servers) on 10 GbE: what do fp16, top-k (with and without error feedback), PowerSGD, QSGD and "
           "local SGD buy in iteration time, and do they still reach the target loss?",
           (LessonStep("compression", "sweep", "docs/lessons/09-compression/compression.yaml"),),
           (Claim("fp16 carries exactly half the bytes of fp32 and is > 40 % faster per iteration", _l9_fp16),
            Claim("Top-1 % with error feedback reaches the target; without it, not within the run's 120 "
                  "iterations", _l9_feedback),
            Claim("PowerSGD (rank 4) reaches the target > 3× sooner than fp32 in every seed", _l9_powersgd)),
           ("compression/plots/target.png", "compression/plots/loss.png")),
)


def lesson(number: int | str) -> Lesson:
    try:
        n = int(number)
    except (TypeError, ValueError):
        n = -1
    found = [x for x in LESSONS if x.number == n]
    if not found:
        raise TrainsimInputError(f"lesson: expected a number from 1 to {len(LESSONS)}, got {number!r} "
                                 "(trainsim lesson list)")
    return found[0]


# --- running a lesson ---------------------------------------------------------------------


def _run_collective(step: LessonStep, folder: Path) -> tuple[Rows, list[Path]]:
    from .collective_report import collective_rows, plot_rows
    from .results import strict_json
    from .sizes import parse_ranks, parse_sizes

    spec = dict(step.spec)
    spec["sizes"] = parse_sizes(spec["sizes"])
    spec["ranks"] = parse_ranks(",".join(map(str, spec["ranks"])))
    rows = collective_rows(**spec)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rows.json").write_text(strict_json(rows, indent=2) + "\n")
    plot = folder / "time_vs_size.png"
    plot_rows(rows, plot)
    return rows, [folder / "rows.json", plot]


def _run_config(step: LessonStep, folder: Path) -> tuple[Rows, list[Path]]:
    from .config import load_config
    from .run import simulate

    config_file, overrides = step.spec
    result = simulate(load_config(ROOT / config_file, overrides))
    result.write(folder)
    return [dict(result.summary)], sorted(p for p in folder.rglob("*") if p.is_file())


def _run_sweep(step: LessonStep, folder: Path, client: Any) -> tuple[Rows, list[Path]]:
    from .sweep import load_sweep, run_sweep

    if not (ROOT / step.spec).is_file():
        raise TrainsimInputError(f"lesson step {step.id}: {step.spec} not found (lessons run from a checkout "
                                 "of trainsim: cd into it)")
    sweep = load_sweep(ROOT / step.spec)
    result = run_sweep(sweep, folder, client=client)  # a point that fails (does not fit, ...) is a row too
    with (folder / "results.csv").open() as fh:
        rows = [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    return rows, [folder / "results.csv", *result.files]


def run_lesson(number: int | str, out: str | Path, *, workers: int | None = None,
               progress: Callable[[str], None] | None = None) -> LessonRun:
    """Run every step of a lesson into ``out/<step>/``, check its claims, write ``out/claims.json``."""
    les = lesson(number)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TrainsimInputError(f"--out {out}: is a file; expected a folder")
    outputs: Outputs = {}
    files: list[Path] = []
    client = None
    try:
        for step in les.steps:
            if progress:
                progress(f"lesson {les.number}: {step.id}")
            if step.kind == "collective":
                rows, made = _run_collective(step, out / step.id)
            elif step.kind == "run":
                rows, made = _run_config(step, out / step.id)
            else:
                if client is None:
                    from dask.distributed import Client, LocalCluster

                    client = Client(LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                                                 dashboard_address=None))
                rows, made = _run_sweep(step, out / step.id, client)
            outputs[step.id] = rows
            files += made
    finally:
        if client is not None:
            cluster = client.cluster
            client.close()
            cluster.close()
    run = LessonRun(les, out, outputs, files=files)
    for claim in les.claims:
        try:
            holds, detail = claim.check(outputs)
        except (LookupError, KeyError, ValueError, ZeroDivisionError) as e:
            holds, detail = False, f"could not be checked: {e}"
        run.results.append({"claim": claim.text, "holds": bool(holds), "detail": detail})
    (out / "claims.json").write_text(json.dumps({"lesson": les.number, "title": les.title,
                                                 "claims": run.results}, indent=2, ensure_ascii=False) + "\n")
    run.files.append(out / "claims.json")
    from .report import write_lesson_report

    run.files.append(write_lesson_report(run, out))
    return run


def listing() -> list[dict[str, Any]]:
    return [{"lesson": x.number, "title": x.title, "page": str(x.page.relative_to(ROOT))} for x in LESSONS]


def claims_of(numbers: Sequence[int] | None = None) -> list[tuple[int, str]]:
    return [(x.number, c.text) for x in LESSONS if numbers is None or x.number in numbers for c in x.claims]
