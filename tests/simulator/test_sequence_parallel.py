"""Sequence parallelism and selective recomputation (Korthikanti et al. 2022), per-kind efficiency in every job.

Memory is checked against the paper's Table 2 exactly; time against hand-derived closed forms on a
switch (a reduce-scatter + all-gather ring carries the all-reduce's bytes); and every knob must move
the result in every parallelism, pattern and sync mode it can meet, or be refused in one line.
"""

from __future__ import annotations

import pytest

from simulator.config import ConfigError, load_config
from simulator.devices import get_device
from simulator.network import Network
from simulator.parallel.memory import layer_activation_bytes
from simulator.parallel.plan import build_plan
from simulator.resolve import resolve_hardware
from simulator.run import simulate
from simulator.workloads import get_model, with_attention
from tests.simulator.test_engine_matrix import job

S, H, A, L = 512, 1024, 16, 24          # BERT-large


def table2(t: int, sp: bool, recompute: str, attention: str = "unfused") -> float:
    """Korthikanti et al. 2022, Table 2: activation bytes per layer for one sequence (b = 1). Their
    attention core is unfused (5·a·s² bytes of scores kept); a fused one keeps 4 bytes (an fp32 log-sum-exp)
    per query and head instead: 4·a·s."""
    if recompute == "full":
        return 2 * S * H
    core = 0 if recompute == "selective" else (5 * A * S / (H * t) if attention == "unfused" else 4 * A / (H * t))
    if sp:
        return S * H * (34 / t + core)
    return S * H * (10 + 24 / t + core)


@pytest.mark.parametrize("t", [1, 2, 4, 8])
@pytest.mark.parametrize("sp", [False, True])
@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
@pytest.mark.parametrize("attention", ["unfused", "fused"])
def test_a_block_keeps_what_table_2_says(t, sp, recompute, attention):
    if sp and t == 1:
        return
    model = with_attention(get_model("bert_large"), attention)
    block = model.layers[1]
    assert layer_activation_bytes(block, model, t, recompute, sp) == pytest.approx(table2(t, sp, recompute, attention),
                                                                                 rel=1e-12)
    if t == 1 and recompute == "none":   # the paper's no-parallelism row: sbh(34 + 5as/h); fused: sbh·34 + 4as
        kept = S * H * (34 + 5 * A * S / H) if attention == "unfused" else S * H * 34 + 4 * A * S
        assert layer_activation_bytes(block, model) == pytest.approx(kept, rel=1e-12)


def bert(t: int, sp: bool = False, recompute: str = "none", bandwidth: str = "10GB/s",
         attention: str = "fused") -> dict:
    return {
        "name": "sp",
        "cluster": {"topology": {"kind": "switch", "devices": 8, "link": {"bandwidth": bandwidth, "latency": "2us"}},
                    "device": "a100"},
        "workload": {"model": "bert_large", "batch_per_device": 4, **({"attention": attention} if attention != "fused"
                                                                         else {})},
        "parallelism": {"data": 1, "tensor": t, "microbatches": 2, "sequence_parallel": sp, "recompute": recompute},
        "training": {"iterations": 3, "warmup": 1},
    }


def plan_of(raw: dict):
    cfg = load_config(raw)
    hw = resolve_hardware(cfg)
    return build_plan(cfg, hw, Network(hw.graph, cfg.network.model, gamma=hw.gamma,
                                       launch_latency=cfg.communication.launch_latency))


