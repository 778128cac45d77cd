"""Calibration recovers known α, β, γ from synthetic measurements (truth from outside the code: the generator)."""

from __future__ import annotations

import numpy as np
import pytest
from validation_helpers import ONE, TWO, synthetic

from validation.calibrate import CalibrationError, calibrate, features
from validation.records import Measurement, MeasurementError, Measurements


def close(value: float, truth: float, rel: float = 0.02) -> bool:
    return abs(value - truth) <= rel * truth


@pytest.mark.parametrize("holdout", ["none", "sizes"])
def test_recovers_alpha_beta_gamma_within_2_percent(holdout):
    profile = calibrate(synthetic(ONE), holdout=holdout)
    assert profile.fit["structure"] == "joint"
    (r,) = profile.regimes
    alpha, beta, gamma = ONE[0][1]
    assert close(r.alpha_s, alpha) and close(r.beta_s_per_byte, beta) and close(r.gamma_s_per_byte, gamma)
    # recursive doubling stages exactly the bytes it reduces, ring stages none: with these two algorithms the
    # staged bytes are 2 x reduced - moved, so sigma cannot be told apart and is fixed (and says so)
    assert set(r.fixed) == {"sigma"} and r.fixed["sigma"].startswith("not identifiable")
    assert r.condition_number is not None and 1 < r.condition_number < 1e6
    # the standard errors are honest: the truth lies within a few of them
    assert abs(r.gamma_s_per_byte - gamma) < 4 * r.gamma_stderr_s_per_byte
    assert abs(r.alpha_s - alpha) < 4 * r.alpha_stderr_s


def test_two_regimes_finds_the_break_within_one_size_step_and_both_regimes():
    profile = calibrate(synthetic(TWO, noise=0.005), holdout="none")
    assert profile.fit["structure"] == "joint"
    small, large = profile.regimes
    true_break = TWO[0][0]  # 256 KiB; sizes step by x2
    assert true_break / 2 <= small.max_bytes <= true_break * 2
    assert small.fitted_range_bytes[1] < true_break <= large.fitted_range_bytes[0]
    for regime, (_, truth) in zip((small, large), TWO, strict=True):
        assert close(regime.alpha_s, truth[0]) and close(regime.beta_s_per_byte, truth[1])
    assert close(large.gamma_s_per_byte, TWO[1][1][2])
    # below 256 KiB the reduction is a small part of each time, so gamma is the least certain number
    # there (about 2 % standard error at this noise): it must lie within 3 of its standard errors
    assert abs(small.gamma_s_per_byte - TWO[0][1][2]) < 3 * small.gamma_stderr_s_per_byte


def test_one_regime_is_kept_when_the_data_have_one():
    assert len(calibrate(synthetic(ONE), holdout="none").regimes) == 1
    assert len(calibrate(synthetic(TWO), holdout="none", max_regimes=1).regimes) == 1


def test_ring_alone_cannot_separate_beta_and_gamma_and_says_so():
    (r,) = calibrate(synthetic(ONE, algorithms=("ring",)), holdout="none").regimes
    alpha, beta, gamma = ONE[0][1]
    assert "not identifiable" in r.fixed["gamma"] and r.gamma_s_per_byte == 0
    assert r.gamma_stderr_s_per_byte is None
    # ring moves 2(p-1)/p n and reduces (p-1)/p n: the fitted beta carries beta + gamma/2
    assert close(r.beta_s_per_byte, beta + gamma / 2) and close(r.alpha_s, alpha)


def test_a_negative_coefficient_is_fixed_at_zero_and_reported():
    data = synthetic([(np.inf, (5e-6, 3e-10, -0.5e-10))], noise=0.002)
    (r,) = calibrate(data, holdout="none", max_regimes=1, by="joint").regimes
    assert r.gamma_s_per_byte == 0.0 and r.fixed["gamma"].startswith("fitted negative")
    assert r.alpha_s > 0 and r.beta_s_per_byte > 0


def test_rank_dependent_costs_get_per_rank_groups_and_a_joint_fallback():
    slow = synthetic([(np.inf, (200e-6, 5e-10, 2e-10))], ranks=(4,), seed=2)
    data = synthetic(ONE, ranks=(2,)) + slow
    profile = calibrate(data, holdout="none")
    assert profile.fit["structure"] == "ranks"
    by_ranks = {r.ranks: r for r in profile.regimes if r.algorithm is None}
    assert close(by_ranks[2].alpha_s, 5e-6) and close(by_ranks[4].alpha_s, 200e-6)
    assert close(by_ranks[4].beta_s_per_byte, 5e-10) and close(by_ranks[4].gamma_s_per_byte, 2e-10)
    assert None in by_ranks  # the fallback for rank counts that were not measured
    assert profile.regime(1 << 20, "ring", 4) is by_ranks[4]
    assert profile.regime(1 << 20, "ring", 64) is by_ranks[None]
    # a structure that shares numbers across ranks is forced by --holdout ranks
    held = calibrate(data, holdout="ranks")
    assert "ranks" not in held.fit["structure"] and held.fit["held_out_ranks"] == [4]


def test_features_are_the_schedule_maxima():
    # ring on 4 ranks, 4 KiB: 6 steps of 1 KiB moved; 3 of them reduce 1 KiB
    # (steps, moved, reduced, staged): recursive doubling stages each exchange through a receive buffer
    assert features("ring", 4, 4096) == (6, 6 * 1024, 3 * 1024, 0)
    assert features("recursive_doubling", 4, 4096) == (2, 2 * 4096, 2 * 4096, 2 * 4096)


def test_one_size_cannot_calibrate():
    rows = [Measurement("cpu", a, "allreduce", 2, 4096, "float32", 0, 1e-5) for a in ("ring", "recursive_doubling")]
    with pytest.raises(CalibrationError, match="cannot be separated"):
        calibrate(Measurements(rows), holdout="none")


def test_mixed_devices_are_refused():
    data = synthetic(ONE) + Measurements([Measurement("cuda", "ring", "allreduce", 2, 4096, "float32", 0, 1e-5)])
    with pytest.raises(MeasurementError, match="mix several device values"):
        calibrate(data)
