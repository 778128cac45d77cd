"""The learning problem trained inside the simulation: gradients, BSP ≡ large-batch SGD, staleness hurts."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from simulator.config import load_config
from simulator.config.models import Convergence
from simulator.convergence import make_problem
from simulator.engine import build_job
from simulator.rng import Streams
from simulator.run import simulate


def with_convergence(cfg: dict, workers: int, pattern: str = "parameter_server", mode: str = "bsp",
                     iterations: int = 10, **problem) -> dict:
    cfg = copy.deepcopy(cfg)
    cfg["cluster"]["topology"]["devices"] = workers + 1
    cfg["parallelism"] = {"data": workers}
    cfg["communication"] = {"pattern": pattern, **({"servers": 1} if pattern == "parameter_server" else {})}
    cfg["sync"] = {"mode": mode}
    cfg["training"] = {"iterations": iterations, "warmup": 1,
                       "convergence": {"problem": "logistic_regression", "batch": 8, "lr": 0.5, **problem}}
    return cfg


@pytest.mark.parametrize("problem", ["logistic_regression", "softmax", "mlp"])
def test_gradient_matches_finite_differences(problem):
    spec = Convergence(problem=problem, features=5, classes=2 if problem == "logistic_regression" else 3,
                       hidden=4, samples=64)
    prob = make_problem(spec, Streams(0), workers=1, batch=16)
    rng = np.random.default_rng(1)
    params = prob.params0 + rng.normal(0, 0.3, len(prob.params0))
    idx = np.arange(16)

    def loss(w):
        sub = copy.copy(prob)
        sub.x, sub.y = prob.x[idx], prob.y[idx]
        return sub.evaluate(w)[0]

    grad = prob.gradient(params, idx)
    eps = 1e-6
    numeric = np.array([(loss(params + eps * e) - loss(params - eps * e)) / (2 * eps) for e in np.eye(len(params))])
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def sequential_sgd(problem, steps: int, batch: int, lr: float, seed: int) -> np.ndarray:
    """Plain mini-batch SGD on logistic regression, written here from the textbook, same data order."""
    streams = Streams(seed)
    w = problem.params0.copy()
    n = problem.samples
    for step in range(steps):
        pos = np.arange(step * batch, (step + 1) * batch)
        idx = np.array([streams.get("sgd.order", int(q // n)).permutation(n)[q % n] for q in pos])
        x, y = problem.x[idx], problem.y[idx]
        z = x @ w[:-1] + w[-1]
        r = 1 / (1 + np.exp(-z)) - y
        w = w - lr * np.concatenate([x.T @ r / batch, [r.mean()]])
    return w


@pytest.mark.parametrize(("pattern", "workers"), [("parameter_server", 4), ("parameter_server", 3), ("allreduce", 4)])
def test_bsp_equals_sequential_sgd_with_the_combined_batch(small_config, pattern, workers):
    cfg = load_config(with_convergence(small_config, workers, pattern, samples=100))  # 100: epochs wrap mid-batch
    cluster = build_job(cfg).run()
    spec = cfg.training.convergence
    problem = make_problem(spec, Streams(cfg.seed), workers, spec.batch)
    expected = sequential_sgd(problem, cfg.training.iterations, workers * spec.batch, spec.lr, cfg.seed)
    np.testing.assert_allclose(cluster.learner.params, expected, rtol=1e-10, atol=1e-12)
    assert cluster.learner.updates == cfg.training.iterations
    assert cluster.learner.gradients == cfg.training.iterations * workers


def test_staleness_costs_asp_more_gradients_to_reach_the_target(small_config):
    """Softmax near its stability limit, 16 workers, lognormal stragglers: ASP's stale gradients
    need more of them than BSP to reach the same loss (while arriving sooner in wall-clock time)."""
    for seed in range(4):
        runs = {}
        for mode in ("bsp", "asp"):
            cfg = with_convergence(small_config, 16, mode=mode, iterations=40, problem="softmax", classes=4,
                                   features=32, batch=16, lr=8.0, target_loss=0.6)
            cfg["seed"] = seed
            cfg["stragglers"] = {"distribution": "lognormal", "sigma": 0.5}
            runs[mode] = simulate(load_config(cfg)).summary
        bsp, asp = runs["bsp"], runs["asp"]
        assert bsp["gradients_to_target"] is not None
        assert asp["staleness_mean"] > 5
        assert asp["gradients_to_target"] is None or asp["gradients_to_target"] > bsp["gradients_to_target"]


def test_same_seed_same_loss_curve(small_config, tmp_path):
    cfg = with_convergence(small_config, 4, mode="asp", problem="mlp", classes=3)
    cfg["stragglers"] = {"distribution": "exponential", "sigma": 0.3}
    a = simulate(load_config(cfg)).write(tmp_path / "a", plots=False)
    b = simulate(load_config(cfg)).write(tmp_path / "b", plots=False)
    c = simulate(load_config({**cfg, "seed": 99})).write(tmp_path / "c", plots=False)
    assert (a / "convergence.csv").read_bytes() == (b / "convergence.csv").read_bytes()
    assert (a / "summary.json").read_bytes() == (b / "summary.json").read_bytes()
    assert (a / "convergence.csv").read_bytes() != (c / "convergence.csv").read_bytes()


def test_outputs_of_an_asynchronous_run(small_config, tmp_path):
    cfg = with_convergence(small_config, 4, mode="ssp", target_loss=0.69)
    cfg["sync"]["staleness"] = 2
    cfg["stragglers"] = {"distribution": "lognormal", "sigma": 0.4}
    out = simulate(load_config(cfg)).write(tmp_path / "run")
    for name in ("convergence.csv", "staleness.csv", "workers.csv", "servers.csv", "plots/loss.png",
                 "plots/staleness.png", "plots/workers.png", "plots/iterations.png"):
        assert (out / name).stat().st_size > 0, name
    import json

    s = json.loads((out / "summary.json").read_text())
    for key in ("staleness_mean", "staleness_max", "clock_staleness_max", "wait_s", "server_utilization",
                "final_loss", "time_to_target_s", "updates_to_target"):
        assert key in s, key
    assert s["clock_staleness_max"] <= 2