@pytest.mark.parametrize("t", [2, 4])
@pytest.mark.parametrize("sp", [False, True])
@pytest.mark.parametrize("recompute", ["none", "selective"])
@pytest.mark.parametrize("attention", ["unfused", "fused"])
def test_the_plan_holds_table_2_for_every_block(t, sp, recompute, attention):
    b = 2                                            # batch 4 in 2 microbatches; one stage, one in flight
    plan, base = plan_of(bert(t, sp, recompute, attention=attention)), plan_of(bert(t, attention=attention))
    assert plan.memory[0].in_flight == base.memory[0].in_flight == 1
    core = 5 * A * S * S / t if attention == "unfused" else 4 * A * S / t
    working = core if recompute == "selective" else 0.0   # the attention core, rebuilt once
    expected = b * L * (table2(t, sp, recompute, attention) - table2(t, False, "none", attention)) + b * working
    assert plan.memory[0].activations - base.memory[0].activations == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("t", [2, 4])
def test_sequence_parallel_collectives_are_a_reduce_scatter_and_an_all_gather_of_the_same_bytes(t):
    """On a switch: RS = (t-1)α + (t-1)/t·nβ + (t-1)/t·nγ, AG = (t-1)α + (t-1)/t·nβ: together the ring all-reduce."""
    plain, sp = plan_of(bert(t)), plan_of(bert(t, sp=True))
    # a microbatch of 2 sequences in fp16; α: two 2 µs hops through the switch
    n, alpha, beta, gamma = 2 * S * H * 2, 4e-6, 1 / 10e9, 3 / get_device("a100").memory_bandwidth
    rs = (t - 1) * alpha + (t - 1) / t * n * beta + (t - 1) / t * n * gamma
    ag = (t - 1) * alpha + (t - 1) / t * n * beta
    blocks_f = 1 + L * 2                              # the embedding's all-reduce and 2 per block
    assert sp.tensor_f[0, 0] == pytest.approx(blocks_f * (rs + ag), rel=1e-9)
    assert sp.tensor_f[0, 0] == pytest.approx(plain.tensor_f[0, 0], rel=1e-9)
    assert sp.tensor_bytes[0] == pytest.approx(plain.tensor_bytes[0], rel=1e-12)


def test_sequence_parallel_splits_the_elementwise_work_and_launches_twice_as_many_collectives():
    plain, sp = plan_of(bert(4)), plan_of(bert(4, sp=True))
    assert sp.compute_f[0] < plain.compute_f[0] and sp.compute_b[0] < plain.compute_b[0]
    raw = bert(4) | {"communication": {"launch_latency": "10us"}}
    raw_sp = bert(4, sp=True) | {"communication": {"launch_latency": "10us"}}
    extra = plan_of(raw_sp).tensor_f[0, 0] - plan_of(raw).tensor_f[0, 0]
    assert extra == pytest.approx((1 + L * 2) * 10e-6, rel=1e-9)   # each all-reduce is now two collectives


def test_selective_recomputation_reruns_only_the_attention_core():
    from simulator import compute
    from simulator.parallel.tensor import split_layer

    t, b = 2, 2
    plain, sel, full = plan_of(bert(t)), plan_of(bert(t, recompute="selective")), plan_of(bert(t, recompute="full"))
    block = split_layer(get_model("bert_large").layers[1], t)
    attention = sum(compute.work_time(w, get_device("a100"), b) for w in block.work if w.kind == "attention")
    assert sel.compute_b[0] == pytest.approx(plain.compute_b[0] + L * attention, rel=1e-9)
    assert sel.tensor_b[0, 0] == pytest.approx(plain.tensor_b[0, 0], rel=1e-12)   # no all-reduce in the core
    assert plain.compute_b[0] < sel.compute_b[0] < full.compute_b[0]
    assert full.memory[0].activations < sel.memory[0].activations < plain.memory[0].activations


PARALLELISMS = ["data", "tensor", "pipeline", "hybrid", "zero"]
PATTERNS = ["allreduce", "ps-bsp", "ps-ssp", "ps-asp"]
ALL = [(p, s) for p in PARALLELISMS for s in PATTERNS if not (p == "zero" and s != "allreduce")]


