"""Pipeline schedules and the pipeline engine against closed forms (GPipe, 1F1B, interleaved 1F1B)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from simulator import compute
from simulator.config import load_config
from simulator.devices import get_device
from simulator.parallel.schedules import build_schedule, check, gpipe, interleaved, one_f_one_b, peak_in_flight
from simulator.parallel.stages import balance
from simulator.run import simulate
from simulator.workloads import model_from_layers


def uniform(layers: int, *, pipeline: int, microbatches: int, schedule: str = "1f1b", chunks: int = 1,
            activation_bytes: float = 0.0, latency: str = "0us", iterations: int = 4) -> dict:
    """Identical layers on a zero-latency switch; with no activation bytes, transfers take no time."""
    return {
        "name": "uniform",
        "cluster": {"topology": {"kind": "switch", "devices": 16, "link": {"bandwidth": "100GB/s", "latency": latency}},
                    "device": "a100"},
        "workload": {"model": {"name": "uniform", "layers": [
            {"name": f"l{i}", "params": 1000, "forward_flops": 1e9, "activation_bytes": f"{activation_bytes}B"}
            for i in range(layers)]}, "batch_per_device": 4 * microbatches},
        "parallelism": {"data": 1, "pipeline": pipeline, "microbatches": microbatches, "schedule": schedule,
                        "chunks": chunks},
        "training": {"iterations": iterations, "warmup": 1},
    }


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize(("stages", "microbatches"), [(2, 1), (2, 4), (4, 4), (4, 8), (8, 16), (3, 7)])
def test_bubble_is_p_minus_1_over_m_plus_p_minus_1(schedule, stages, microbatches):
    s = simulate(load_config(uniform(2 * stages, pipeline=stages, microbatches=microbatches,
                                     schedule=schedule))).summary
    p, m = stages, microbatches
    assert s["pipeline_bubble_fraction"] == pytest.approx((p - 1) / (m + p - 1), rel=1e-9)


@pytest.mark.parametrize(("stages", "microbatches", "chunks"), [(2, 4, 2), (4, 8, 2), (4, 4, 2), (2, 6, 4), (4, 8, 3)])
def test_interleaving_divides_the_bubble_by_the_chunks(stages, microbatches, chunks):
    layers = stages * chunks * 2
    plain = simulate(load_config(uniform(layers, pipeline=stages, microbatches=microbatches))).summary
    inter = simulate(load_config(uniform(layers, pipeline=stages, microbatches=microbatches,
                                         schedule="interleaved", chunks=chunks))).summary
    # bubble time / busy time = f / (1 - f): (P-1)/M for 1F1B, (P-1)/(vM) interleaved
    ratio = lambda f: f / (1 - f)  # noqa: E731
    assert ratio(plain["pipeline_bubble_fraction"]) == pytest.approx(chunks * ratio(inter["pipeline_bubble_fraction"]),
                                                                     rel=1e-9)
    p, m = stages, microbatches
    assert inter["pipeline_bubble_fraction"] == pytest.approx((p - 1) / (chunks * m + p - 1), rel=1e-9)
    assert inter["iteration_time_s"] < plain["iteration_time_s"]


def test_uniform_pipeline_iteration_is_m_plus_p_minus_1_slots_plus_the_step():
    p, m = 4, 8
    cfg = load_config(uniform(8, pipeline=p, microbatches=m))
    model = model_from_layers("two", [{"name": f"l{i}", "params": 1000, "forward_flops": 1e9,
                                       "activation_bytes": 0.0} for i in range(2)])
    a100 = get_device("a100")
    slot = compute.forward_time(model, a100, 4) + float(compute.backward_times(model, a100, 4).sum())
    s = simulate(cfg).summary
    assert s["iteration_time_s"] == pytest.approx((m + p - 1) * slot + compute.step_time(model, a100), rel=1e-9)


def test_schedules_are_valid_and_1f1b_holds_fewer_activations_than_gpipe():
    for p, m in itertools.product((2, 3, 4, 8), (1, 2, 4, 5, 8, 16)):
        g, f = gpipe(p, m), one_f_one_b(p, m)
        check(g, p, m, 1)
        check(f, p, m, 1)
        for s in range(p):
            assert peak_in_flight(g[s]) == m
            assert peak_in_flight(f[s]) == min(p - s, m)
        if m > p:
            assert max(peak_in_flight(ops) for ops in f) < max(peak_in_flight(ops) for ops in g)
    for p, v, k in itertools.product((2, 4), (2, 3), (1, 2, 3)):
        check(interleaved(p, k * p, v), p, k * p, v)


def test_1f1b_peak_activation_memory_is_below_gpipe_in_the_simulation():
    base = uniform(8, pipeline=4, microbatches=8, activation_bytes=1e6)
    gp = simulate(load_config({**base, "parallelism": {**base["parallelism"], "schedule": "gpipe"}})).summary
    fb = simulate(load_config(base)).summary
    # model states are equal; activations: 8 microbatches in flight (GPipe) vs 4 (1F1B, stage 0)
    acts = 4 * 2 * 1e6  # samples per microbatch x layers per stage x bytes per sample
    assert gp["memory_per_device_bytes"] - fb["memory_per_device_bytes"] == pytest.approx((8 - 4) * acts)


def test_a_bad_schedule_is_caught():
    ops = list(one_f_one_b(2, 2))
    ops[1] = ops[1][1:] + ops[1][:1]  # stage 1 starts with a backward
    with pytest.raises(ValueError, match="backward of microbatch 0 chunk 0 before its forward"):
        check(tuple(ops), 2, 2, 1)
    with pytest.raises(ValueError, match="multiple of stages"):
        build_schedule("interleaved", 4, 6, 2)


@pytest.mark.parametrize("pattern", ["allreduce", "parameter_server"])
def test_single_device_reproduces_the_single_device_time(small_config, pattern):
    """D = T = P = 1 = roofline time, as plain data parallelism and as a one-stage pipeline."""
    extra = [] if pattern == "allreduce" else [
        "communication={pattern: parameter_server, server_placement: colocated, overlap: false}"]
    cfg = load_config(small_config, ["parallelism.data=1", *extra])
    nominal = compute.iteration_compute_time(cfg_model(), get_device("a100"), 32)
    plain = simulate(cfg).summary
    staged = simulate(load_config(small_config, ["parallelism.data=1", "parallelism.recompute=false",
                                                 "parallelism.schedule=gpipe"])).summary
    if pattern == "allreduce":
        assert plain["iteration_time_s"] == pytest.approx(nominal, rel=1e-12)
        assert plain["scaling_efficiency"] == pytest.approx(1.0, rel=1e-12)
    else:  # the colocated server applies the update instead of the device: 3 bytes moved per byte, not 16
        apply = compute.server_apply_time(cfg_model().gradient_bytes, get_device("a100"))
        optimizer = compute.step_time(cfg_model(), get_device("a100"))
        assert plain["iteration_time_s"] == pytest.approx(nominal - optimizer + apply, rel=1e-12)
    assert staged["iteration_time_s"] == pytest.approx(nominal, rel=1e-12)


def cfg_model():
    from simulator.workloads import get_model

    return get_model("resnet50")


def test_gradient_accumulation_is_m_microbatch_passes_plus_one_step(small_config):
    cfg = load_config(small_config, ["parallelism.data=1", "parallelism.microbatches=4"])
    model, a100 = cfg_model(), get_device("a100")
    micro = compute.forward_time(model, a100, 8) + float(compute.backward_times(model, a100, 8).sum())
    s = simulate(cfg).summary
    assert s["iteration_time_s"] == pytest.approx(4 * micro + compute.step_time(model, a100), rel=1e-12)


def test_transfers_between_stages_are_timed_on_the_topology():
    """One activation of 1 MB between two stages on a switch: 2 hops of 1 us + 1 MB / 10 GB/s."""
    base = uniform(2, pipeline=2, microbatches=1, activation_bytes=250_000, latency="1us")
    base["cluster"]["topology"]["link"]["bandwidth"] = "10GB/s"
    s = simulate(load_config(base)).summary
    free = simulate(load_config(uniform(2, pipeline=2, microbatches=1))).summary
    transfer = 2e-6 + 4 * 250_000 / 10e9
    # one microbatch: forward crosses once, the gradient comes back once, both on the critical path
    assert s["iteration_time_s"] - free["iteration_time_s"] == pytest.approx(2 * transfer, rel=1e-9)
    assert s["pipeline_bytes_per_iteration"] == 2 * 4 * 250_000


def test_balance_is_optimal_against_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(40):
        n, k = int(rng.integers(1, 9)), 0
        k = int(rng.integers(1, n + 1))
        costs = rng.uniform(0.1, 5.0, n).round(2)
        got = balance(costs, k)
        assert [i for r in got for i in r] == list(range(n)) and all(len(r) for r in got)
        best = min(max(costs[a:b].sum() for a, b in zip((0, *cuts), (*cuts, n), strict=True))
                   for cuts in itertools.combinations(range(1, n), k - 1))
        assert max(costs[list(r)].sum() for r in got) == pytest.approx(best)


def test_trace_has_a_track_per_device_with_forward_and_backward_microbatches(tmp_path):
    cfg = load_config(uniform(4, pipeline=4, microbatches=4, iterations=2))
    out = simulate(cfg).write(tmp_path / "run", plots=False)
    events = json.loads((out / "trace.json").read_text())["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert [names[d] for d in range(4)] == [f"device {d}: stage {d}, replica 0, tensor 0" for d in range(4)]
    spans = [e for e in events if e["ph"] == "X" and e["args"].get("iteration") == 0 and e["name"][0] in "FB"]
    for d in range(4):
        mine = sorted((e["ts"], e["name"]) for e in spans if e["tid"] == d)
        assert [n for _, n in mine] == [f"{op.kind}{op.microbatch}" for op in one_f_one_b(4, 4)[d]]
    assert (out / "stages.csv").read_text().count("\n") == 1 + 4


def test_a_stages_gradient_all_reduce_starts_as_its_last_backward_ends(tmp_path):
    """Hybrid: the last stage syncs its gradients while the first stage is still draining the pipeline."""
    raw = uniform(4, pipeline=2, microbatches=4, activation_bytes=1e5, latency="1us", iterations=2)
    raw["parallelism"]["data"] = 2
    result = simulate(load_config(raw))
    events = json.loads((result.write(tmp_path / "run", plots=False) / "trace.json").read_text())["traceEvents"]
    tracks = {e["args"]["name"]: e["tid"] for e in events if e["name"] == "thread_name"}
    spans = [e for e in events if e["ph"] == "X" and e["args"].get("iteration") == 0]

    def last_backward_end(device: int) -> float:
        return max(e["ts"] + e["dur"] for e in spans if e["tid"] == device and e["name"][0] == "B")

    def sync(stage: int) -> dict:
        return next(e for e in spans if e["tid"] == tracks[f"stage {stage} gradient sync"])

    # replica 0 runs stages 0, 1 on devices 0, 1; replica 1 on devices 2, 3
    assert sync(1)["ts"] == pytest.approx(max(last_backward_end(1), last_backward_end(3)))
    assert sync(1)["ts"] < last_backward_end(0)                          # overlapped with stage 0's drain
    assert sync(0)["ts"] == pytest.approx(max(last_backward_end(0), last_backward_end(2)))
    assert sync(1)["name"].startswith("allreduce") and sync(1)["dur"] > 0
