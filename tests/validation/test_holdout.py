"""Held-out points are never used in the fit, and MAPE is reported on them only."""

from __future__ import annotations

import dataclasses

import pytest
from validation_helpers import ONE, TWO, synthetic

from validation.calibrate import CalibrationError, calibrate, split
from validation.compare import compare
from validation.records import Measurements


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
