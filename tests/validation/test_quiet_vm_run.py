"""The committed quiet-VM run of issue 18 (benchmarks/validation/results/2026-12-02-cpu-epyc-2core): refitting
its files with today's code reproduces what the run reported, and the bars it was recorded against still hold.

Real measurements, not synthetic ones: if a change to the cost model, the fit or the sentinel filter made the
model worse on them, this fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from validation.calibrate import calibrate
from validation.compare import compare
from validation.records import read_measurements

RUN = Path(__file__).resolve().parents[2] / "benchmarks" / "validation" / "results" / "2026-12-02-cpu-epyc-2core"


def test_refitting_the_committed_run_reproduces_its_summary_and_the_bars():
    reported = json.loads((RUN / "summary.json").read_text())
    one = read_measurements(RUN / "measurements.csv")
    profile = calibrate(one, statistic="p10")
    held = compare(profile, one).summary
    assert held["mape_held_out_ge_64KiB_pct"] == pytest.approx(reported["mape_held_out_ge_64KiB_pct"], rel=1e-9)
    assert held["held_out_points_ge_64KiB"] == 10 and held["mape_held_out_ge_64KiB_pct"] <= 10.0
    again = compare(profile, read_measurements(RUN / "run2" / "measurements.csv")).summary
    assert again["held_out_points"] == again["points"]                      # every point of run 2 held out (run)
    assert again["mape_held_out_ge_64KiB_pct"] == pytest.approx(reported["reproducibility"]["mape_ge_64KiB_pct"])
    assert again["mape_held_out_ge_64KiB_pct"] <= 12.0
    mpi = read_measurements(RUN / "reference_mpi.csv")
    own = compare(calibrate(mpi, statistic="p10", by="joint", name="mpi-allreduce"), mpi).summary
    assert own["mape_held_out_ge_64KiB_pct"] == pytest.approx(
        reported["reference_mpi_own_profile"]["mape_held_out_ge_64KiB_pct"])
    assert own["mape_held_out_ge_64KiB_pct"] <= 15.0


def test_the_sentinel_left_disturbed_repetitions_out_of_that_run():
    one = read_measurements(RUN / "measurements.csv")
    info = one.provenance["measure"]["sentinel"]
    assert info["gate"] == 1.25 and info["readings"] > 0
    points = one.points("p10")
    assert sum(p.disturbed for p in points) > 0 and not any(p.slow_only for p in points)
    assert all(m.sentinel_s > 0 for m in one.rows)


def test_without_the_peer_and_fractional_cache_terms_the_same_run_fits_worse():
    one = read_measurements(RUN / "measurements.csv")
    physical = compare(calibrate(one, statistic="p10"), one).summary["mape_held_out_ge_64KiB_pct"]
    plain = compare(calibrate(one, statistic="p10", cache_terms=False), one).summary["mape_held_out_ge_64KiB_pct"]
    assert 1.5 * physical < plain
