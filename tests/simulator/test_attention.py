"""The attention core fused (FlashAttention-style) or unfused (pre-2022 Megatron-LM): time and memory, by hand.

An unfused core moves 13 bytes per score element (a·s² of them per sequence) in forward and 19 in
backward (`simulator.workloads.block_work` derives both from the kernels' reads and writes) and keeps
5 of them for backward (Korthikanti et al. 2022); a fused one keeps a 4-byte log-sum-exp per query and
head. Every count below is written out by hand, not read back from the code.
"""

from __future__ import annotations

import pytest

from simulator import compute
from simulator.config import load_config
from simulator.devices import Device, get_device
from simulator.network import Network
from simulator.parallel.memory import layer_activation_bytes
from simulator.parallel.plan import build_plan
from simulator.parallel.tensor import split_layer
from simulator.resolve import resolve_hardware
from simulator.run import simulate
from simulator.workloads import _block, get_model, with_attention
from tests.simulator.test_engine_matrix import job

S, H, A = 64, 32, 4                     # a small block: 4 heads of 8
SCORES = A * S * S                      # score elements per sequence
TOY = Device("toy", "gpu", peak_flops=1e12, memory_bandwidth=1e11, memory_bytes=1e9,
             efficiency={"gemm": 0.8, "attention": 0.5, "elementwise": 0.9})


def core_bytes(layer, pass_: str) -> float:
    """Activation bytes the core's pieces move per sequence in one pass, as compute.py's rule reads them."""
    core = [w for w in layer.work if w.core]
    if pass_ == "forward":
        return sum(w.bytes for w in core)
    return sum(w.backward_bytes if w.backward_bytes is not None else 2 * w.bytes for w in core)


def test_an_unfused_core_moves_13_bytes_a_score_forward_and_19_backward_a_fused_one_none():
    fused, unfused = _block("b", S, H, A), _block("b", S, H, A, "unfused")
    # Q, K, V in and the context out, 2 bytes each: 8·s·h either way (16·s·h in backward)
    assert core_bytes(fused, "forward") == 8 * S * H
    assert core_bytes(fused, "backward") == 16 * S * H
    # forward: QKᵀ writes 2, softmax reads 2 writes 2, dropout reads 2 writes 2 + a 1-byte mask, AV reads 2
    assert core_bytes(unfused, "forward") == 8 * S * H + (2 + 4 + 5 + 2) * SCORES
    # backward: dV reads P̃ 2, dP̃ written 2; dropout reads 2 + mask 1, writes 2; softmax reads P 2, dP 2,
    # writes dS 2; dQ and dK each read dS 2
    assert core_bytes(unfused, "backward") == 16 * S * H + (2 + 2 + 5 + 6 + 2 + 2) * SCORES
    # the same FLOPs (4·s²·h: QKᵀ and AV), the same GEMMs and elementwise work outside the core
    assert fused.forward_flops == unfused.forward_flops == S * (24 * H * H + 4 * S * H)
    assert [w for w in fused.work if not w.core] == [w for w in unfused.work if not w.core]
    assert unfused.memory_bytes == fused.memory_bytes + 13 * SCORES


def test_the_cores_time_on_the_roofline_by_hand():
    b = 2
    fused, unfused = _block("b", S, H, A), _block("b", S, H, A, "unfused")
    flops = b * 4 * S * S * H
    # fused: one attention kernel; backward twice the FLOPs and bytes
    fwd = max(flops / 1e12, b * 8 * S * H / 1e11) / 0.5
    assert compute.layer_time(fused, TOY, b, core=True) == pytest.approx(fwd, rel=1e-12)
    assert compute.layer_time(fused, TOY, b, pass_="backward", core=True) == pytest.approx(2 * fwd, rel=1e-12)
    # unfused: QKᵀ and AV as GEMMs (8sh + 4 bytes a score), softmax and dropout at the elementwise share
    gemm = max(flops / 1e12, b * (8 * S * H + 4 * SCORES) / 1e11) / 0.8
    fwd = gemm + b * 9 * SCORES / (1e11 * 0.9)
    bwd = 2 * gemm + b * 11 * SCORES / (1e11 * 0.9)
    assert compute.layer_time(unfused, TOY, b, core=True) == pytest.approx(fwd, rel=1e-12)
    assert compute.layer_time(unfused, TOY, b, pass_="backward", core=True) == pytest.approx(bwd, rel=1e-12)
    rest = compute.layer_time(fused, TOY, b) - compute.layer_time(fused, TOY, b, core=True)
    assert compute.layer_time(unfused, TOY, b) == pytest.approx(rest + fwd, rel=1e-12)


