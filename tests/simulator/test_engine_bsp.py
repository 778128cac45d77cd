"""BSP data parallelism on tiny clusters, against hand-computable truth."""

from __future__ import annotations

import json

import pytest

from simulator import compute
from simulator.config import load_config
from simulator.devices import get_device
from simulator.run import simulate
from simulator.workloads import get_model


def ring_allreduce_closed_form(p: int, n: float, alpha: float, beta: float, gamma: float) -> float:
    """Thakur, Rabenseifner & Gropp (2005): 2(p-1)α + 2(p-1)/p·nβ + (p-1)/p·nγ."""
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n * beta + (p - 1) / p * n * gamma


def nominal_compute(batch: int = 32) -> float:
    model, device = get_model("resnet50"), get_device("a100")
    return compute.iteration_compute_time(model, device, batch)


def test_one_fused_bucket_iteration_is_compute_plus_one_allreduce(small_config):
    cfg = load_config(small_config, ["communication.overlap=false", "communication.bucket_size=null"])
    s = simulate(cfg).summary
    n = get_model("resnet50").parameters * 4
    # switch: a device-to-device path is two hops of 1 us; γ = 3 / memory bandwidth (read 2, write 1)
    allreduce = ring_allreduce_closed_form(4, n, 2e-6, 1 / 10e9, 3 / get_device("a100").memory_bandwidth)
    assert s["iteration_time_s"] == pytest.approx(nominal_compute() + allreduce, rel=1e-9)
    assert s["exposed_communication_s"] == pytest.approx(allreduce, rel=1e-9)
    assert s["communication_s"] == pytest.approx(allreduce, rel=1e-9)


def test_fusion_and_overlap_are_separate_knobs(small_config):
    """Same buckets: overlap off sends them after backward (exposed = their allreduces back to back); overlap on
    starts each as backward produces it (exposed = what is left after backward), hand-derived from the plan."""
    from simulator.engine import build_job

    off = build_job(load_config(small_config, ["communication.overlap=false"])).run()
    on = build_job(load_config(small_config)).run()
    parts, sync = on.plan.parts[0], on.plan.grad_sync[0][0]
    assert len(parts) == 5 and len(off.plan.parts[0]) == 5            # 25 MiB buckets either way
    seconds = [coll[0].seconds for coll in sync]
    n = get_model("resnet50").parameters * 4
    closed = [ring_allreduce_closed_form(4, p.bytes, 2e-6, 1 / 10e9, 3 / get_device("a100").memory_bandwidth)
              for p in parts]
    assert seconds == pytest.approx(closed, rel=1e-9) and sum(p.bytes for p in parts) == n
    forward = compute.forward_time(get_model("resnet50"), get_device("a100"), 32)
    produced, t = [], forward
    for p in parts:                                   # each bucket is produced when its layers' backward ends
        t += p.backward_s
        produced.append(t)
    backward_end, stream = produced[-1], 0.0
    for ready, c in zip(produced, seconds, strict=True):
        stream = max(stream, ready) + c
    s_on, s_off = on.result().summary, off.result().summary
    assert s_off["exposed_communication_s"] == pytest.approx(sum(seconds), rel=1e-9)
    assert s_on["exposed_communication_s"] == pytest.approx(stream - backward_end, rel=1e-9)
    overlapped = sum(seconds) - (stream - backward_end)
    assert overlapped > 0
    assert s_off["iteration_time_s"] - s_on["iteration_time_s"] == pytest.approx(overlapped, rel=1e-9)
    # one fused bucket is released at the end of backward either way: nothing to overlap, the same run
    one = [simulate(load_config(small_config, ["communication.bucket_size=null", f"communication.overlap={o}"]))
           .summary for o in ("true", "false")]
    assert one[0]["exposed_communication_s"] == one[1]["exposed_communication_s"]
    assert one[0]["iteration_time_s"] == one[1]["iteration_time_s"]


@pytest.mark.parametrize("bandwidth", ["1GB/s", "10GB/s", "300GB/s"])
def test_overlap_never_hurts_and_never_beats_compute(small_config, bandwidth):
    on = simulate(load_config(small_config, [f"cluster.topology.link.bandwidth={bandwidth}"])).summary
    off = simulate(load_config(small_config, [f"cluster.topology.link.bandwidth={bandwidth}",
                                              "communication.overlap=false"])).summary
    assert on["iteration_time_s"] <= off["iteration_time_s"] * (1 + 1e-12)
    assert on["iteration_time_s"] >= nominal_compute() * (1 - 1e-12)
    assert on["exposed_communication_s"] <= on["communication_s"] * (1 + 1e-12)


