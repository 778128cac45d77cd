"""The physical cost terms: a per-byte cost that changes where the provenance says a cache ends is fitted there.

Truth from outside the code under test: the synthetic times below are written from the closed forms of ring and
recursive doubling on 2 ranks (steps, bytes moved, reduced, staged and each step's working set, by hand), not from
``physical_features``. The synthetic machine pays PI per byte read out of a peer's private L2 (while the working
set fits it: the fraction L2 / W of the bytes) and DELTA per byte that comes from memory because the two ranks'
working sets outgrow the shared L3 (the fraction 1 - L3 / 2W).
"""

from __future__ import annotations

import numpy as np
import pytest

from simulator.collectives import schedule
from simulator.collectives.analytic import physical_features
from simulator.network.profile import HardwareProfile
from simulator.sizes import parse_sizes
from validation.calibrate import CalibrationError, calibrate
from validation.compare import compare, predict
from validation.records import MPI, Measurement, Measurements

ALPHA, BETA, GAMMA = 4e-6, 1e-10, 2e-10
PI, DELTA = 2e-10, 3e-10   # extra s/B read out of a peer's private L2; extra s/B from memory beyond the shared L3
L3 = 32 << 20
SIZES = parse_sizes("4KiB..64MiB:x2")


def by_hand(algorithm: str, n: int, l2: int, l3: int = L3) -> float:
    """2 ranks. Ring: 2 steps moving n/2 each (one reduces); a rank's working set per step is its n-byte buffer plus
    the n/2 it receives, W = 1.5 n. Recursive doubling: 1 step, n received, staged and reduced: W = 3n, and it
    streams n moved + n staged."""
    if algorithm == "ring":
        streamed, w, t = n, 1.5 * n, 2 * ALPHA + BETA * n + GAMMA * n / 2
    else:
        streamed, w, t = 2 * n, 3 * n, ALPHA + BETA * n + GAMMA * n
    return t + PI * streamed * min(1.0, l2 / w) + DELTA * streamed * max(0.0, 1 - l3 / (2 * w))


def measurements(l2: int, noise: float = 0.003, seed: int = 3, run_id: str = "run-A", l3: int = L3) -> Measurements:
    rng = np.random.default_rng(seed)
    rows = []
    for alg in ("ring", "recursive_doubling"):
        for n in SIZES:
            t = by_hand(alg, n, l2, l3)
            rows += [Measurement("cpu", alg, "allreduce", 2, n, "float32", i, t * float(np.exp(rng.normal(0, noise))))
                     for i in range(5)]
    caches = {"L1d": {"bytes": 48 << 10, "shared_by_cpus": 1}, "L2": {"bytes": l2, "shared_by_cpus": 1},
              "L3": {"bytes": l3, "shared_by_cpus": 2}}
    return Measurements(rows, {"caches": caches, "run_id": run_id})


