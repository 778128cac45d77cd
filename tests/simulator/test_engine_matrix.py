"""One engine: every meaningful combination runs, and every knob moves the result the way it must.

{data, tensor, pipeline, ZeRO, hybrid} × {allreduce, parameter server} × {bsp, ssp, asp, backup
workers} × {stragglers, heterogeneity} × {convergence} × {trace}, on a small cluster (BERT-large
on a 16-A100 switch, a few iterations). A combination that cannot mean anything is a one-line
config error naming both keys.
"""

from __future__ import annotations

import copy
import json
import math

import pytest

from simulator.config import ConfigError, load_config
from simulator.run import simulate

PARALLEL = {
    "data": {"data": 4},
    "tensor": {"data": 2, "tensor": 2},
    "pipeline": {"data": 2, "pipeline": 2, "microbatches": 2},
    "zero": {"data": 4, "zero": 1},
    "hybrid": {"data": 2, "tensor": 2, "pipeline": 2, "microbatches": 2},
}
PS = {"servers": 2, "server_device": "a100"}   # servers fast enough that compute matters
SYNC = {
    "allreduce": ({"pattern": "allreduce"}, {"mode": "bsp"}),
    "ps-bsp": ({"pattern": "parameter_server", **PS}, {"mode": "bsp"}),
    "ps-backup": ({"pattern": "parameter_server", **PS}, {"mode": "bsp", "backup_workers": 1}),
    "ps-ssp": ({"pattern": "parameter_server", **PS}, {"mode": "ssp", "staleness": 1}),
    "ps-asp": ({"pattern": "parameter_server", **PS}, {"mode": "asp"}),
}
STRAGGLERS = {"distribution": "lognormal", "sigma": 0.2, "slow_fraction": 0.25, "slowdown": 1.5,
              "heterogeneity": [{"device": "v100", "fraction": 0.25}]}
CONVERGENCE = {"problem": "logistic_regression", "features": 8, "samples": 512, "batch": 8, "lr": 0.5}


def job(parallel: str, sync: str = "allreduce", **extra) -> dict:
    comm, mode = SYNC[sync]
    cfg = {
        "name": f"{parallel}-{sync}",
        "seed": 3,
        "cluster": {"topology": {"kind": "switch", "devices": 16, "link": {"bandwidth": "100GB/s", "latency": "1us"}},
                    "device": "a100"},
        "workload": {"model": "bert_large", "batch_per_device": 8},
        "parallelism": dict(PARALLEL[parallel]),
        "communication": {**comm, "bucket_size": "50MiB"},
        "sync": dict(mode),
        "training": {"iterations": 5, "warmup": 1},
        "output": {"trace_ranks": 4},
    }
    for key, value in extra.items():
        set_dotted(cfg, key, value)
    return cfg


def set_dotted(cfg: dict, key: str, value) -> None:
    """``cfg[a][b][c] = value`` for ``key = "a.b.c"``, making the sections on the way."""
    node = cfg
    *path, last = key.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


COMBOS = [(p, s) for p in PARALLEL for s in SYNC if not (p == "zero" and s != "allreduce")]


def finite(summary: dict) -> None:
    for key, value in summary.items():
        if isinstance(value, float):
            assert math.isfinite(value), key


@pytest.mark.parametrize(("parallel", "sync"), COMBOS, ids=[f"{p}-{s}" for p, s in COMBOS])
def test_every_combination_runs_with_stragglers_heterogeneity_convergence_and_trace(parallel, sync, tmp_path):
    cfg = job(parallel, sync, stragglers=STRAGGLERS, **{"training.convergence": CONVERGENCE})
    result = simulate(load_config(cfg))
    s = result.summary
    finite(s)
    devices = math.prod(PARALLEL[parallel].get(k, 1) for k in ("data", "tensor", "pipeline"))
    assert s["workers"] == devices
    assert {r.rank for r in result.iterations} == set(range(devices)) or sync.startswith("ps")
    assert len({r.rank for r in result.iterations}) == devices
    assert s["iteration_time_s"] > 0 and 0 < s["scaling_efficiency"] < 1
    assert s["final_loss"] < result.tables["convergence"][0]["loss"]     # the learner learned
    out = result.write(tmp_path / "run", plots=False)
    spans = [e for e in json.loads((out / "trace.json").read_text())["traceEvents"] if e["ph"] == "X"]
    assert {e["tid"] for e in spans if e["tid"] < 1_000_000} <= set(range(devices)) and spans
    if sync.startswith("ps"):
        assert s["algorithm"] == f"parameter_server/{cfg['sync']['mode']}" and 0 < s["server_utilization"] < 1
    if parallel in ("pipeline", "hybrid", "tensor", "zero"):
        assert "pipeline_bubble_fraction" in s


KNOB_COMBOS = [(p, s) for p in ("data", "tensor", "pipeline", "hybrid") for s in ("allreduce", "ps-bsp")]
IDS = [f"{p}-{s}" for p, s in KNOB_COMBOS]


@pytest.mark.parametrize(("parallel", "sync"), KNOB_COMBOS, ids=IDS)
def test_slower_devices_slow_every_job(parallel, sync):
    base = simulate(load_config(job(parallel, sync))).summary["iteration_time_s"]
    mixed = simulate(load_config(job(parallel, sync, **{"stragglers.heterogeneity": [
        {"device": "v100", "fraction": 0.5}]}))).summary["iteration_time_s"]
    assert mixed > base * 1.05


