"""3x3 stride-1 convolutions direct or by Winograd F(m×m, 3×3), and the P100 catalog entry, by hand.

Lavin & Gray (CVPR 2016): the output in m×m tiles, each from an α×α input tile (α = m + 2), α² products per
tile and channel pair instead of 9·m²: 2.25× fewer multiplies for F(2×2, 3×3), 4× for F(4×4, 3×3) when the
tiles divide the output. Every count below is written out by hand, not read back from the code.
"""

from __future__ import annotations

import pytest

from simulator import compute
from simulator.config import ConfigError, load_config
from simulator.devices import get_device
from simulator.run import simulate
from simulator.workloads import ACT_BYTES, get_model, with_convolution, with_precision
from tests.simulator.test_engine_matrix import job

CIN = COUT = 64
HW = 56                                   # ResNet-50's layer1.*.conv2: 64 -> 64 channels, 56x56, stride 1, pad 1
DIRECT = 2 * 9 * CIN * COUT * HW * HW     # FLOPs per sample of the direct convolution


def conv2(model, name="layer1.0.conv2"):
    return next(la for la in model.layers if la.name == name)


def test_a_3x3_convolutions_winograd_flops_and_bytes_by_hand():
    m = get_model("resnet50")
    direct = conv2(m)
    assert direct.forward_flops == DIRECT
    f2, f4 = conv2(with_convolution(m, "winograd_2x2")), conv2(with_convolution(m, "winograd_4x4"))
    # F(2x2, 3x3): 28 x 28 tiles of 4 x 4 inputs; F(4x4, 3x3): 14 x 14 tiles of 6 x 6
    assert [w.kind for w in f2.work] == ["gemm", "elementwise"]
    products2, transforms2 = f2.work
    assert products2.flops == 2 * 16 * CIN * COUT * 28 * 28 == DIRECT / 2.25
    assert f4.work[0].flops == 2 * 36 * CIN * COUT * 14 * 14 == DIRECT / 4
    # the products read the transformed input (cin·α²·t) and write the transformed output (cout·α²·t)
    assert products2.bytes == (CIN * 16 * 784 + COUT * 16 * 784) * ACT_BYTES
    # the transforms read the input, write U, read M, write the output; their additions are not counted
    assert transforms2.flops == 0
    assert transforms2.bytes == (CIN * HW * HW + CIN * 16 * 784 + COUT * 16 * 784 + COUT * HW * HW) * ACT_BYTES
    assert f4.work[1].bytes == (CIN * HW * HW + (CIN + COUT) * 36 * 196 + COUT * HW * HW) * ACT_BYTES
    assert f2.forward_flops == products2.flops and f2.memory_bytes == products2.bytes + transforms2.bytes
    # the weights are read by the products; params, output and matrices are the convolution's
    assert products2.params == direct.params == 9 * CIN * COUT
    assert (f2.params, f2.activation_bytes, f2.matrices) == (direct.params, direct.activation_bytes, direct.matrices)


def test_tiles_that_do_not_divide_the_output_round_up():
    # VGG-16's conv5_1: 512 -> 512 channels at 14 x 14; 4x4 tiles: ceil(14/4)^2 = 16 tiles of 6 x 6
    f4 = conv2(with_convolution(get_model("vgg16"), "winograd_4x4"), "conv5_1")
    assert f4.work[0].flops == 2 * 36 * 512 * 512 * 16            # 576 products a channel pair for 196 outputs
    assert 2 * 9 * 512 * 512 * 14 * 14 / f4.work[0].flops == pytest.approx(196 * 9 / 576)   # 3.06x fewer, not 4


def test_only_3x3_stride_1_convolutions_change():
    m, w = get_model("resnet50"), with_convolution(get_model("resnet50"), "winograd_4x4")
    changed = [a.name for a, b in zip(m.layers, w.layers, strict=True) if a != b]
    # each stage's 3x3 convolutions, except the strided first one of stages 2-4 (ResNet v1.5)
    assert changed == [la.name for la in m.layers if la.name.endswith(".conv2")
                       and la.name not in ("layer2.0.conv2", "layer3.0.conv2", "layer4.0.conv2")]
    assert len(changed) == 3 + 3 + 5 + 2
    assert with_convolution(w, "direct").layers == m.layers      # and back, exactly


