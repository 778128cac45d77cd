"""Megatron-style tensor parallelism: message sizes, volume (Narayanan et al. 2021), time, compute split."""

from __future__ import annotations

import pytest

from simulator.config import ConfigError, load_config
from simulator.devices import get_device
from simulator.network import Network
from simulator.parallel.plan import build_plan
from simulator.resolve import resolve_hardware
from simulator.run import simulate
from simulator.workloads import get_model


def bert(tensor: int, *, pipeline: int = 1, microbatches: int = 2, batch: int = 8, data: int = 1,
         bandwidth: str = "100GB/s", latency: str = "1us") -> dict:
    return {
        "name": "bert-tp",
        "cluster": {"topology": {"kind": "switch", "devices": 16, "link": {"bandwidth": bandwidth, "latency": latency}},
                    "device": "a100"},
        "workload": {"model": "bert_large", "batch_per_device": batch},
        "parallelism": {"data": data, "tensor": tensor, "pipeline": pipeline, "microbatches": microbatches},
        "training": {"iterations": 3, "warmup": 1},
    }


def plan_of(raw: dict):
    cfg = load_config(raw)
    hw = resolve_hardware(cfg)
    return build_plan(cfg, hw, Network(hw.graph, cfg.network.model, gamma=hw.gamma)), hw


@pytest.mark.parametrize("tensor", [2, 4, 8, 16])
@pytest.mark.parametrize("microbatch", [1, 4])
def test_volume_per_layer_per_microbatch_is_megatrons(tensor, microbatch):
    """Per device, per transformer layer and microbatch: 8·b·s·h·(T−1)/T bytes in each pass (fp16).

    Narayanan et al. 2021 count 8bsh(t−1)/t *elements* for forward + backward; in fp16 bytes that
    is twice as much, i.e. 8bsh(t−1)/t bytes per pass. Both are checked.
    """
    plan, hw = plan_of(bert(tensor, microbatches=2, batch=2 * microbatch))
    b, s, h = microbatch, 512, 1024
    assert plan.tensor_bytes_per_block_pass == pytest.approx(8 * b * s * h * (tensor - 1) / tensor, rel=1e-12)
    # the whole model is one stage: 24 blocks × 4 all-reduces + 1 for the embedding, all T ranks
    per_block_both_passes = plan.tensor_bytes[0] * 96 / 97 / tensor / 24
    fp16_elements = per_block_both_passes / 2
    assert fp16_elements == pytest.approx(8 * b * s * h * (tensor - 1) / tensor, rel=1e-12)


def test_tensor_traffic_of_a_whole_iteration():
    """BERT-large: 24 blocks × (2 + 2) all-reduces + 1 for the vocabulary-parallel embedding, per microbatch."""
    t, m, b, d = 4, 2, 4, 2
    s = simulate(load_config(bert(t, microbatches=m, batch=m * b, data=d))).summary
    per_device_per_allreduce = 2 * (t - 1) / t * (b * 512 * 1024 * 2)
    expected = d * m * t * (24 * 4 + 1) * per_device_per_allreduce
    assert s["tensor_parallel_bytes_per_iteration"] == pytest.approx(expected, rel=1e-12)


def test_tensor_all_reduce_time_is_the_ring_closed_form_on_a_switch():
    t, b = 4, 2
    plan, hw = plan_of(bert(t, microbatches=1, batch=b, bandwidth="10GB/s"))
    n = b * 512 * 1024 * 2
    alpha, beta, gamma = 2e-6, 1 / 10e9, 3 / get_device("a100").memory_bandwidth
    ring = 2 * (t - 1) * alpha + 2 * (t - 1) / t * n * beta + (t - 1) / t * n * gamma
    # one stage holds the embedding (1 forward all-reduce) and 24 blocks (2 forward, 2 backward)
    assert plan.tensor_f[0, 0] == pytest.approx((1 + 24 * 2) * ring, rel=1e-9)
    assert plan.tensor_b[0, 0] == pytest.approx(24 * 2 * ring, rel=1e-9)


def _roofline(flops: float, moved: float, share: float) -> float:
    a100 = get_device("a100")
    return max(flops / a100.peak_flops, moved / a100.memory_bandwidth) / share


def _block_forward(b: int, tensor: int, split_elementwise: bool) -> float:
    """BERT-large block forward on an A100 by hand: GEMMs and attention split T ways; elementwise T ways
    only with sequence parallelism (Korthikanti et al. 2022, §4.2.2)."""
    s, h, eff = 512, 1024, get_device("a100").efficiency
    e = tensor if split_elementwise else 1
    gemm = _roofline(b * 24 * s * h * h / tensor, b * 32 * s * h / tensor + 2 * (12 * h * h + 9 * h) / tensor,
                     eff.gemm)
    attention = _roofline(b * 4 * s * s * h / tensor, b * 8 * s * h / tensor, eff.attention)
    elementwise = _roofline(0.0, b * 38 * s * h / e + 2 * 4 * h / e, eff.elementwise)
    return gemm + attention + elementwise


@pytest.mark.parametrize("tensor", [2, 4, 8])
@pytest.mark.parametrize("sp", [False, True])
def test_compute_per_block_splits_gemm_and_attention_and_elementwise_only_with_sequence_parallelism(tensor, sp):
    raw = bert(tensor)
    raw["parallelism"]["sequence_parallel"] = sp
    split, _ = plan_of(raw)
    one, _ = plan_of(bert(1))
    b = 4                                                   # batch 8 in 2 microbatches
    block = split.forward_layers[0][1]                      # layer 0 is the embedding
    assert block == pytest.approx(_block_forward(b, tensor, sp), rel=1e-9)
    assert one.forward_layers[0][1] == pytest.approx(_block_forward(b, 1, False), rel=1e-9)
    if sp:   # every piece split: the whole pass divides by T (the embedding splits too)
        assert split.compute_f[0] == pytest.approx(one.compute_f[0] / tensor, rel=1e-9)
        assert split.compute_b[0] == pytest.approx(one.compute_b[0] / tensor, rel=1e-9)
    else:    # the replicated elementwise work keeps it above 1/T
        assert split.compute_f[0] > 1.05 * one.compute_f[0] / tensor
    assert split.memory[0].params == pytest.approx(get_model("bert_large").parameters / tensor, rel=1e-6)


def test_recomputation_adds_a_forward_and_its_all_reduces_to_backward():
    raw = bert(4)
    plain, _ = plan_of(raw)
    raw["parallelism"]["recompute"] = True
    again, _ = plan_of(raw)
    blocks = 24 * plain.tensor_f[0, 0] / (1 + 24 * 2) * 2       # the blocks' forward all-reduces
    assert again.tensor_b[0, 0] == pytest.approx(plain.tensor_b[0, 0] + blocks, rel=1e-9)
    assert again.compute_b[0] > plain.compute_b[0]
    assert again.memory[0].activations < plain.memory[0].activations


@pytest.mark.parametrize(("override", "message"), [
    (["parallelism.tensor=3"], "parallelism.tensor: 3 must divide bert_large's 16 attention heads"),
    (["workload.model=resnet50", "parallelism.tensor=2"], "resnet50 has none"),
])
def test_impossible_tensor_splits_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        simulate(load_config(bert(1), override))