def test_tensor_parallelism_splits_all_of_the_core_by_heads_with_or_without_sequence_parallelism():
    t, unfused = 4, _block("b", S, H, A, "unfused")
    for sp in (False, True):
        part = split_layer(unfused, t, sp)
        for whole, share in zip(unfused.work, part.work, strict=True):
            split = whole.core or whole.kind != "elementwise" or sp   # LayerNorms, dropouts, GeLU: only with SP
            ways = t if split else 1
            assert (share.flops, share.bytes, share.params) == (whole.flops / ways, whole.bytes / ways,
                                                                whole.params / ways)
            assert share.backward_bytes == (None if whole.backward_bytes is None else whole.backward_bytes / ways)
        assert core_bytes(part, "forward") == (8 * S * H + 13 * SCORES) / t
        assert core_bytes(part, "backward") == (16 * S * H + 19 * SCORES) / t


def blocks(n: int, t: int = 1, recompute: str = "none", attention: str | None = None, sp: bool = False) -> dict:
    workload = {"model": {"name": "mine", "layers": [{"name": f"b{i}", "kind": "transformer_block", "hidden": H,
                                                      "heads": A, "seq_len": S} for i in range(n)]},
                "batch_per_device": 4}
    if attention is not None:
        workload["attention"] = attention
    return {"name": "attention",
            "cluster": {"topology": {"kind": "switch", "devices": 4, "link": {"bandwidth": "10GB/s", "latency": "2us"}},
                        "device": "a100"},
            "workload": workload,
            "parallelism": {"data": 1, "tensor": t, "microbatches": 2, "recompute": recompute,
                            "sequence_parallel": sp},
            "training": {"iterations": 2, "warmup": 0}}


def plan_of(raw: dict):
    cfg = load_config(raw)
    hw = resolve_hardware(cfg)
    return build_plan(cfg, hw, Network(hw.graph, cfg.network.model, gamma=hw.gamma))


@pytest.mark.parametrize("attention", ["fused", "unfused"])
@pytest.mark.parametrize("t", [1, 2])
def test_recomputation_pays_the_cores_traffic_again_in_backward(attention, t):
    """Selective recomputation re-runs the core's forward (an unfused one's 13 bytes a score included);
    full re-runs the whole block's forward. Per microbatch of 2 sequences, 3 blocks, on an A100."""
    n, b, a100 = 3, 2, get_device("a100")
    block = split_layer(_block("b", S, H, A, attention), t)
    none, sel, full = (plan_of(blocks(n, t, r, attention)) for r in ("none", "selective", "full"))
    flops = b * 4 * S * S * H / t
    if attention == "fused":
        core = max(flops / a100.peak_flops, b * 8 * S * H / t / a100.memory_bandwidth) / a100.efficiency.attention
    else:
        core = (max(flops / a100.peak_flops, b * (8 * S * H + 4 * SCORES) / t / a100.memory_bandwidth)
                / a100.efficiency.gemm + b * 9 * SCORES / t / (a100.memory_bandwidth * a100.efficiency.elementwise))
    assert sel.compute_b[0] - none.compute_b[0] == pytest.approx(n * core, rel=1e-9)
    assert full.compute_b[0] - none.compute_b[0] == pytest.approx(n * compute.layer_time(block, a100, b), rel=1e-9)
    assert none.compute_f[0] == pytest.approx(n * compute.layer_time(block, a100, b), rel=1e-9)


