"""Held-out points are never used in the fit, and MAPE is reported on them only."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validation_helpers import ONE, TWO, synthetic

from validation.calibrate import HOLDOUTS, CalibrationError, calibrate, features, split
from validation.compare import compare
from validation.records import Measurement, Measurements


def test_every_other_size_is_held_out_but_never_the_smallest_or_largest():
    points = synthetic(ONE, sizes="4KiB..64MiB:x4").points()
    fitted, held = split(points, "sizes")
    assert sorted({p.size_bytes for p in held}) == [16 << 10, 256 << 10, 4 << 20]
    assert sorted({p.size_bytes for p in fitted}) == [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20]
    assert not {p.key for p in fitted} & {p.key for p in held}
    assert len(fitted) + len(held) == len(points)


def test_ranks_holdout_keeps_the_largest_rank_count_out():
    points = synthetic(ONE, ranks=(2, 4, 8)).points()
    fitted, held = split(points, "ranks")
    assert {p.ranks for p in held} == {8} and {p.ranks for p in fitted} == {2, 4}
    assert split(points, "none") == (points, [])
    with pytest.raises(CalibrationError, match="two or more rank counts"):
        split(synthetic(ONE, ranks=(2,)).points(), "ranks")


@pytest.mark.parametrize("holdout", ["sizes", "ranks"])
def test_perturbing_a_held_out_measurement_does_not_change_the_profile(holdout):
    data = synthetic(TWO)
    _, held = split(data.points(), holdout)
    held_keys = {p.key for p in held}
    spoiled = Measurements([dataclasses.replace(m, seconds=m.seconds * 7.0)
                            if (m.algorithm, m.ranks, m.size_bytes) in held_keys else m for m in data.rows])
    a, b = calibrate(data, holdout=holdout), calibrate(spoiled, holdout=holdout)
    assert a.regimes == b.regimes
    # ... while spoiling a fitted point does change it
    fitted_key = next(p.key for p in data.points() if p.key not in held_keys)
    moved = Measurements([dataclasses.replace(m, seconds=m.seconds * 7.0)
                          if (m.algorithm, m.ranks, m.size_bytes) == fitted_key else m for m in data.rows])
    assert calibrate(moved, holdout=holdout).regimes != a.regimes


def test_mape_counts_held_out_points_only():
    data = synthetic(ONE, sizes="4KiB..64MiB:x4")
    profile = calibrate(data)
    _, held = split(data.points(), "sizes")
    # spoil the held-out points: their error must show, and only theirs is counted
    held_keys = {p.key for p in held}
    spoiled = Measurements([dataclasses.replace(m, seconds=m.seconds * 2.0)
                            if (m.algorithm, m.ranks, m.size_bytes) in held_keys else m for m in data.rows])
    c = compare(profile, spoiled)
    flagged = {(r["algorithm"], r["ranks"], r["size_bytes"]) for r in c.rows if r["held_out"]}
    assert flagged == held_keys
    assert c.summary["held_out_points"] == len(held)
    assert c.summary["mape_held_out_pct"] == pytest.approx(50.0, abs=1.0)  # predicted = measured / 2
    large = [r for r in c.rows if r["held_out"] and r["size_bytes"] >= 64 << 10]
    assert c.summary["held_out_points_ge_64KiB"] == len(large) > 0
    fitted_errors = [abs(r["error_pct"]) for r in c.rows if not r["held_out"]]
    assert max(fitted_errors) < 3.0  # the fitted points are untouched and fit well
    for g in c.summary["by_group"]:
        assert g["mape_held_out_ge_64KiB_pct"] == pytest.approx(50.0, abs=1.0)


def test_algorithms_holdout_fits_ring_and_recursive_doubling_and_predicts_the_rest():
    data = synthetic(ONE, algorithms=("ring", "recursive_doubling", "rabenseifner", "binomial_tree"), ranks=(2, 4))
    fitted, held = split(data.points(), "algorithms")
    assert {p.algorithm for p in fitted} == {"ring", "recursive_doubling"}
    assert {p.algorithm for p in held} == {"rabenseifner", "binomial_tree"}
    profile = calibrate(data, holdout="algorithms")
    assert profile.fit["held_out_algorithms"] == ["binomial_tree", "rabenseifner"]
    assert profile.fit["structure"] in ("joint", "ranks")  # numbers shared across algorithms
    c = compare(profile, data)
    assert {r["held_out_by"] for r in c.rows if r["held_out"]} == {"algorithms"}
    (kind,) = c.summary["by_holdout"]
    assert kind["held_out_by"] == "algorithms" and kind["points"] == len(held)
    assert kind["mape_pct"] < 3.0  # one alpha, beta, gamma for every schedule: the trees are predicted
    with pytest.raises(CalibrationError, match="--holdout algorithms: .* needs measurements of both kinds"):
        split(synthetic(ONE, algorithms=("ring",), ranks=(2,)).points(), "algorithms")
    with pytest.raises(CalibrationError, match="--by algorithm cannot predict a held-out algorithm"):
        calibrate(data, holdout="algorithms", by="algorithm")


def test_each_kind_of_held_out_point_is_reported_separately():
    # fitted on 2 ranks, every other size, ring and recursive doubling; compared on 4 ranks and a tree too
    profile = calibrate(synthetic(ONE, ranks=(2,)))
    data = synthetic(ONE, algorithms=("ring", "recursive_doubling", "binomial_tree"), ranks=(2, 4))
    c = compare(profile, data)
    kinds = {k["held_out_by"]: k["points"] for k in c.summary["by_holdout"]}
    reasons = [set(r["held_out_by"].split("+")) for r in c.rows if r["held_out"]]
    assert kinds == {k: sum(k in why for why in reasons) for k in ("sizes", "ranks", "algorithms")}
    assert all(kinds.values())
    assert {"sizes", "ranks", "algorithms"} in reasons  # a point unseen in all three ways counts in each


_ALGS = ("ring", "recursive_doubling", "rabenseifner", "binomial_tree", "double_binary_tree")
_SIZES = tuple(4096 << (2 * k) for k in range(6))


@settings(max_examples=40, deadline=None)
@given(algorithms=st.sets(st.sampled_from(_ALGS), min_size=1), ranks=st.sets(st.sampled_from((2, 4, 8)), min_size=1),
       sizes=st.sets(st.sampled_from(_SIZES), min_size=2), holdout=st.sampled_from(HOLDOUTS),
       noise=st.floats(0.0, 0.2))
def test_no_split_ever_puts_a_held_out_point_in_the_fit(algorithms, ranks, sizes, holdout, noise):
    rows = [Measurement("cpu", a, "allreduce", p, n, "float32", 0,
                        sum(c * x for c, x in zip((5e-6, 2e-10, 1e-10), features(a, p, n)[:3], strict=True))
                        * (1 + noise * (((p * 7 + n // 4096 + len(a)) % 7) - 3) / 3))
            for a in sorted(algorithms) for p in sorted(ranks) for n in sorted(sizes)]
    data = Measurements(rows)
    try:
        fitted, held = split(data.points(), holdout)
    except CalibrationError:
        return  # e.g. --holdout ranks with one rank count: refused, nothing split
    fitted_keys, held_keys = {p.key for p in fitted}, {p.key for p in held}
    assert not fitted_keys & held_keys and fitted_keys | held_keys == {p.key for p in data.points()}
    assert fitted  # something is always fitted
    try:
        profile = calibrate(data, holdout=holdout, by="joint", max_regimes=1)
    except CalibrationError:
        return  # too few fitted sizes for alpha and beta: refused in one line, never fitted on held-out data
    # the profile is exactly the one fitted on the fitted points alone, and compare flags every held-out point
    alone = calibrate(Measurements([m for m in rows if (m.algorithm, m.ranks, m.size_bytes) in fitted_keys]),
                      holdout="none", by="joint", max_regimes=1)
    assert profile.regimes == alone.regimes
    flagged = {(r["algorithm"], r["ranks"], r["size_bytes"]) for r in compare(profile, data).rows if r["held_out"]}
    assert flagged == held_keys
