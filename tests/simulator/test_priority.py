"""Priority scheduling of gradient syncs (P3 / ByteScheduler): never slower on a single link; the
hand-built case where the first layer's gradient queues behind a big last layer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config import ConfigError, load_config
from simulator.engine import build_job
from simulator.run import simulate
from tests.simulator.test_engine_matrix import job


def single_link(bandwidth: float, latency: float, bucket: int, batch: int, model: str = "resnet50", **comm) -> dict:
    return {"seed": 1, "cluster": {"topology": {"kind": "ring", "devices": 2,
                                                "link": {"bandwidth": f"{bandwidth}B/s", "latency": f"{latency}s"}}},
            "workload": {"model": model, "batch_per_device": batch},
            "communication": {"bucket_size": f"{bucket}B", **comm}, "training": {"iterations": 6, "warmup": 2}}


@settings(max_examples=25, deadline=None)
@given(bandwidth=st.floats(1e8, 1e11), latency=st.floats(0, 1e-4), bucket=st.sampled_from([2**20, 2**23, 2**25, 2**27]),
       batch=st.sampled_from([4, 32]), model=st.sampled_from(["resnet50", "vgg16"]))
def test_priority_never_makes_an_iteration_slower_on_a_single_link(bandwidth, latency, bucket, batch, model):
    plain = simulate(single_link(bandwidth, latency, bucket, batch, model)).summary
    first = simulate(single_link(bandwidth, latency, bucket, batch, model, priority=True)).summary
    assert first["iteration_time_s"] <= plain["iteration_time_s"] * (1 + 1e-9)
    assert first["simulated_time_s"] <= plain["simulated_time_s"] * (1 + 1e-9)


def three_layers(priority: bool, flops: float = 1e10) -> dict:
    """A small first layer, a small middle one and a big last layer (50 M parameters), one bucket each."""
    layers = [{"name": "first", "params": 1_000_000, "forward_flops": flops, "activation_bytes": "100kB"},
              {"name": "middle", "params": 1_000_000, "forward_flops": flops, "activation_bytes": "100kB"},
              {"name": "last", "params": 50_000_000, "forward_flops": flops, "activation_bytes": "100kB"}]
    return {"cluster": {"topology": {"kind": "ring", "devices": 2, "link": {"bandwidth": "10GB/s", "latency": "1us"}}},
            "workload": {"model": {"name": "three", "layers": layers}, "batch_per_device": 32},
            "communication": {"bucket_size": "1MiB", "priority": priority},
            "training": {"iterations": 2, "warmup": 0}}


def test_the_first_layer_no_longer_waits_behind_the_big_last_layer():
    plain = build_job(load_config(three_layers(False))).run()
    fast = build_job(load_config(three_layers(True))).run()
    plan = plain.plan
    f = list(plan.forward_layers[0])                      # forward seconds of first, middle, last
    b0, b1, b2 = (p.backward_s for p in sorted(plan.parts[0], key=lambda p: p.layers[0]))
    c = {p.layers[0]: coll[0].seconds for p, coll in zip(plan.parts[0], plan.grad_sync[0][0], strict=True)}
    opt = float(plan.optimizer_s[0])
    values = {p.layers[0]: p.values for p in plan.parts[0]}
    o = {k: opt * v / sum(values.values()) for k, v in values.items()}
    F, B = sum(f), b0 + b1 + b2
    # without priority: FIFO in release order (last, middle, first); the step waits for all, then the optimizer
    r2, r1, r0 = F + b2, F + b2 + b1, F + B
    e2 = r2 + c[2]
    e1 = max(e2, r1) + c[1]
    e0 = max(e1, r0) + c[0]
    period = e0 + opt
    assert plain.result().summary["simulated_time_s"] == pytest.approx(2 * period, rel=1e-9)
    # with priority: the big last layer goes first (alone when it is released), then first, then middle;
    # the next forward waits for each layer's own part
    assert e2 + o[2] > r0, "the first layer's gradient must be released while the last layer is still syncing"
    p2 = r2 + c[2] + o[2]
    p0 = p2 + c[0] + o[0]
    p1 = p0 + c[1] + o[1]
    end0 = max(r0, p0) + f[0]
    end1 = max(end0, p1) + f[1]
    end2 = max(end1, p2) + f[2]
    q2 = max(end2 + b2, p1) + c[2] + o[2]
    q0 = max(q2, end2 + b2 + b1 + b0) + c[0] + o[0]
    q1 = q0 + c[1] + o[1]
    s = fast.result().summary
    assert s["simulated_time_s"] == pytest.approx(q1, rel=1e-9)
    assert 2 * period - q1 > 0                                 # the gain: the middle sync and the updates overlap


def test_partition_lets_a_later_part_overtake_and_costs_latency():
    # 2e10 FLOPs a layer: backward long enough (on an A100's 0.87 GEMM share) that the first layer is released
    # while most of the big layer's pieces still queue
    cfg = three_layers(True, 2e10)
    cfg["communication"]["partition"] = "8MiB"
    parted = build_job(load_config(cfg)).run()
    pieces = [len(coll) for coll in parted.plan.grad_sync[0][0]]
    assert sorted(pieces) == [1, 1, 24]                        # 200 MB in 8 MiB pieces; 4 MB parts stay whole
    whole = build_job(load_config(three_layers(True, 2e10))).run().result().summary["simulated_time_s"]
    parted_s = parted.result().summary["simulated_time_s"]
    assert parted_s < 0.95 * whole                                  # the first layer jumps the big one's pieces


@pytest.mark.parametrize("parallel", ["data", "tensor", "pipeline", "hybrid"])
def test_priority_in_every_parallelism_it_meets(parallel):
    slow = {"cluster.topology.link.bandwidth": "5GB/s"}
    plain = simulate(job(parallel, **slow)).summary
    first = simulate(job(parallel, **slow, **{"communication.priority": True})).summary
    assert first["iteration_time_s"] <= plain["iteration_time_s"] * (1 + 1e-9)
    assert first["exposed_communication_s"] < plain["exposed_communication_s"]


@pytest.mark.parametrize("sync", ["ps-bsp", "ps-ssp", "ps-asp", "ps-backup"])
@pytest.mark.parametrize("parallel", ["data", "pipeline"])
def test_priority_pushes_to_parameter_servers_first_layers_first(parallel, sync):
    """P3's push scheduling: one push in flight per stage, the next by forward order; keys then complete
    (and are pulled back) first layers first, overlapping the pulls with the remaining pushes."""
    slow = {"cluster.topology.link.bandwidth": "5GB/s"}
    plain = simulate(job(parallel, sync, **slow)).summary
    first = simulate(job(parallel, sync, **slow, **{"communication.priority": True})).summary
    assert first["iteration_time_s"] < plain["iteration_time_s"]
    assert first["exposed_communication_s"] < plain["exposed_communication_s"]
    assert first["bytes_sent_per_iteration"] == pytest.approx(plain["bytes_sent_per_iteration"])


def test_priority_orders_each_stage_process_pushes_by_forward_need():
    """Without overlap every part is released at once after backward: the first is sent at once, the
    queued rest in forward order (without priority they would all share the link in release order)."""
    cfg = load_config(job("data", "ps-bsp", **{"communication.priority": True, "communication.overlap": False,
                                               "training.iterations": 2}))
    ran = build_job(cfg).run()
    pushes = [(ev["ts"], ev["name"]) for ev in ran.trace.events
              if ev.get("name", "").startswith("push") and ev.get("tid") == 0 and ev["args"]["iteration"] == 0]
    parts = ran.plan.parts[0]
    order = [int(name.split(".")[1]) for _, name in sorted(pushes)]
    firsts = [min(parts[b].layers) for b in order]
    assert len(order) == len(parts) > 2
    assert firsts[0] == max(firsts) and firsts[1:] == sorted(firsts[1:])
    starts = sorted(ts for ts, _ in pushes)
    assert len(set(starts)) == len(starts)            # one at a time


@pytest.mark.parametrize(("extra", "expected"), [
    ({"communication.partition": "4MiB"}, "partition applies with communication.priority: true only"),
    ({"communication.priority": True, "communication.pattern": "parameter_server", "communication.partition": "4MiB"},
     "parameter servers push whole parts"),
    ({"communication.priority": True, "parallelism.zero": 1}, "needs per-part parameter updates"),
])
def test_priority_is_refused_where_it_cannot_apply(extra, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(job("data", **extra))
