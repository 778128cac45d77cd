"""Gradient compression: exact bytes on the wire, the collective each method needs, and its effect on learning."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from simulator.compression import Compressor, encode
from simulator.config import ConfigError, load_config
from simulator.config.models import Compression
from simulator.engine import build_job
from simulator.rng import Streams
from simulator.run import simulate
from simulator.workloads import get_model
from tests.simulator.test_engine_matrix import CONVERGENCE, job, set_dotted

BW, LAT = 1.25e9, 5e-6


def switch(compression="fp32", devices=8, **extra) -> dict:
    cfg = {"seed": 2, "cluster": {"topology": {"kind": "switch", "devices": devices,
                                               "link": {"bandwidth": f"{BW}B/s", "latency": f"{LAT}s"}}},
           "communication": {"compression": compression, "bucket_size": None},
           "training": {"iterations": 3, "warmup": 1}}
    for key, value in extra.items():
        set_dotted(cfg, key, value)
    return cfg


def n_values() -> int:
    return get_model("resnet50").parameters


def test_fp16_halves_the_bytes_on_the_wire():
    fp32 = simulate(switch()).summary
    fp16 = simulate(switch("fp16")).summary
    assert fp16["bytes_on_wire_per_iteration"] == 2 * n_values()
    assert fp16["compression_ratio"] == 2.0 and fp16["compression_s"] == 0.0
    assert fp16["bytes_sent_per_iteration"] == pytest.approx(fp32["bytes_sent_per_iteration"] / 2)


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.5])
def test_topk_sends_k_values_and_their_indices(ratio):
    s = simulate(switch({"method": "topk", "ratio": ratio})).summary
    k = math.ceil(ratio * n_values())
    assert s["bytes_on_wire_per_iteration"] == 8 * k                  # int32 index + fp32 value each
    assert s["compression_ratio"] == pytest.approx(4 * n_values() / (8 * k))


def test_powersgd_sends_r_times_m_plus_n_per_matrix_and_the_vectors_whole():
    model = get_model("resnet50")
    r = 4
    matrices = [mat for layer in model.layers for mat in layer.matrices]
    inside = sum(m * n for m, n in matrices)
    expected = 4 * r * sum(m + n for m, n in matrices) + 4 * (model.parameters - inside)
    s = simulate(switch({"method": "powersgd", "rank": r})).summary
    assert s["bytes_on_wire_per_iteration"] == expected
    # the exact r(m + n) for one m×n matrix, and a matrix's rows and columns from its convolution
    assert encode(Compression(method="powersgd", rank=3), 50 * 70, ((50, 70),), 8).wire_bytes == 4 * 3 * (50 + 70)
    conv1 = model.layers[0]
    assert conv1.matrices == ((64, 3 * 7 * 7),)


def test_qsgd_sends_bits_per_value_and_a_norm():
    s = simulate(switch({"method": "qsgd", "bits": 4})).summary
    assert s["bytes_on_wire_per_iteration"] == math.ceil(4 * n_values() / 8) + 4


def test_topk_allgather_on_a_switch_is_the_allgather_closed_form():
    """8 ranks each contribute B = 8k bytes; ring allgather on a switch: (p − 1)(α + B/β), α two hops."""
    p, ratio = 8, 0.01
    job_ = build_job(load_config(switch({"method": "topk", "ratio": ratio}, devices=p)))
    colls = job_.plan.grad_sync[0][0][0]
    assert [c.name for c in colls] == ["compress topk", "allgather", "decompress topk"]
    B = 8 * math.ceil(ratio * n_values())
    closed = (p - 1) * (2 * LAT + B / BW)
    assert colls[1].seconds == pytest.approx(closed, rel=1e-9)
    assert colls[1].bytes == pytest.approx(p * (p - 1) * B)            # every rank sends p − 1 chunks of B


def test_compression_costs_are_on_the_gradient_stream():
    s = simulate(switch({"method": "powersgd", "rank": 4})).summary
    fp32 = simulate(switch()).summary
    assert s["compression_s"] > 0
    assert s["communication_s"] < fp32["communication_s"]          # a slow network: 66x fewer bytes win
    job_ = build_job(load_config(switch({"method": "powersgd", "rank": 4})))
    names = [c.name for c in job_.plan.grad_sync[0][0][0]]
    assert names == ["compress powersgd", "allreduce", "allreduce", "decompress powersgd"]   # P, then Q


# -- the learner trains on what the wire carried ----------------------------------------------------------


def train(compression, parallel="data", **extra) -> dict:
    cfg = job(parallel, **{"training.convergence": dict(CONVERGENCE), "training.iterations": 12,
                           "communication.compression": compression, **extra})
    return simulate(cfg).summary


def final_params(compression, parallel="data") -> np.ndarray:
    cfg = load_config(job(parallel, **{"training.convergence": dict(CONVERGENCE), "training.iterations": 12,
                                       "communication.compression": compression}))
    return build_job(cfg).run().learner.params


@pytest.mark.parametrize("parallel", ["data", "pipeline", "hybrid"])
def test_error_feedback_with_every_value_kept_is_uncompressed_training(parallel):
    plain = final_params("fp32", parallel)
    assert np.array_equal(final_params({"method": "topk", "ratio": 1.0}, parallel), plain)
    assert not np.array_equal(final_params({"method": "topk", "ratio": 0.25}, parallel), plain)


def test_fp16_rounds_the_gradients_the_learner_applies():
    assert not np.array_equal(final_params("fp16"), final_params("fp32"))
    assert np.allclose(final_params("fp16"), final_params("fp32"), rtol=1e-2, atol=1e-3)


def test_qsgd_is_unbiased():
    rng = np.random.default_rng(0)
    g = rng.normal(size=64)
    comp = Compressor(Compression(method="qsgd", bits=3), [(64,)], 1, Streams(1))
    draws = np.array([comp.one(0, g) for _ in range(20000)])
    sem = draws.std(axis=0) / math.sqrt(len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - g) < 5 * sem + 1e-12)
    assert len(np.unique(np.round(np.abs(draws[0]) / np.linalg.norm(g) * 3, 9))) <= 4   # s + 1 = 4 levels


def test_topk_error_feedback_keeps_what_was_not_sent():
    comp = Compressor(Compression(method="topk", ratio=0.25), [(8,)], 1, Streams(1))
    g = np.array([4.0, -3.0, 0.5, 0.25, -0.1, 2.0, 0.0, 1.0])
    sent = comp.one(0, g)
    assert np.count_nonzero(sent) == 2 and sent[0] == 4.0 and sent[1] == -3.0
    assert np.array_equal(sent + comp.residual[0], g)
    again = comp.one(0, np.zeros(8))                                # the residual goes out next
    assert set(np.flatnonzero(again)) == {5, 7}


def test_powersgd_of_full_rank_with_error_feedback_loses_nothing_over_time():
    """Rank = min(m, n): each step's projection is exact on the span it found; what is left is fed back."""
    rng = np.random.default_rng(3)
    shapes = [(6, 3), (3,)]
    comp = Compressor(Compression(method="powersgd", rank=3), shapes, 2, Streams(4))
    grads = [rng.normal(size=21) for _ in range(2)]
    out = comp.aggregate(grads)
    assert np.allclose(out, np.mean(grads, axis=0), atol=1e-10)