def test_the_roofline_times_winograd_as_products_plus_transforms():
    p100, b = get_device("p100").at_precision("fp32"), 64
    f4 = conv2(with_convolution(with_precision(get_model("resnet50"), "fp32"), "winograd_4x4"))
    products, transforms = f4.work
    fwd = (max(b * products.flops / 10.6e12, (b * products.bytes + 9 * CIN * COUT * 4) / 732e9)
           / (9.50 / 10.6)
           + b * transforms.bytes / 732e9 / (443_837.7e6 / 732e9))
    assert compute.layer_time(f4, p100, b) == pytest.approx(fwd, rel=1e-12)
    assert compute.layer_time(f4, p100, b, pass_="backward") == pytest.approx(2 * fwd, rel=1e-12)


def test_the_p100_entry_is_its_cited_numbers():
    p100 = get_device("p100")
    # Tesla P100 SXM2 16GB datasheet: 21.2 TFLOPS fp16, 10.6 TFLOPS fp32, no TF32, 732 GB/s HBM2, 16 GB
    assert (p100.kind, p100.peak_flops, p100.memory_bandwidth, p100.memory_bytes) == ("gpu", 21.2e12, 732e9, 16e9)
    assert (p100.fp32_flops, p100.tf32_flops) == (10.6e12, None)
    # gemm: 9.50 TFLOPS FP32 8192² matmul (torch-performance-test-data#180); elementwise: bandwidthTest
    # device-to-device 443,837.7 MB/s on a P100 16GB (gearshifft#82); attention and embedding: 0.5, assumed
    assert p100.efficiency.gemm == 9.50 / 10.6
    assert p100.efficiency.elementwise == pytest.approx(443_837.7 / 732_000, rel=1e-15)
    assert (p100.efficiency.attention, p100.efficiency.embedding) == (0.5, 0.5)


CNN_JOBS = [("data", "allreduce"), ("data", "ps-bsp"), ("data", "ps-ssp"), ("data", "ps-asp"), ("zero", "allreduce"),
            ("pipeline", "allreduce"), ("pipeline", "ps-bsp"), ("pipeline", "ps-asp")]


@pytest.mark.parametrize(("parallel", "sync"), CNN_JOBS, ids=[f"{p}-{s}" for p, s in CNN_JOBS])
def test_winograd_moves_every_job_a_cnn_can_run(parallel, sync):
    """Data parallel, ZeRO, parameter servers (BSP, SSP, ASP), data x pipeline: the key reaches them all (on a
    P100 Winograd is faster; tensor parallelism does not split CNNs and is refused for them)."""
    base = {"workload.model": "resnet50", "cluster.device": "p100"}
    direct = simulate(load_config(job(parallel, sync, **base))).summary
    winograd = simulate(load_config(job(parallel, sync, **base, **{"workload.convolution": "winograd_4x4"}))).summary
    assert winograd["compute_s"] < direct["compute_s"]
    assert winograd["iteration_time_s"] != direct["iteration_time_s"]


def test_direct_the_default_leaves_a_cnn_as_it_was():
    raw = job("data", **{"workload.model": "resnet50"})
    given = job("data", **{"workload.model": "resnet50", "workload.convolution": "direct"})
    assert simulate(load_config(raw)).summary == simulate(load_config(given)).summary


@pytest.mark.parametrize(("overrides", "message"), [
    (["workload.convolution=winograd_4x4"],
     "workload.convolution: winograd_4x4 sets how 3x3 stride-1 convolutions run, and bert_large has none"),
    (["workload.convolution=direct"], "workload.convolution: direct .* bert_large has none"),
    (["workload.model=[{name: fc, params: 10, forward_flops: 1e9}]", "workload.convolution=winograd_2x2"],
     "workload.convolution: .* custom has none"),
    (["workload.model=resnet50", "workload.convolution=fft"], "workload.convolution: "),
])
def test_the_key_is_refused_in_one_line_where_it_cannot_apply(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        simulate(load_config(job("data"), overrides))
    assert "\n" not in str(info.value)