@pytest.mark.parametrize(("parallel", "sync"), ALL, ids=[f"{p}-{s}" for p, s in ALL])
def test_selective_recomputation_costs_time_in_every_job(parallel, sync):
    base = simulate(load_config(job(parallel, sync, **{"parallelism.recompute": "full"}))).summary
    sel = simulate(load_config(job(parallel, sync, **{"parallelism.recompute": "selective"}))).summary
    none = simulate(load_config(job(parallel, sync))).summary
    assert sel["recompute"] == "selective"
    assert none["compute_s"] < sel["compute_s"] < base["compute_s"]
    if sync == "allreduce" or parallel in ("data", "tensor"):
        assert none["iteration_time_s"] < sel["iteration_time_s"] < base["iteration_time_s"]
    else:   # a pipeline against servers: a longer backward also reshuffles pushes and pulls, either way
        assert sel["iteration_time_s"] != none["iteration_time_s"]
    assert sel["memory_per_device_bytes"] < none.get("memory_per_device_bytes", float("inf"))


TENSOR = [(p, s) for p in ("tensor", "hybrid") for s in PATTERNS]


@pytest.mark.parametrize(("parallel", "sync"), TENSOR, ids=[f"{p}-{s}" for p, s in TENSOR])
def test_sequence_parallelism_saves_time_and_memory_in_every_tensor_parallel_job(parallel, sync):
    plain = simulate(load_config(job(parallel, sync))).summary
    sp = simulate(load_config(job(parallel, sync, **{"parallelism.sequence_parallel": True}))).summary
    assert sp["sequence_parallel"] is True and plain["sequence_parallel"] is False
    assert sp["iteration_time_s"] < plain["iteration_time_s"]
    assert sp["memory_per_device_bytes"] < plain["memory_per_device_bytes"]


KINDS = [(p, s) for p in ("data", "tensor", "pipeline", "hybrid") for s in PATTERNS]


@pytest.mark.parametrize("kind", ["gemm", "attention", "elementwise", "embedding"])
@pytest.mark.parametrize(("parallel", "sync"), KINDS, ids=[f"{p}-{s}" for p, s in KINDS])
def test_each_kinds_efficiency_moves_every_job(parallel, sync, kind):
    base = simulate(load_config(job(parallel, sync))).summary
    slow = simulate(load_config(job(parallel, sync, **{"cluster.device": {"name": "a100",
                                                                          "efficiency": {kind: 0.1}}}))).summary
    assert slow["compute_s"] > base["compute_s"]
    if sync == "allreduce":
        assert slow["iteration_time_s"] > base["iteration_time_s"]
    else:   # against servers a slower layer can also ease their queues: the time changes, either way
        assert slow["iteration_time_s"] != base["iteration_time_s"]


@pytest.mark.parametrize(("overrides", "message"), [
    (["parallelism.sequence_parallel=true"], "parallelism.sequence_parallel: .*needs tensor > 1"),
    (["workload.model=resnet50", "parallelism.recompute=selective"],
     "parallelism.recompute: selective recomputation re-runs the attention core of transformer blocks, and resnet50"),
    (["workload.model=resnet50", "parallelism.recompute=full"], "parallelism.recompute: full .* resnet50 has none"),
    (["workload.model=resnet50", "cluster.device={name: a100, efficiency: {attention: 0.5}}"],
     "cluster.device.efficiency.attention: resnet50 has no attention work"),
    (["workload.model=resnet50", "stragglers.heterogeneity=[{device: {name: v100, efficiency: {embedding: 0.5}}, "
      "fraction: 0.5}]"], "stragglers.heterogeneity.0.device.efficiency.embedding: resnet50 has no embedding"),
    (["parallelism.recompute=partial"], "parallelism.recompute: expected 'none', 'selective' or 'full'"),
    (["cluster.device={name: a100, efficiency: {gemm: 1.5}}"], "cluster.device.efficiency.gemm: "),
    (["cluster.device={name: a100, efficiency: {convolution: 0.5}}"], "cluster.device.efficiency.convolution: "),
    (["workload.model=resnet50", "workload.attention=unfused"],
     "workload.attention: unfused sets how transformer blocks run their attention core, and resnet50 has none"),
    (["workload.model=resnet50", "workload.attention=fused"], "workload.attention: fused .* resnet50 has none"),
    (["workload.model=[{name: qk, kind: attention, params: 0, forward_flops: 1e9}]", "workload.attention=unfused"],
     "workload.attention: .* custom has none"),
    (["workload.attention=unfused", "cluster.device={name: a100, efficiency: {attention: 0.5}}"],
     r"cluster.device.efficiency.attention: bert_large has no attention work \(workload.attention: unfused runs"),
    (["workload.attention=flash"], "workload.attention: "),
])
def test_keys_that_cannot_apply_are_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as info:
        simulate(load_config(job("data"), overrides))
    assert "\n" not in str(info.value)


