"""Roofline timing: closed forms on toy layers, and ResNet-50 against published throughput."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator import compute
from simulator.compute import (
    OPTIMIZER_BYTES_PER_PARAM,
    backward_times,
    forward_time,
    iteration_compute_time,
    layer_time,
    step_time,
)
from simulator.devices import Device, Efficiency, get_device
from simulator.workloads import ACT_BYTES, Layer, Model, Work, block_work, get_model

# 100 TFLOP/s peak at 40 % -> 40 TFLOP/s sustained; 1 TB/s: ridge at 40 FLOP/byte.
TOY = Device(
    "toy", "gpu", peak_flops=100e12, memory_bandwidth=1e12, memory_bytes=16e9, efficiency=0.4
)
GEMM = Layer("gemm", params=1000, forward_flops=1e10, activation_bytes=1e3)  # compute-bound
RELU = Layer("relu", params=0, forward_flops=1e3, activation_bytes=1e6, memory_bytes=3e6)


def test_compute_bound_layer_takes_flops_over_sustained_peak():
    batch = 8
    assert layer_time(GEMM, TOY, batch) == pytest.approx(batch * 1e10 / (100e12 * 0.4), rel=1e-12)


def test_memory_bound_layer_takes_bytes_over_its_share_of_bandwidth():
    batch = 8   # a scalar efficiency is every kind's share of the roofline, bandwidth included
    assert layer_time(RELU, TOY, batch) == pytest.approx(batch * 3e6 / (1e12 * 0.4), rel=1e-12)
    # weights are read once per batch at ACT_BYTES each; memory_bytes=0 derives 2 x output
    layer = Layer("w", params=10**6, forward_flops=0.0, activation_bytes=5e5)
    expected = (batch * 2 * 5e5 + 10**6 * ACT_BYTES) / (1e12 * 0.4)
    assert layer_time(layer, TOY, batch) == pytest.approx(expected, rel=1e-12)


def test_efficiency_one_is_the_plain_roofline():
    ideal = Device("ideal", "gpu", peak_flops=100e12, memory_bandwidth=1e12, memory_bytes=16e9, efficiency=1.0)
    assert layer_time(GEMM, ideal, 8) == pytest.approx(8 * 1e10 / 100e12, rel=1e-15)
    assert layer_time(RELU, ideal, 8) == pytest.approx(8 * 3e6 / 1e12, rel=1e-15)


KINDS = Device("kinds", "gpu", peak_flops=100e12, memory_bandwidth=1e12, memory_bytes=16e9,
               efficiency=Efficiency(gemm=0.8, attention=0.5, elementwise=0.9, embedding=0.25))


@pytest.mark.parametrize(("kind", "share"), [("gemm", 0.8), ("attention", 0.5), ("elementwise", 0.9),
                                             ("embedding", 0.25)])
def test_each_kind_runs_at_its_own_share_of_the_roofline(kind, share):
    compute_bound = Layer("c", 0, 1e10, 1.0, 1.0, kind=kind)
    memory_bound = Layer("m", 0, 1.0, 1.0, 1e8, kind=kind)
    assert layer_time(compute_bound, KINDS, 4) == pytest.approx(4 * 1e10 / (100e12 * share), rel=1e-12)
    assert layer_time(memory_bound, KINDS, 4) == pytest.approx(4 * 1e8 / (1e12 * share), rel=1e-12)


def test_a_transformer_block_is_the_sum_of_its_gemm_attention_and_elementwise_parts():
    s, h, heads, b = 512, 1024, 16, 4
    block = get_model("bert_large").layers[1]
    assert block.kind == "transformer"
    # by hand: GEMMs 24 s h^2 FLOPs (compute-bound), attention 4 s^2 h FLOPs over 8 s h bytes (intensity
    # s/2 = 256 > the ridge of 100), elementwise 38 s h bytes; weights 2 bytes each, GEMMs 12h^2 + 9h, LN 4h
    gemm = b * 24 * s * h * h / (100e12 * 0.8)
    attention = b * 4 * s * s * h / (100e12 * 0.5)
    elementwise = (b * 38 * s * h + 4 * h * ACT_BYTES) / (1e12 * 0.9)
    assert b * 32 * s * h + (12 * h * h + 9 * h) * ACT_BYTES < b * 24 * s * h * h / 100   # GEMMs compute-bound
    assert layer_time(block, KINDS, b) == pytest.approx(gemm + attention + elementwise, rel=1e-12)
    assert [w.kind for w in block_work(s, h)] == ["gemm", "attention", "elementwise"]
    assert sum(w.flops for w in block.work) == block.forward_flops == s * (24 * h * h + 4 * s * h)
    assert heads  # the block's time does not depend on the head count (its memory does: parallel.memory)


def test_work_must_add_up_to_the_layer():
    with pytest.raises(ValueError, match="adds up"):
        Layer("x", 0, 10.0, 1.0, 4.0, work=(Work("gemm", 5.0, 4.0),))
    with pytest.raises(ValueError, match="kind"):
        Layer("x", 0, 10.0, 1.0, kind="convolution")


@pytest.mark.parametrize("layer", [GEMM, RELU])
def test_backward_costs_twice_forward(layer):
    forward = layer_time(layer, TOY, 4)
    assert layer_time(layer, TOY, 4, pass_="backward") == pytest.approx(2 * forward, rel=1e-12)


@given(
    flops=st.floats(0, 1e12),
    act=st.floats(0, 1e9),
    params=st.integers(0, 10**9),
    batch=st.integers(1, 1024),
)
def test_layer_time_is_the_larger_roofline_bound(flops, act, params, batch):
    layer = Layer("x", params, flops, act)
    compute_s = batch * flops / TOY.sustained_flops
    memory_s = (batch * layer.forward_bytes + params * ACT_BYTES) / (TOY.memory_bandwidth * 0.4)
    assert layer_time(layer, TOY, batch) == pytest.approx(max(compute_s, memory_s), rel=1e-12)


def test_model_times_add_up_in_layer_order():
    model = Model("two", (GEMM, RELU))
    fwd = [layer_time(GEMM, TOY, 2), layer_time(RELU, TOY, 2)]
    assert forward_time(model, TOY, 2) == pytest.approx(sum(fwd), rel=1e-12)
    bwd = backward_times(model, TOY, 2)
    assert isinstance(bwd, np.ndarray)
    np.testing.assert_allclose(bwd, 2 * np.array(fwd), rtol=1e-12)


def test_step_time_streams_every_parameter():
    model = Model("two", (GEMM, RELU))
    assert step_time(model, TOY) == pytest.approx(1000 * OPTIMIZER_BYTES_PER_PARAM / (1e12 * 0.4))
    assert step_time(model, TOY, bytes_per_param=28) == pytest.approx(1000 * 28 / (1e12 * 0.4))
    assert step_time(model, KINDS) == pytest.approx(1000 * OPTIMIZER_BYTES_PER_PARAM / (1e12 * 0.9))  # elementwise


def test_iteration_is_forward_plus_backward_plus_step():
    model, device = get_model("bert_large"), get_device("a100")
    expected = (
        forward_time(model, device, 4)
        + backward_times(model, device, 4).sum()
        + step_time(model, device)
    )
    assert iteration_compute_time(model, device, 4) == pytest.approx(expected, rel=1e-12)


def test_resnet50_a100_batch32_is_within_published_throughput():
    # NVIDIA DeepLearningExamples / MLPerf Training: one A100 trains ResNet-50 v1.5 with
    # mixed precision at roughly 1,000-2,800 img/s (the top of the range at large batch
    # with DALI; small batches lose to launch overhead). The roofline has no launch
    # overhead, so it should land in the band and nearer its top.
    t = iteration_compute_time(get_model("resnet50"), get_device("a100"), 32)
    assert 1000 <= 32 / t <= 2800
    assert 32 / t >= 1500


def test_resnet50_is_held_back_by_memory_bound_layers():
    # At 312 TFLOP/s x 0.5 the FLOPs alone would allow ~6,300 img/s; measured throughput
    # is far lower because BatchNorm/ReLU/residual adds are bandwidth-bound, which the
    # roofline must capture (more than 1.5x the FLOP-only time).
    model, device = get_model("resnet50"), get_device("a100")
    flop_only = 3 * 32 * model.forward_flops / device.sustained_flops
    assert iteration_compute_time(model, device, 32) > 1.5 * flop_only


def test_large_transformers_are_gemm_bound():
    # Forward + backward of GPT-3: the GEMMs at the GEMM rate and the attention core at the attention
    # rate are all but the whole time (elementwise work is under 2 %); the optimizer step, streaming
    # 175 B parameters, is memory-bound at the elementwise share of the bandwidth.
    model, device = get_model("gpt3_175b"), get_device("a100")
    eff = device.efficiency
    flop_only = 3 * sum(la.work_of("gemm") / eff.gemm + la.work_of("attention") / eff.attention
                        for la in model.layers) / device.peak_flops
    passes = forward_time(model, device, 1) + backward_times(model, device, 1).sum()
    assert flop_only < passes < 1.02 * flop_only
    assert step_time(model, device) == pytest.approx(model.parameters * 16 / (2.039e12 * eff.elementwise))


def test_faster_devices_give_faster_iterations():
    model = get_model("resnet50")
    times = [
        iteration_compute_time(model, get_device(n), 32) for n in ("cpu", "v100", "a100", "h100")
    ]
    assert times == sorted(times, reverse=True)
    assert iteration_compute_time(model, get_device("a100"), 64) > times[2]


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"pass_": "sideways"}, "pass_"), ({"batch": 0}, "batch")]
)
def test_bad_arguments_are_rejected(kwargs, message):
    args = {"batch": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        layer_time(GEMM, TOY, args.pop("batch"), **args)


def test_docstring_examples_run():
    assert doctest.testmod(compute).failed == 0
