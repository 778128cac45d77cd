"""workload.precision: mixed | fp32 | tf32 — the device's peak and the bytes per value, by hand.

Mixed precision (the default) is what every other test and golden checks. At fp32 every activation and
working weight is 4 bytes (dropout masks stay 1 byte), the device runs at its fp32 peak (tf32: its TF32
tensor-core peak), and the model states are 4 + 4 + 8 bytes a parameter (no fp32 master copy). Every
expected number below is written out from those rules, not read back from the code.
"""

from __future__ import annotations

import pytest

from simulator import compute
from simulator.config import ConfigError, load_config
from simulator.devices import Device, get_device
from simulator.parallel.memory import layer_activation_bytes, model_state_bytes
from simulator.parallel.tensor import message_bytes
from simulator.run import simulate
from simulator.workloads import block_work, get_model, model_from_layers, with_attention, with_precision
from tests.simulator.test_engine_matrix import job

S, H, A = 2048, 2304, 24      # megatron_1.7b's shape


def test_catalog_peaks_are_the_datasheets():
    assert get_device("a100").at_precision("fp32").peak_flops == 19.5e12
    assert get_device("a100").at_precision("tf32").peak_flops == 156e12
    assert get_device("h100").at_precision("tf32").peak_flops == 494.5e12
    assert get_device("v100").at_precision("fp32").peak_flops == 15.7e12
    assert get_device("cpu").at_precision("fp32").peak_flops == get_device("cpu").peak_flops
    assert get_device("a100").at_precision("mixed") is get_device("a100")
    for name, precision in (("tpu_v4", "fp32"), ("v100", "tf32"), ("p100", "tf32")):
        with pytest.raises(ValueError, match=f"no {precision} peak"):
            get_device(name).at_precision(precision)


def test_a_block_at_fp32_moves_4_bytes_a_value_and_1_a_mask():
    fused = block_work(S, H, A, "fused", element_bytes=4)
    assert [w.bytes for w in fused] == [64.0 * S * H, 16.0 * S * H, 74.0 * S * H]   # 16e, 4e, 18e + 2
    assert all(w.weight_bytes == 4 for w in fused)
    scores = A * S * S
    unfused = block_work(S, H, A, "unfused", element_bytes=4)
    assert unfused[1].bytes == 16.0 * S * H + 8.0 * scores                # QK^T and AV: 4e·sh + 2e·scores
    assert (unfused[2].bytes, unfused[2].backward_bytes) == (17.0 * scores, 21.0 * scores)  # 4e + 1, 5e + 1
    assert block_work(S, H, A, "unfused") == block_work(S, H, A, "unfused", element_bytes=2)


def test_a_cnn_at_fp32_moves_twice_the_bytes_and_the_same_flops():
    m = get_model("resnet50")
    f = with_precision(m, "fp32")
    for a, b in zip(m.layers, f.layers, strict=True):
        assert (b.forward_flops, b.params) == (a.forward_flops, a.params)
        assert (b.activation_bytes, b.forward_bytes) == (2 * a.activation_bytes, 2 * a.forward_bytes)
        assert all(w.weight_bytes == 4 for w in b.work)
    assert with_precision(f, "mixed").layers == m.layers        # and back, exactly
    assert with_precision(m, "tf32").layers == f.layers         # tf32 stores fp32 values


def test_a_typed_layer_keeps_its_bytes_and_reads_4_byte_weights():
    m = model_from_layers("c", [{"name": "fc", "params": 1000, "forward_flops": 1e9, "activation_bytes": 500}])
    f = with_precision(m, "fp32", as_given=["fc"])
    assert f.layers[0].forward_bytes == m.layers[0].forward_bytes == 1000
    toy = Device("toy", "gpu", peak_flops=1e15, memory_bandwidth=1e12, memory_bytes=1e9, efficiency=0.5,
                 fp32_flops=1e14)
    # memory-bound either way: (batch · 1000 B + 1000 weights · 4 B) / (1e12 · 0.5), vs 1e9·8 / (1e14 · 0.5)
    assert compute.layer_time(f.layers[0], toy.at_precision("fp32"), 8) == pytest.approx(
        max(8e9 / 1e14, (8 * 1000 + 4000) / 1e12) / 0.5, rel=1e-15)
    assert compute.layer_time(m.layers[0], toy, 8) == pytest.approx(max(8e9 / 1e15, (8000 + 2000) / 1e12) / 0.5)


def test_memory_at_fp32_is_korthikantis_count_with_4_byte_values():
    m = with_attention(get_model("megatron_1.7b"), "unfused")
    f = with_precision(m, "fp32")
    block = next(la for la in f.layers if la.kind == "transformer")
    # T = 1: s·h·(16e + 2 + (2e + 1)·a·s/h) = s·h·(66 + 9·a·s/h); mixed: s·h·(34 + 5·a·s/h)
    assert layer_activation_bytes(block, f) == pytest.approx(S * H * (66 + 9 * A * S / H), rel=1e-15)
    assert layer_activation_bytes(next(la for la in m.layers if la.kind == "transformer"), m) == \
        pytest.approx(S * H * (34 + 5 * A * S / H), rel=1e-15)
    # T = 4, selective: (4e + 2) + 12e/T = 18 + 12; sequence parallel: (16e + 2)/T = 66/4
    assert layer_activation_bytes(block, f, 4, "selective") == pytest.approx(S * H * (18 + 48 / 4), rel=1e-15)
    assert layer_activation_bytes(block, f, 4, "selective", True) == pytest.approx(S * H * 66 / 4, rel=1e-15)
    assert layer_activation_bytes(block, f, 4, "full") == 4.0 * S * H
    # model states: 4 + 4 + 8 per parameter; ZeRO-1 shards the 8, ZeRO-2 the 4 + 8
    assert model_state_bytes(1e9, 0, 8, "fp32") == 16e9
    assert model_state_bytes(1e9, 1, 8, "fp32") == 8e9 + 1e9
    assert model_state_bytes(1e9, 2, 8, "fp32") == 4e9 + 1.5e9
    assert model_state_bytes(1e9, 1, 8) == 4e9 + 1.5e9          # mixed: 2 + 2, and 12 sharded
    assert message_bytes(f, 2) == 2 * 2 * S * H * 2 and message_bytes(m, 2) == 2 * S * H * 2