def test_server_device_efficiency_is_refused():
    raw = job("data", "ps-bsp", **{"communication.server_device": {"name": "a100", "efficiency": 0.5}})
    with pytest.raises(ConfigError, match="communication.server_device.efficiency"):
        simulate(load_config(raw))


def test_recompute_true_and_false_keep_their_meaning():
    assert load_config(job("tensor", **{"parallelism.recompute": True})).parallelism.recompute == "full"
    assert load_config(job("tensor", **{"parallelism.recompute": False})).parallelism.recompute == "none"


def custom_blocks(n: int = 4) -> dict:
    return {"name": "mine", "layers": [{"name": f"b{i}", "kind": "transformer_block", "hidden": H, "heads": A,
                                        "seq_len": S} for i in range(n)]}


@pytest.mark.parametrize(("t", "sp", "recompute"), [(1, False, "none"), (4, False, "selective"), (4, True, "full"),
                                                    (2, True, "selective")])
def test_a_users_transformer_blocks_split_and_recompute_like_the_presets(t, sp, recompute):
    mine = bert(t, sp, recompute)
    mine["workload"]["model"] = custom_blocks()
    ours, preset = plan_of(mine), plan_of(bert(t, sp, recompute))
    assert ours.forward_layers[0][0] == pytest.approx(preset.forward_layers[0][1], rel=1e-12)   # block 0 vs 1
    assert ours.compute_b[0] / 4 == pytest.approx((preset.compute_b[0] - _embedding_b(preset)) / L, rel=1e-9)
    assert ours.tensor_bytes_per_block_pass == preset.tensor_bytes_per_block_pass
    block_bytes = 2 * layer_activation_bytes(get_model("bert_large").layers[1], get_model("bert_large"), t,
                                             recompute, sp)
    assert ours.memory[0].activations >= 4 * block_bytes


def _embedding_b(plan) -> float:
    """Backward seconds of the preset's embedding (layer 0), from the plan's per-layer numbers."""
    from simulator import compute
    from simulator.parallel.tensor import split_layer

    t = plan.placement.device.shape[2]
    emb = split_layer(get_model("bert_large").layers[0], t, plan.sequence_parallel)
    return compute.layer_time(emb, get_device("a100"), plan.microbatch_size, pass_="backward")


def test_a_custom_layers_kind_and_memory_bytes_set_its_time():
    a100 = get_device("a100")
    raw = bert(1)
    raw["workload"]["model"] = [{"name": "norm", "kind": "elementwise", "params": 0, "forward_flops": 1,
                                 "memory_bytes": "4MB"},
                                {"name": "fc", "params": 1000, "forward_flops": 1e12}]
    raw["parallelism"] = {"data": 1}
    plan = plan_of(raw)
    b = 4
    norm, fc = plan.forward_layers[0]
    assert norm == pytest.approx(b * 4e6 / (a100.memory_bandwidth * a100.efficiency.elementwise), rel=1e-12)
    assert fc == pytest.approx(b * 1e12 / (a100.peak_flops * a100.efficiency.gemm), rel=1e-12)   # gemm: the default