@pytest.mark.parametrize("l2", [1 << 20, 4 << 20])
def test_a_cache_bend_is_fitted_where_the_provenance_says_the_cache_ends(l2):
    profile = calibrate(measurements(l2), holdout="sizes")
    assert profile.caches["L2"].bytes == l2
    (r,) = profile.regimes  # one regime: the bends are the cache terms', not a BIC-searched break
    assert r.peer_s_per_byte["L2"] == pytest.approx(PI, rel=0.03)
    assert r.spill_s_per_byte["L3"] == pytest.approx(DELTA, rel=0.03)
    assert r.alpha_s == pytest.approx(ALPHA, rel=0.03) and r.beta_s_per_byte == pytest.approx(BETA, rel=0.03)
    assert r.gamma_s_per_byte == pytest.approx(GAMMA, rel=0.03)
    assert r.peer_s_per_byte.get("L1d", 0) < 0.02 * BETA   # L1d's term has no true cost
    assert r.condition_number is not None and r.condition_number < 1e6
    # ring's predicted per-byte cost falls once 1.5 n outgrows L2 (less of what the peer reads is in its L2) ...
    slope = {n: predict(profile, "ring", 2, n) / n for n in SIZES}
    fits = [n for n in SIZES if n >= 64 << 10 and 1.5 * n <= l2]
    first = next(n for n in SIZES if 1.5 * n > l2)
    assert slope[2 * first] < slope[fits[-1]] - 0.4 * PI   # a third of it left in L2 at 2 x first
    # ... and rises once 2 x 1.5 n outgrows the shared L3
    spill = next(n for n in SIZES if 3 * n > L3)
    assert slope[4 * spill] > slope[spill // 2] + 0.5 * DELTA
    held = compare(profile, measurements(l2)).summary
    assert held["mape_held_out_ge_64KiB_pct"] < 1.5


def test_without_the_cache_terms_the_same_data_fit_worse():
    data = measurements(1 << 20)
    physical = compare(calibrate(data), data).summary["mape_held_out_ge_64KiB_pct"]
    plain = compare(calibrate(data, cache_terms=False, max_regimes=1), data).summary["mape_held_out_ge_64KiB_pct"]
    assert physical < 1.5 and 5 * physical < plain


def test_the_simulator_times_a_schedule_with_the_physical_terms():
    profile = calibrate(measurements(1 << 20), holdout="none")
    for alg, n in (("ring", 512 << 10), ("ring", 4 << 20), ("recursive_doubling", 1 << 20)):
        r = profile.regime(n, alg, 2)
        f = physical_features(schedule(alg, 2, n), profile.cache_terms)
        by_terms = (r.alpha_s * f["steps"] + r.beta_s_per_byte * f["moved"] + r.gamma_s_per_byte * f["reduced"]
                    + r.sigma_s_per_byte * f["staged"]
                    + sum(d * f[f"beyond_{lvl}"] for lvl, d in r.spill_s_per_byte.items())
                    + sum(d * f[f"peer_{lvl}"] for lvl, d in r.peer_s_per_byte.items()))
        assert profile.schedule_time(schedule(alg, 2, n)) == pytest.approx(by_terms, rel=1e-12)
        assert profile.schedule_time(schedule(alg, 2, n)) == pytest.approx(by_hand(alg, n, 1 << 20), rel=0.03)


def test_physical_features_by_hand():
    caches = (("L2", 1 << 20, 1),)
    f = physical_features(schedule("recursive_doubling", 4, 1 << 16), caches)
    # 2 steps, each exchanging the whole 64 KiB buffer through a receive buffer: working set 3 x 64 KiB per step, in
    # L2, so all of the 64 KiB moved and 64 KiB staged per step are read out of the peer's L2
    assert (f["steps"], f["moved"], f["reduced"], f["staged"]) == (2, 2 << 16, 2 << 16, 2 << 16)
    assert f["peer_L2"] == 2 * (2 << 16) and "beyond_L2" not in f
    f = physical_features(schedule("recursive_doubling", 4, 1 << 19), caches)  # 3 x 512 KiB: 2/3 of it fits
    assert f["peer_L2"] == pytest.approx(2 * (2 << 19) * (2 / 3), rel=1e-12)
    f = physical_features(schedule("ring", 4, 1 << 20), (("L3", 4 << 20, 4),))
    # a shared cache: 4 ranks x (1 MiB + 256 KiB) = 5 MiB, 1/5 of it beyond 4 MiB, in each of the 6 steps of 256 KiB
    assert f["staged"] == 0 and f["beyond_L3"] == pytest.approx(6 * (1 << 18) / 5, rel=1e-12)
    assert physical_features(schedule("ring", 4, 1 << 18), (("L3", 4 << 20, 4),))["beyond_L3"] == 0


def test_a_profile_refuses_a_cache_term_of_the_wrong_kind():
    caches = {"L2": {"bytes": 1 << 20, "shared_by_cpus": 1}, "L3": {"bytes": 32 << 20, "shared_by_cpus": 2}}
    for term, level, words in (("spill_s_per_byte", "L2", "L2 is a private cache (shared_by_cpus 1); its term is "
                                                           "peer_s_per_byte"),
                               ("peer_s_per_byte", "L3", "L3 is a shared cache (shared_by_cpus 2); its term is "
                                                         "spill_s_per_byte")):
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            HardwareProfile.model_validate({"format": "trainsim-profile/1", "caches": caches, "regimes": [
                {"alpha_s": 1e-6, "beta_s_per_byte": 1e-10, term: {level: 1e-10}}]})


def test_a_profile_refuses_a_spill_term_for_a_cache_it_does_not_describe():
    with pytest.raises(ValueError, match="cache level 'L2' is not among the profile's caches"):
        HardwareProfile.model_validate({"format": "trainsim-profile/1", "regimes": [
            {"alpha_s": 1e-6, "beta_s_per_byte": 1e-10, "spill_s_per_byte": {"L2": 1e-10}}]})


def test_oversubscribed_rank_counts_are_not_fitted_unless_asked():
    data = measurements(1 << 20)
    four = Measurements([Measurement(m.device, m.algorithm, m.collective, 4, m.size_bytes, m.dtype, m.repetition,
                                     m.seconds * 3) for m in data.rows])
    both = data + four
    both.provenance = {**data.provenance, "measure": {"oversubscribed_ranks": [4]}}
    with pytest.raises(CalibrationError, match="ranks 4 ran oversubscribed.*--allow-oversubscribed"):
        calibrate(both)
    assert calibrate(both, allow_oversubscribed=True).fit["oversubscribed_ranks"] == [4]
    assert "oversubscribed_ranks" not in calibrate(both, holdout="ranks").fit  # only predicted, never fitted


def test_another_runs_measurements_are_all_held_out_by_run():
    profile = calibrate(measurements(1 << 20, run_id="run-A"))
    same = compare(profile, measurements(1 << 20, run_id="run-A")).summary
    other = compare(profile, measurements(1 << 20, seed=9, run_id="run-B")).summary
    assert same["held_out_points"] < same["points"]
    assert other["held_out_points"] == other["points"]
    assert [k["held_out_by"] for k in other["by_holdout"]][0] == "run"
    assert other["by_holdout"][0]["points"] == other["points"]


def test_an_mpi_reference_alone_is_fitted_as_that_implementation():
    rng = np.random.default_rng(5)
    rows = []
    for n in SIZES:  # MPI_Allreduce modelled as a ring: 2 steps, n moved, n/2 reduced
        t = 2 * 2e-6 + 1.5e-10 * n
        rows += [Measurement("cpu", MPI, "allreduce", 2, n, "float32", i, t * float(np.exp(rng.normal(0, 0.002))),
                             MPI) for i in range(5)]
    data = Measurements(rows, {"run_id": "mpi-run"})
    profile = calibrate(data)
    (r,) = profile.regimes
    assert profile.fit["implementation"] == MPI and profile.fit["model_algorithm"] == "ring"
    assert r.alpha_s == pytest.approx(2e-6, rel=0.01) and r.beta_s_per_byte == pytest.approx(1.5e-10, rel=0.01)
    summary = compare(profile, data).summary
    assert 0 < summary["held_out_points"] < summary["points"] and summary["mape_held_out_pct"] < 1


def test_cli_cache_size_and_statistic_are_recorded_and_bad_ones_refused(tmp_path, capsys):
    from simulator.cli import main
    from simulator.network.profile import load_profile

    data = measurements(1 << 20)
    data.write(tmp_path)
    out = tmp_path / "p.yaml"
    assert main(["calibrate", str(tmp_path / "measurements.csv"), "--out", str(out), "--cache-size", "L2=4MiB",
                 "--statistic", "p10"]) == 0
    profile = load_profile(out)
    assert profile.caches["L2"].bytes == 4 << 20 and profile.fit["cache_sizes_given"] == {"L2": 4 << 20}
    assert profile.fit["statistic"] == "p10" and profile.fit["run_id"] == "run-A"
    from validation.report import regime_rows

    (row,) = regime_rows(profile)
    assert row["cond"] != "-" and "sigma not identifiable→0" in row["fixed"]
    assert row["spill ns/B"].startswith("L3") and "L2" in row["peer ns/B"]
    capsys.readouterr()
    for bad, words in (("L2", "expected LEVEL=SIZE"), ("L2=fast", "--cache-size: "), ("L2=-1MiB", "-1MiB"),
                       ("L2=0B", "whole number")):
        assert main(["calibrate", str(tmp_path / "measurements.csv"), "--out", str(tmp_path / "q.yaml"),
                     "--cache-size", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and words in err
    assert not (tmp_path / "q.yaml").exists()


def test_cli_compare_with_another_run_reports_it_as_held_out_by_run(tmp_path, capsys):
    from simulator.cli import main

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    measurements(1 << 20, run_id="run-A").write(tmp_path / "a")
    measurements(1 << 20, seed=8, run_id="run-B").write(tmp_path / "b")
    assert main(["calibrate", str(tmp_path / "a" / "measurements.csv"), "--out", str(tmp_path / "p.yaml")]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "p.yaml"), str(tmp_path / "b" / "measurements.csv"), "--json"]) == 0
    import json

    summary = json.loads(capsys.readouterr().out)
    assert summary["held_out_points"] == summary["points"] and summary["by_holdout"][0]["held_out_by"] == "run"
    assert summary["mape_held_out_ge_64KiB_pct"] < 1.5   # the same synthetic machine, other noise


def test_a_profile_with_physical_terms_refuses_a_schedule_in_slices():
    """Its staging and spill terms are fitted on whole steps: a pipelined schedule is refused, not mis-timed."""
    from simulator.network.profile import ProfileError

    profile = calibrate(measurements(1 << 20), holdout="none")
    assert profile.regime(4 << 20, "ring", 2).physical
    with pytest.raises(ProfileError, match="pipelined in 4 slices cannot use them"):
        profile.schedule_time(schedule("ring", 2, 4 << 20, slices=4))