@pytest.mark.parametrize(("parallel", "sync"), KNOB_COMBOS, ids=IDS)
def test_stragglers_slow_every_synchronous_job(parallel, sync):
    base = simulate(load_config(job(parallel, sync))).summary
    slow = simulate(load_config(job(parallel, sync, stragglers={"slow_fraction": 0.5, "slowdown": 2.0}))).summary
    assert slow["iteration_time_s"] > base["iteration_time_s"] * 1.05
    if parallel == "data":        # (in a pipeline a slow stage can also shorten the others' input waits)
        assert slow["wait_s"] > base["wait_s"]


@pytest.mark.parametrize("parallel", ["data", "tensor", "pipeline"])
def test_backup_workers_shorten_a_step_with_a_straggler(parallel):
    cfg = job(parallel, "ps-bsp", stragglers={"slow_fraction": 0.25, "slowdown": 3.0})
    cfg["parallelism"]["data"] = 4
    plain = simulate(load_config(cfg)).summary
    cfg["sync"]["backup_workers"] = 1
    backup = simulate(load_config(cfg)).summary
    assert backup["iteration_time_s"] < plain["iteration_time_s"]


@pytest.mark.parametrize("parallel", ["data", "pipeline"])
def test_asp_outruns_bsp_with_stragglers(parallel):
    noisy = {"distribution": "lognormal", "sigma": 0.5}
    bsp = simulate(load_config(job(parallel, "ps-bsp", stragglers=noisy))).summary
    asp = simulate(load_config(job(parallel, "ps-asp", stragglers=noisy))).summary
    assert asp["throughput_samples_per_s"] > bsp["throughput_samples_per_s"]
    assert asp["staleness_max"] >= 1 and bsp["clock_staleness_max"] == 0


@pytest.mark.parametrize("parallel", ["data", "pipeline"])
def test_parameter_server_overlap_never_hurts_and_helps_when_compute_is_long(parallel):
    on = simulate(load_config(job(parallel, "ps-bsp"))).summary["iteration_time_s"]
    off = simulate(load_config(job(parallel, "ps-bsp", **{"communication.overlap": False}))).summary
    assert on < off["iteration_time_s"]


@pytest.mark.parametrize("parallel", ["data", "pipeline"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ssp_with_bound_zero_gives_bsps_summary_byte_for_byte(parallel, seed, tmp_path):
    noisy = {"distribution": "lognormal", "sigma": 0.4, "slow_fraction": 0.25, "slowdown": 1.5}
    written = {}
    for mode in ("bsp", "ssp"):
        cfg = job(parallel, "ps-bsp", seed=seed, stragglers=noisy, **{"training.convergence": CONVERGENCE})
        cfg["sync"] = {"mode": mode, "staleness": 0}
        out = simulate(load_config(cfg)).write(tmp_path / mode, plots=False)
        text = (out / "summary.json").read_text()
        written[mode] = text.replace('"parameter_server/ssp"', '"parameter_server/bsp"').replace(
            '"sync": "ssp"', '"sync": "bsp"')
    assert written["ssp"] == written["bsp"]


def test_convergence_in_a_pipeline_is_sequential_sgd_on_the_replicas_batches():
    """D replicas of a pipeline train like D data-parallel workers: same updates, same loss, either pattern."""
    losses = {}
    for name, parallel in (("data", {"data": 2}), ("pipeline", {"data": 2, "pipeline": 2, "microbatches": 2})):
        for sync in ("allreduce", "ps-bsp"):
            cfg = job("data", sync, **{"training.convergence": CONVERGENCE})
            cfg["parallelism"] = parallel
            losses[(name, sync)] = simulate(load_config(cfg)).summary["final_loss"]
    assert len({round(v, 12) for v in losses.values()}) == 1, losses


@pytest.mark.parametrize(("change", "message"), [
    ({"parallelism.zero": 1}, "parallelism.zero: ZeRO-1 .* communication.pattern: parameter_server"),
    ({"communication.algorithm": "ring"}, "communication.algorithm .* communication.pattern: parameter_server"),
])
def test_meaningless_parameter_server_combinations_name_both_keys(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config(job("data", "ps-bsp", **change))


@pytest.mark.parametrize("key", ["servers", "server_placement", "sharding", "server_device"])
def test_server_keys_are_refused_by_an_allreduce(key):
    value = {"servers": 2, "server_placement": "colocated", "sharding": "layer", "server_device": "cpu"}[key]
    cfg = job("data", "allreduce", **{f"communication.{key}": value})
    with pytest.raises(ConfigError, match=f"communication.{key} applies to communication.pattern: parameter_server"):
        load_config(cfg)


def test_asynchronous_modes_are_refused_by_an_allreduce_in_any_parallelism():
    cfg = copy.deepcopy(job("pipeline", "allreduce"))
    cfg["sync"] = {"mode": "ssp", "staleness": 1}
    with pytest.raises(ConfigError, match="sync.mode: ssp needs communication.pattern: parameter_server"):
        load_config(cfg)


@pytest.mark.parametrize(("parallel", "sync"), [("data", "allreduce"), ("pipeline", "allreduce"), ("hybrid", "allreduce"),
                                                ("data", "ps-bsp"), ("pipeline", "ps-bsp"), ("pipeline", "ps-asp")])
def test_bucket_size_and_overlap_change_every_job_they_meet(parallel, sync):
    """Gradient parts are buckets in every parallelism and pattern; overlap off releases them all at the end."""
    base = simulate(load_config(job(parallel, sync))).summary
    one_bucket = simulate(load_config(job(parallel, sync, **{"communication.bucket_size": "4GiB"}))).summary
    serial = simulate(load_config(job(parallel, sync, **{"communication.overlap": False}))).summary
    assert one_bucket["iteration_time_s"] != base["iteration_time_s"]
    assert serial["iteration_time_s"] > base["iteration_time_s"]
    if sync == "allreduce":
        assert one_bucket["buckets"] < base["buckets"]