def test_compression_is_refused_where_it_cannot_apply():
    with pytest.raises(ConfigError, match="parameter servers take fp32, fp16 or bf16"):
        load_config(job("data", "ps-bsp", **{"communication.compression": "topk"}))
    with pytest.raises(ConfigError, match="needs parallelism.zero: 0"):
        load_config(job("zero", **{"communication.compression": "powersgd"}))
    with pytest.raises(ConfigError, match="ratio applies to method topk only"):
        load_config(job("data", **{"communication.compression": {"method": "qsgd", "ratio": 0.1}}))
    with pytest.raises(ConfigError, match="gradient_bytes_per_param moved to communication.compression"):
        load_config(job("data", **{"workload.gradient_bytes_per_param": 2}))


def test_fp16_to_a_parameter_server_halves_its_traffic_and_rounds_the_pushes():
    fp32 = simulate(job("data", "ps-bsp")).summary
    fp16 = simulate(job("data", "ps-bsp", **{"communication.compression": "fp16"})).summary
    assert fp16["bytes_sent_per_iteration"] == pytest.approx(fp32["bytes_sent_per_iteration"] / 2, rel=1e-6)
    cfg = copy.deepcopy(job("data", "ps-bsp", **{"training.convergence": dict(CONVERGENCE)}))
    plain = build_job(load_config(cfg)).run().learner.params
    cfg["communication"]["compression"] = "fp16"
    half = build_job(load_config(cfg)).run().learner.params
    assert not np.array_equal(plain, half) and np.allclose(plain, half, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("method", ["fp16", "qsgd", "topk", "powersgd"])
@pytest.mark.parametrize("parallel", ["data", "tensor", "pipeline", "hybrid"])
def test_compression_in_every_parallelism_it_meets(parallel, method):
    """Every stage's data-parallel sync carries the encoding; the learner trains on it (PowerSGD needs a
    weight matrix: a 3-class softmax, at rank 1)."""
    problem = dict(CONVERGENCE, problem="softmax", classes=3) if method == "powersgd" else dict(CONVERGENCE)
    spec = {"method": "powersgd", "rank": 1} if method == "powersgd" else method
    plain = simulate(job(parallel, **{"training.convergence": problem})).summary
    s = simulate(job(parallel, **{"training.convergence": problem, "communication.compression": spec})).summary
    assert s["compression"] == method and s["compression_ratio"] > 1.9
    key = "bytes_sent_per_iteration" if parallel == "data" else "data_parallel_bytes_per_iteration"
    assert s[key] != plain[key]
    assert s["final_loss"] != plain["final_loss"]


@pytest.mark.parametrize("sync", ["ps-bsp", "ps-ssp", "ps-asp", "ps-backup"])
def test_half_precision_pushes_in_every_ps_sync_mode(sync):
    plain = simulate(job("data", sync)).summary
    s = simulate(job("data", sync, **{"communication.compression": "bf16"})).summary
    assert s["compression_ratio"] == 2.0
    assert s["bytes_sent_per_iteration"] == pytest.approx(plain["bytes_sent_per_iteration"] / 2, rel=1e-6)
