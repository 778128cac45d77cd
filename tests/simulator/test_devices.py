"""Device catalog: datasheet figures, lookup errors, validation."""

from __future__ import annotations

import dataclasses
import doctest

import pytest

from simulator import devices
from simulator.devices import CATALOG, Device, get_device


def test_catalog_has_the_documented_devices():
    assert {"cpu", "v100", "a100", "h100", "tpu_v4"} <= set(CATALOG)
    for key, device in CATALOG.items():
        assert device.name == key
        assert device.kind in devices.KINDS


@pytest.mark.parametrize(
    ("name", "peak", "bandwidth", "memory"),
    [
        # NVIDIA V100 SXM2 32GB datasheet: 125 TFLOPS tensor fp16, 900 GB/s, 32 GB.
        ("v100", 125e12, 900e9, 32e9),
        # NVIDIA A100 80GB SXM datasheet: 312 TFLOPS bf16 dense, 2,039 GB/s, 80 GB.
        ("a100", 312e12, 2.039e12, 80e9),
        # NVIDIA H100 SXM datasheet: 989 TFLOPS bf16 dense, 3.35 TB/s, 80 GB.
        ("h100", 989e12, 3.35e12, 80e9),
        # Google TPU v4: 275 TFLOPS bf16, 1.2 TB/s, 32 GiB HBM.
        ("tpu_v4", 275e12, 1.2e12, 32 * 2**30),
    ],
)
def test_accelerators_match_their_datasheets(name, peak, bandwidth, memory):
    device = get_device(name)
    assert device.peak_flops == pytest.approx(peak, rel=1e-9)
    assert device.memory_bandwidth == pytest.approx(bandwidth, rel=1e-9)
    assert device.memory_bytes == pytest.approx(memory, rel=1e-9)


def test_cpu_is_a_two_socket_xeon_8358():
    # Intel ARK, Xeon Platinum 8358: 32 cores, 2.6 GHz base, two AVX-512 FMA units
    # (32 fp32 FLOP/cycle/core), 8 channels of DDR4-3200 (25.6 GB/s each) per socket.
    cpu = get_device("cpu")
    assert cpu.kind == "cpu"
    assert cpu.peak_flops == pytest.approx(2 * 32 * 2.6e9 * 32)
    assert cpu.memory_bandwidth == pytest.approx(2 * 8 * 25.6e9)


def test_newer_gpus_are_faster_and_wider():
    v100, a100, h100 = (get_device(n) for n in ("v100", "a100", "h100"))
    assert v100.peak_flops < a100.peak_flops < h100.peak_flops
    assert v100.memory_bandwidth < a100.memory_bandwidth < h100.memory_bandwidth


def test_default_efficiencies_are_single_kernel_figures():
    # GEMM shares are achieved-matmul figures (Bekman's MAMF table: A100 271.2/312, H100 794.5/989),
    # not end-to-end MFU (Megatron's 44-52 % already holds bubbles and communication).
    a100, h100 = get_device("a100").efficiency, get_device("h100").efficiency
    assert a100.gemm == pytest.approx(271.2 / 312, abs=0.005)
    assert h100.gemm == pytest.approx(794.5 / 989, abs=0.005)
    assert get_device("a100").sustained_flops == pytest.approx(312e12 * a100.gemm)
    for device in CATALOG.values():
        eff = device.efficiency
        for kind in devices.WORK_KINDS:
            assert 0.25 <= eff[kind] <= 0.9, (device.name, kind)
        if device.kind == "gpu":   # attention kernels trail dense GEMMs (FlashAttention-2/3 papers)
            assert eff.attention < eff.gemm, device.name


def test_a_scalar_efficiency_means_every_kind():
    device = Device("toy", "gpu", 1e12, 1e11, 1e9, efficiency=0.7)
    assert [device.efficiency[k] for k in devices.WORK_KINDS] == [0.7] * 4
    mixed = Device("toy", "gpu", 1e12, 1e11, 1e9, efficiency={"gemm": 0.9, "attention": 0.6})
    assert (mixed.efficiency.gemm, mixed.efficiency.attention, mixed.efficiency.elementwise) == (0.9, 0.6, 0.5)
    with pytest.raises(KeyError, match="unknown work kind"):
        device.efficiency["convolution"]


def test_lookup_is_case_insensitive_and_returns_the_catalog_entry():
    assert get_device(" A100 ") is CATALOG["a100"]


def test_unknown_device_raises_keyerror_listing_known_names():
    with pytest.raises(KeyError) as info:
        get_device("a1000")
    message = str(info.value)
    assert "a1000" in message
    for name in CATALOG:
        assert name in message


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "fpga"}, "kind"),
        ({"peak_flops": 0.0}, "peak_flops"),
        ({"memory_bandwidth": -1.0}, "memory_bandwidth"),
        ({"memory_bytes": 0.0}, "memory_bytes"),
        ({"efficiency": 0.0}, "efficiency"),
        ({"efficiency": 1.5}, "efficiency"),
    ],
)
def test_invalid_device_fields_are_rejected_by_name(changes, field):
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(CATALOG["a100"], **changes)


def test_default_efficiency_and_immutability():
    device = Device("toy", "gpu", 1e12, 1e11, 1e9)
    assert device.efficiency == devices.Efficiency(0.5, 0.5, 0.5, 0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        device.efficiency = 0.9  # type: ignore[misc]


def test_docstring_examples_run():
    assert doctest.testmod(devices).failed == 0