def test_bytes_are_conserved(small_config):
    """Bytes the network carried per iteration = ring's 2(p-1)·n over every bucket."""
    for p in (2, 3, 4):
        s = simulate(load_config(small_config, [f"parallelism.data={p}"])).summary
        assert s["bytes_sent_per_iteration"] == pytest.approx(2 * (p - 1) * s["gradient_bytes"], rel=1e-12)


def test_summary_contract_and_scaling_efficiency(small_config):
    s = simulate(load_config(small_config)).summary
    for key in ("name", "workers", "iterations", "iteration_time_s", "iteration_time_p50_s",
                "iteration_time_p99_s", "throughput_samples_per_s", "scaling_efficiency", "compute_s",
                "communication_s", "exposed_communication_s", "algorithm"):
        assert key in s
    assert "sim_wall_s" not in s
    assert s["workers"] == 4 and s["algorithm"] == "ring"
    assert s["throughput_samples_per_s"] == pytest.approx(4 * 32 / s["iteration_time_s"])
    assert s["scaling_efficiency"] == pytest.approx(nominal_compute() / s["iteration_time_s"])
    assert 0 < s["scaling_efficiency"] <= 1


def test_single_worker_has_perfect_efficiency(small_config):
    s = simulate(load_config(small_config, ["parallelism.data=1"])).summary
    assert s["communication_s"] == 0.0
    assert s["scaling_efficiency"] == pytest.approx(1.0, rel=1e-12)


def test_same_seed_same_bytes_and_stragglers_follow_the_seed(small_config, tmp_path):
    noisy = ["stragglers.distribution=lognormal", "stragglers.sigma=0.2"]
    a = simulate(load_config(small_config, noisy)).write(tmp_path / "a", plots=False)
    b = simulate(load_config(small_config, noisy)).write(tmp_path / "b", plots=False)
    c = simulate(load_config(small_config, [*noisy, "seed=8"])).write(tmp_path / "c", plots=False)
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()
    assert (a / "iterations.csv").read_bytes() == (b / "iterations.csv").read_bytes()
    assert (a / "summary.json").read_bytes() != (c / "summary.json").read_bytes()


def test_a_persistent_straggler_slows_every_bsp_iteration(small_config):
    base = simulate(load_config(small_config)).summary
    slow = simulate(load_config(small_config, ["stragglers.slow_fraction=0.25",
                                                "stragglers.slowdown=2.0"])).summary
    # BSP waits for the slowest: the iteration is at least the doubled compute
    assert slow["iteration_time_s"] >= 2 * nominal_compute()
    assert slow["iteration_time_s"] > base["iteration_time_s"]
    assert slow["wait_s"] > 0


def test_outputs_are_written(small_config, tmp_path):
    out = simulate(load_config(small_config)).write(tmp_path / "run")
    names = {p.name for p in out.iterdir()}
    assert {"summary.json", "iterations.csv", "config.resolved.yaml", "trace.json", "run_info.json",
            "plots"} <= names
    trace = json.loads((out / "trace.json").read_text())["traceEvents"]
    spans = [e for e in trace if e["ph"] == "X"]
    assert {e["tid"] for e in spans if e["name"] == "forward"} == {0, 1, 2, 3}
    assert any(e["name"].startswith("allreduce") and e["args"]["algorithm"] == "ring" for e in spans)
    rows = (out / "iterations.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 6
    assert (out / "plots" / "iterations.png").stat().st_size > 1000


def test_auto_algorithm_is_reported_and_is_the_fastest_candidate(small_config):
    s = simulate(load_config(small_config, ["communication.algorithm=auto"])).summary
    cands, pruned = s["auto_candidates_s"], s["auto_pruned_lower_bound_s"]
    assert s["algorithm"] in cands
    assert cands[s["algorithm"]] == min(cands.values())
    assert all(bound > cands[s["algorithm"]] for bound in pruned.values())   # pruned: slower than the choice
    # the plan takes the tuner's prices of the chosen schedules: the same as configuring that algorithm
    fixed = simulate(load_config(small_config, [f"communication.algorithm={s['algorithm']}"])).summary
    assert (fixed["iteration_time_s"], fixed["communication_s"]) == (s["iteration_time_s"], s["communication_s"])
    ring = simulate(load_config(small_config)).summary
    assert s["iteration_time_s"] <= ring["iteration_time_s"] * (1 + 1e-12)