@pytest.mark.parametrize("t", [1, 2, 4])
@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
def test_memory_keeps_the_scores_only_when_unfused(t, recompute):
    """Unfused: Korthikanti's 5·a·s² bytes per block and sequence (over T); fused: a 4-byte log-sum-exp per
    query and head, 4·a·s. Selective recomputation keeps neither (the core is rebuilt, once, in backward);
    full keeps the block's input and rebuilds one block, scores and all."""
    n, b = 3, 2
    fused, unfused = plan_of(blocks(n, t, recompute)), plan_of(blocks(n, t, recompute, "unfused"))
    per_block = {"none": n, "selective": 1, "full": 1}[recompute]   # kept by every block, or rebuilt by one
    extra = b * per_block * (5 * SCORES - 4 * A * S) / t
    assert unfused.memory[0].activations - fused.memory[0].activations == pytest.approx(extra, rel=1e-9)
    model = with_attention(get_model("bert_large"), "unfused")
    assert layer_activation_bytes(model.layers[1], model, t) == pytest.approx(
        512 * 1024 * (10 + 24 / t) + 5 * 16 * 512 * 512 / t, rel=1e-12)


def test_a_users_blocks_and_the_presets_follow_the_key_alike():
    mine = blocks(2, attention="unfused")
    mine["workload"]["model"]["layers"] = [{"name": f"b{i}", "kind": "transformer_block", "hidden": 1024,
                                            "heads": 16, "seq_len": 512} for i in range(2)]
    ours = resolve_hardware(load_config(mine)).model
    preset = with_attention(get_model("bert_large"), "unfused")
    assert ours.attention == preset.attention == "unfused"
    assert ours.layers[0].work == preset.layers[1].work
    assert with_attention(preset, "fused").layers[1].work == get_model("bert_large").layers[1].work


# Main before the attention core was a choice (da5f477): iteration_time_s and compute_s of these jobs.
BEFORE = [
    (("data", "allreduce", {}), 0.04334598452860216, 0.0406867879448649),
    (("tensor", "allreduce", {"parallelism.recompute": "selective", "parallelism.sequence_parallel": True}),
     0.031098648583507846, 0.020894030805252962),
    (("hybrid", "allreduce", {"parallelism.recompute": "full"}), 0.03475843271974225, 0.01553149709885518),
    (("pipeline", "ps-bsp", {"parallelism.recompute": "selective"}), 0.032189195003309655, 0.019445598447522812),
    (("zero", "allreduce", {}), 0.04470680349490979, 0.03837359667117249),
]


@pytest.mark.parametrize(("case", "iteration", "compute_s"), BEFORE, ids=[c[0][0] for c in BEFORE])
def test_fused_the_default_leaves_every_time_as_it_was(case, iteration, compute_s):
    parallel, sync, extra = case
    for given in ({}, {"workload.attention": "fused"}):
        s = simulate(load_config(job(parallel, sync, **extra, **given))).summary
        assert (s["iteration_time_s"], s["compute_s"]) == (iteration, compute_s)   # bit for bit


PARALLELISMS = ["data", "tensor", "pipeline", "hybrid", "zero"]
PATTERNS = ["allreduce", "ps-bsp", "ps-ssp", "ps-asp"]
ALL = [(p, s) for p in PARALLELISMS for s in PATTERNS if not (p == "zero" and s != "allreduce")]


@pytest.mark.parametrize(("parallel", "sync"), ALL, ids=[f"{p}-{s}" for p, s in ALL])
def test_unfused_costs_time_and_memory_in_every_job(parallel, sync):
    fused = simulate(load_config(job(parallel, sync))).summary
    unfused = simulate(load_config(job(parallel, sync, **{"workload.attention": "unfused"}))).summary
    assert unfused["compute_s"] > fused["compute_s"]
    if sync == "allreduce" or parallel in ("data", "tensor"):
        assert unfused["iteration_time_s"] > fused["iteration_time_s"]
    else:   # a pipeline against servers: a longer compute also reshuffles pushes and pulls, either way
        assert unfused["iteration_time_s"] != fused["iteration_time_s"]
    if "memory_per_device_bytes" in fused:
        assert unfused["memory_per_device_bytes"] > fused["memory_per_device_bytes"]


# The key's refusals (a model without transformer blocks; `efficiency.attention` with an unfused core) are
# cases of tests/simulator/test_sequence_parallel.py::test_keys_that_cannot_apply_are_refused_in_one_line.


def test_a_cnn_runs_as_before_without_the_key():
    s = simulate(load_config(job("data", **{"workload.model": "resnet50"}))).summary
    assert s["iteration_time_s"] > 0
