"""ZeRO traffic and memory (Rajbhandari et al. 2020) and the fit check, through the simulator."""

from __future__ import annotations

import pytest

from simulator.config import ConfigError, load_config
from simulator.parallel.memory import model_state_bytes
from simulator.run import simulate
from simulator.workloads import get_model


@pytest.mark.parametrize(("zero", "gigabytes"), [(0, 120), (1, 31.4), (2, 16.6), (3, 1.88)])
def test_model_state_memory_matches_the_zero_paper(zero, gigabytes):
    """ZeRO, Fig. 1: Ψ = 7.5 B parameters, N_d = 64, mixed-precision Adam (K = 12)."""
    assert model_state_bytes(7.5e9, zero, 64) / 1e9 == pytest.approx(gigabytes, abs=0.051 if zero < 3 else 0.006)


def dp(zero: int, devices: int = 8, **workload) -> dict:
    return {
        "name": f"zero{zero}",
        "cluster": {"topology": {"kind": "switch", "devices": devices, "link": {"bandwidth": "25GB/s",
                                                                                  "latency": "2us"}},
                    "device": "a100"},
        "workload": {"model": "bert_large", "batch_per_device": 8, **workload},
        "communication": {"compression": "bf16"},
        "parallelism": {"zero": zero},
        "training": {"iterations": 3, "warmup": 1},
    }


def test_zero3_moves_one_and_a_half_times_plain_data_parallel_traffic():
    """Plain DP all-reduces the gradients (2Ψ); ZeRO-3 reduce-scatters them and all-gathers the
    parameters twice (3Ψ). Plain DP runs on the bucketed data-parallel engine, ZeRO on the
    pipeline engine: two engines, one ratio."""
    plain = simulate(load_config(dp(0))).summary
    zero1 = simulate(load_config(dp(1))).summary
    zero3 = simulate(load_config(dp(3))).summary
    assert "data_parallel" not in plain  # the data-parallel engine, unchanged
    assert zero3["data_parallel_bytes_per_iteration"] == pytest.approx(1.5 * plain["bytes_sent_per_iteration"],
                                                                       rel=1e-9)
    assert zero1["data_parallel_bytes_per_iteration"] == pytest.approx(plain["bytes_sent_per_iteration"], rel=1e-9)
    assert zero3["iteration_time_s"] > zero1["iteration_time_s"]


def test_zero_stages_save_memory_in_the_paper_proportions():
    psi = get_model("bert_large").parameters
    need = {z: simulate(load_config(dp(z))).summary["memory_per_device_bytes"] for z in (1, 2, 3)}
    acts = need[3] - model_state_bytes(psi, 3, 8)
    for z in (1, 2, 3):
        assert need[z] - acts == pytest.approx(model_state_bytes(psi, z, 8), rel=1e-9)
    assert need[1] > need[2] > need[3]


def test_a_model_that_does_not_fit_names_the_device_the_need_and_the_capacity():
    raw = {
        "cluster": {"topology": {"kind": "hierarchical", "nodes": 4, "devices_per_node": 8,
                                 "intra": {"bandwidth": "300GB/s"},
                                 "inter": {"kind": "switch", "bandwidth": "100Gbps"}},
                    "device": "a100"},
        "workload": {"model": "gpt3_175b", "batch_per_device": 8},
        "parallelism": {"tensor": 8, "pipeline": 4, "microbatches": 8},
    }
    with pytest.raises(ConfigError) as err:
        simulate(load_config(raw))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("parallelism: gpt3_175b (1f1b, 8 microbatches, ZeRO-0) needs ")
    assert "on device 0 (stage 0, 4 microbatches in flight)" in msg and "but a100 has 80.0 GB" in msg
    # ZeRO-1 across the one replica saves nothing; 32 stages of 3 blocks fit
    with pytest.raises(ConfigError, match="needs"):
        simulate(load_config(raw, ["parallelism.zero=1"]))


def test_recomputation_turns_a_model_that_does_not_fit_into_one_that_does():
    raw = dp(0, devices=4, batch_per_device=64)
    raw["workload"] |= {"model": "gpt2_xl", "attention": "unfused"}   # it keeps its a·s² scores: 5as/h
    raw["parallelism"] = {"pipeline": 4, "microbatches": 16, "schedule": "gpipe"}  # 16 in flight
    with pytest.raises(ConfigError, match="try parallelism.recompute"):
        simulate(load_config(raw))
    s = simulate(load_config(raw, ["parallelism.recompute=true"])).summary
    assert s["memory_per_device_bytes"] <= s["memory_capacity_bytes"]
