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
    WEIGHT_BYTES,
    backward_times,
    forward_time,
    iteration_compute_time,
    layer_time,
    step_time,
)
from simulator.devices import Device, get_device
from simulator.workloads import Layer, Model, get_model

# 100 TFLOP/s peak at 40 % -> 40 TFLOP/s sustained; 1 TB/s: ridge at 40 FLOP/byte.
TOY = Device(
    "toy", "gpu", peak_flops=100e12, memory_bandwidth=1e12, memory_bytes=16e9, efficiency=0.4
)
GEMM = Layer("gemm", params=1000, forward_flops=1e10, activation_bytes=1e3)  # compute-bound
RELU = Layer("relu", params=0, forward_flops=1e3, activation_bytes=1e6, memory_bytes=3e6)


def test_compute_bound_layer_takes_flops_over_sustained_peak():
    batch = 8
    assert layer_time(GEMM, TOY, batch) == pytest.approx(batch * 1e10 / (100e12 * 0.4), rel=1e-12)


def test_memory_bound_layer_takes_bytes_over_bandwidth():
    batch = 8
    assert layer_time(RELU, TOY, batch) == pytest.approx(batch * 3e6 / 1e12, rel=1e-12)
    # weights are read once per batch at WEIGHT_BYTES each; memory_bytes=0 derives 2 x output
    layer = Layer("w", params=10**6, forward_flops=0.0, activation_bytes=5e5)
    expected = (batch * 2 * 5e5 + 10**6 * WEIGHT_BYTES) / 1e12
    assert layer_time(layer, TOY, batch) == pytest.approx(expected, rel=1e-12)


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
    memory_s = (batch * layer.forward_bytes + params * WEIGHT_BYTES) / TOY.memory_bandwidth
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
    assert step_time(model, TOY) == pytest.approx(1000 * OPTIMIZER_BYTES_PER_PARAM / 1e12)
    assert step_time(model, TOY, bytes_per_param=28) == pytest.approx(1000 * 28 / 1e12)


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


def test_large_transformers_are_compute_bound():
    # Forward + backward of GPT-3 run at the sustained FLOP rate (the optimizer step,
    # streaming 175 B parameters, is memory-bound and excluded here).
    model, device = get_model("gpt3_175b"), get_device("a100")
    flop_only = 3 * model.forward_flops / device.sustained_flops
    passes = forward_time(model, device, 1) + backward_times(model, device, 1).sum()
    assert passes == pytest.approx(flop_only, rel=0.01)
    assert step_time(model, device) == pytest.approx(model.parameters * 16 / 2.039e12)


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
