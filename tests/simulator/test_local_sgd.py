"""Local SGD / periodic parameter averaging: H = 1 is BSP, H divides the synchronisations, post-local SGD."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config import ConfigError, load_config
from simulator.engine import build_job
from simulator.run import simulate
from tests.simulator.test_engine_matrix import CONVERGENCE, job


def learn(parallel: str, iterations: int = 24, **sync):
    cfg = job(parallel, **{"training.convergence": dict(CONVERGENCE), "training.iterations": iterations,
                           **{f"sync.{k}": v for k, v in sync.items()}})
    ran = build_job(load_config(cfg)).run()
    return ran, ran.result().summary


@pytest.mark.parametrize("parallel", ["data", "pipeline", "tensor", "hybrid"])
def test_period_one_is_bsp(parallel):
    bsp, _ = learn(parallel)
    local, s = learn(parallel, mode="local_sgd", period=1)
    assert np.allclose(local.learner.params, bsp.learner.params, rtol=1e-12, atol=1e-14)
    assert s["sync_rounds"] == 24


@pytest.mark.parametrize("parallel", ["data", "pipeline", "hybrid"])
@pytest.mark.parametrize("period", [2, 4, 8])
def test_period_divides_the_synchronisations_and_their_bytes(parallel, period):
    _, bsp = learn(parallel)
    _, s = learn(parallel, mode="local_sgd", period=period)
    assert s["sync_rounds"] == 24 // period
    data = "data_parallel_bytes_per_iteration" if parallel != "data" else "bytes_sent_per_iteration"
    assert s[data] == pytest.approx(bsp[data] / period, rel=1e-12)       # parameters are as big as gradients
    assert s["final_loss"] != bsp["final_loss"]                           # the models really drift apart


def test_on_a_slow_network_averaging_less_often_is_faster_and_on_a_fast_one_it_need_not_be():
    """Averaging follows the step (nothing to overlap with); BSP hides its allreduce behind backward."""
    slow = {"cluster.topology.link.bandwidth": "1GB/s"}
    bsp = simulate(job("data", **slow)).summary["iteration_time_s"]
    local = simulate(job("data", **slow, **{"sync.mode": "local_sgd", "sync.period": 4})).summary["iteration_time_s"]
    assert local < bsp
    fast_bsp = simulate(job("data")).summary["iteration_time_s"]
    fast_h1 = simulate(job("data", **{"sync.mode": "local_sgd", "sync.period": 1})).summary["iteration_time_s"]
    assert fast_h1 > fast_bsp                     # H = 1: same bytes, but none of it overlapped


def test_replicas_step_their_own_models_between_averagings():
    ran, _ = learn("data", iterations=6, mode="local_sgd", period=4)      # averaged after 4; 2 local steps since
    models = ran.learner.local
    assert len(models) == 4 and not np.allclose(models[0], models[1])
    assert np.allclose(ran.learner.params, np.mean(models, axis=0))


def test_post_local_sgd_runs_bsp_first():
    _, s = learn("data", iterations=24, mode="local_sgd", period=8, post_local_after=8)
    assert s["sync_rounds"] == 8 + 2                                       # 8 BSP steps, then 16 local / 8
    bsp, _ = learn("data", iterations=8)
    early, _ = learn("data", iterations=8, mode="local_sgd", period=8, post_local_after=8)
    assert np.array_equal(early.learner.params, bsp.learner.params)


def test_local_steps_do_not_wait_for_slow_replicas():
    """Between averagings a slow replica holds nobody up; at an averaging everyone meets."""
    slow = {"distribution": "none", "slow_fraction": 0.25, "slowdown": 2.0}
    bsp = simulate(job("data", stragglers=slow, **{"training.iterations": 16})).summary
    local = simulate(job("data", stragglers=slow, **{"training.iterations": 16, "sync.mode": "local_sgd",
                                                      "sync.period": 16})).summary
    assert local["wait_s"] < bsp["wait_s"]


@pytest.mark.parametrize(("extra", "expected"), [
    ({"sync.mode": "local_sgd", "communication.pattern": "parameter_server"}, "needs communication.pattern"),
    ({"sync.period": 4}, "period applies to mode local_sgd only"),
    ({"sync.mode": "local_sgd", "communication.compression": "topk"}, "averages parameters"),
    ({"sync.mode": "local_sgd", "parallelism.zero": 1}, "needs parallelism.zero: 0"),
])
def test_local_sgd_is_refused_where_it_cannot_apply(extra, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(job("data", **extra))