JOBS = [("data", "allreduce"), ("data", "ps-bsp"), ("data", "ps-ssp"), ("data", "ps-asp"), ("data", "ps-backup"),
        ("zero", "allreduce"),
        ("tensor", "allreduce"), ("tensor", "ps-bsp"), ("pipeline", "allreduce"), ("pipeline", "ps-asp"),
        ("hybrid", "allreduce")]


@pytest.mark.parametrize(("parallel", "sync"), JOBS, ids=[f"{p}-{s}" for p, s in JOBS])
@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_precision_moves_every_job(parallel, sync, precision):
    """Data, ZeRO, tensor, pipeline and hybrid parallelism; allreduce and parameter servers (BSP, SSP, ASP, backup):
    fp32 and tf32 are slower than mixed on an A100 (a lower peak, twice the bytes) in every one."""
    mixed = simulate(load_config(job(parallel, sync))).summary
    other = simulate(load_config(job(parallel, sync, **{"workload.precision": precision}))).summary
    assert other["compute_s"] > mixed["compute_s"]
    assert other["iteration_time_s"] > mixed["iteration_time_s"]
    if "memory_per_device_bytes" in mixed:
        assert other["memory_per_device_bytes"] > mixed["memory_per_device_bytes"]


def test_fp32_compute_is_the_fp32_roofline_end_to_end():
    """One GEMM layer, one device: the run's compute is the fp32 roofline of forward, backward and the step."""
    fc = {"name": "fc", "params": 10**6, "forward_flops": "4GFLOP", "activation_bytes": "10000B"}
    cfg = job("data", **{"cluster.topology": {"kind": "switch", "devices": 2, "link": {"bandwidth": "1GB/s"}},
                         "parallelism": {}, "workload.model": [fc],
                         "workload.batch_per_device": 16, "workload.precision": "fp32",
                         "cluster.device": {"name": "a100", "efficiency": 0.5}})
    s = simulate(load_config(cfg)).summary
    fwd = max(16 * 4e9 / 19.5e12, (16 * 2e4 + 10**6 * 4) / 2.039e12) / 0.5
    step = 10**6 * 16.0 / (2.039e12 * 0.5)
    assert s["compute_s"] == pytest.approx(3 * fwd + step, rel=1e-12)


def test_heterogeneity_trains_at_the_runs_precision():
    base = {"stragglers.heterogeneity": [{"device": "v100", "fraction": 0.25}]}
    mixed = simulate(load_config(job("data", **base))).summary
    fp32 = simulate(load_config(job("data", **base, **{"workload.precision": "fp32"}))).summary
    # the V100s at 15.7 of 125 TFLOP/s fall further behind the A100s at 19.5 of 312: a longer wait
    assert fp32["iteration_time_s"] > mixed["iteration_time_s"]


@pytest.mark.parametrize(("extra", "message"), [
    ({"cluster.device": "tpu_v4", "workload.precision": "fp32"},
     "cluster.device: tpu_v4 has no fp32 peak; give cluster.device.fp32_flops"),
    ({"cluster.device": "v100", "workload.precision": "tf32"}, "cluster.device: v100 has no tf32 peak"),
    ({"cluster.device": {"name": "a100", "fp32_flops": "20TFLOP/s"}},
     "cluster.device.fp32_flops: applies with workload.precision: fp32, and this run trains at mixed"),
    ({"cluster.device": {"name": "a100", "tf32_flops": "100TFLOP/s"}, "workload.precision": "fp32"},
     "cluster.device.tf32_flops: applies with workload.precision: tf32, and this run trains at fp32"),
    ({"stragglers.heterogeneity": [{"device": "v100", "fraction": 0.25}], "workload.precision": "tf32"},
     "stragglers.heterogeneity.0.device: v100 has no tf32 peak"),
    ({"workload.precision": "fp8"}, "workload.precision"),
    ({"communication.pattern": "parameter_server", "communication.servers": 2,
      "communication.server_device": {"name": "a100", "fp32_flops": "20TFLOP/s"}, "workload.precision": "fp32"},
     "communication.server_device.fp32_flops: "),
])
def test_refused_in_one_line(extra, message):
    with pytest.raises(ConfigError, match=message) as info:
        simulate(load_config(job("data", **extra)))
    assert "\n" not in str(info.value)


def test_a_device_given_its_fp32_peak_trains_at_it():
    given = simulate(load_config(job("data", **{"cluster.device": {"name": "tpu_v4", "fp32_flops": "50TFLOP/s"},
                                                "workload.precision": "fp32"}))).summary
    faster = simulate(load_config(job("data", **{"cluster.device": {"name": "tpu_v4", "fp32_flops": "100TFLOP/s"},
                                                 "workload.precision": "fp32"}))).summary
    assert faster["compute_s"] < given["compute_s"]
