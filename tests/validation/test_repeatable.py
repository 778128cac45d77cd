"""Measurements that repeat: pinned ranks, a shuffled seeded order per round, dispersion and drift per point."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from validation.compare import NOISY_DRIFT, compare, is_noisy
from validation.measure import _plan, flush_bytes
from validation.records import Measurement, Measurements

ROOT = Path(__file__).resolve().parents[2]
CPUS = len(os.sched_getaffinity(0))


def test_every_round_visits_every_point_once_in_its_own_seeded_order():
    plan = _plan(["ring", "recursive_doubling"], [2, 4], [4096, 65536, 1 << 20], repeats=10, rounds=3, seed=7)
    points = {(p, a, n) for p in (2, 4) for a in ("ring", "recursive_doubling") for n in (4096, 65536, 1 << 20)}
    orders = []
    for rnd in range(3):
        this = [(p, a, n) for r, p, a, n, _, _ in plan if r == rnd]
        assert sorted(this) == sorted(points) and len(this) == len(points)
        orders.append(this)
    assert len({tuple(o) for o in orders}) == 3                      # each round its own order
    assert {p for p, _, _ in orders[0][:4]} == {2, 4}                # rank counts interleaved, not one after another
    reps = Counter()
    for _, p, a, n, k, first in plan:
        assert first == reps[(p, a, n)]
        reps[(p, a, n)] += k
    assert set(reps.values()) == {10}                                 # 4 + 3 + 3 repetitions, numbered 0..9
    assert plan == _plan(["ring", "recursive_doubling"], [2, 4], [4096, 65536, 1 << 20], 10, 3, 7)
    assert plan != _plan(["ring", "recursive_doubling"], [2, 4], [4096, 65536, 1 << 20], 10, 3, 8)


def test_dispersion_and_drift_by_hand():
    # round 0 takes 1, 1, 1 ms; round 1 takes 1.2, 1.2, 1.2 ms: median 1.1 (numpy's), drift 0.2/1.1
    rows = [Measurement("cpu", "ring", "allreduce", 2, 4096, "float32", i, t, round=i // 3)
            for i, t in enumerate([1e-3] * 3 + [1.2e-3] * 3)]
    (p,) = Measurements(rows).points()
    assert p.rounds == 2 and p.seconds == pytest.approx(1.1e-3)
    assert p.drift == pytest.approx(0.2 / 1.1)
    p10, p90 = np.percentile([1e-3] * 3 + [1.2e-3] * 3, [10, 90])
    assert p.dispersion == pytest.approx((p90 - p10) / 1.1e-3)
    assert is_noisy(p) and p.drift > NOISY_DRIFT
    (quiet,) = Measurements([Measurement("cpu", "ring", "allreduce", 2, 4096, "float32", i, 1e-3, round=i % 2)
                             for i in range(6)]).points()
    assert quiet.drift == 0 and quiet.dispersion == 0 and not is_noisy(quiet)


def test_round_column_round_trips_and_old_files_without_it_read_as_round_0(tmp_path):
    rows = [Measurement("cpu", "ring", "allreduce", 2, 4096, "float32", i, 1e-3 * (1 + i), round=i) for i in range(3)]
    Measurements(rows).write(tmp_path)
    from validation.records import read_measurements

    assert [m.round for m in read_measurements(tmp_path / "measurements.csv").rows] == [0, 1, 2]
    old = tmp_path / "old.csv"
    old.write_text("device,algorithm,collective,ranks,size_bytes,dtype,repetition,seconds\n"
                   "cpu,ring,allreduce,2,4096,float32,0,1e-3\n")
    assert read_measurements(old).rows[0].round == 0


def test_noisy_points_are_flagged_and_left_out_of_the_quiet_mape():
    from validation_helpers import synthetic

    data = synthetic(ranks=(2,))
    noisy = [Measurement(m.device, m.algorithm, m.collective, m.ranks, m.size_bytes, m.dtype, m.repetition,
                         m.seconds * (1.5 if m.repetition % 2 and m.size_bytes == 1 << 20 else 1.0),
                         round=m.repetition % 2) for m in data.rows]
    from validation.calibrate import calibrate

    measured = Measurements(noisy)
    c = compare(calibrate(measured), measured)
    flagged = {(r["algorithm"], r["size_bytes"]) for r in c.rows if r["noisy"]}
    assert flagged == {("ring", 1 << 20), ("recursive_doubling", 1 << 20)}
    s = c.summary
    assert s["noisy_points"] == 2
    held_large_quiet = [r for r in c.rows if r["held_out"] and r["size_bytes"] >= 65536 and not r["noisy"]]
    assert s["held_out_points_ge_64KiB_quiet"] == len(held_large_quiet)


def test_flush_bytes_covers_the_private_caches_and_is_capped():
    caches = {"L1d": {"bytes": 48 << 10, "shared_by_cpus": 1}, "L2": {"bytes": 2 << 20, "shared_by_cpus": 1},
              "L3": {"bytes": 32 << 20, "shared_by_cpus": 8}}
    assert flush_bytes(caches) == 2 * ((48 << 10) + (2 << 20) + (4 << 20))
    assert flush_bytes({"L3": {"bytes": 480 << 20, "shared_by_cpus": 1}}) == 256 << 20
    assert flush_bytes({}) == 64 << 20


def _affinity(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


@pytest.mark.skipif(CPUS < 2, reason="pinning two ranks needs two CPUs")
def test_ranks_are_pinned_one_per_cpu_and_oversubscription_is_reported():
    import kernels
    from simulator.collectives import schedule

    cpus = sorted(os.sched_getaffinity(0))
    with kernels.executor("cpu", 2, pin=True, flush_bytes=1 << 20) as ex:
        assert ex.pinned == cpus[:2] and not ex.oversubscribed
        assert [_affinity(pid) for pid in ex.pids] == [{cpus[0]}, {cpus[1]}]
        assert len(ex.time(schedule("ring", 2, 1 << 16), repeats=2, warmup=1)) == 2   # the cold-cache sweep runs
    with kernels.executor("cpu", CPUS + 1, pin=True) as ex:
        assert ex.pinned is None and ex.oversubscribed
        assert all(_affinity(pid) == set(cpus) for pid in ex.pids)
    with pytest.raises(ValueError, match="pin: process mode only"):
        kernels.executor("cpu", 2, mode="thread", pin=True)


@pytest.mark.skipif(CPUS >= 4, reason="needs fewer than 4 CPUs for 4 ranks to be oversubscribed")
def test_validate_refuses_to_fit_oversubscribed_ranks_before_measuring(tmp_path):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"}
    res = subprocess.run([sys.executable, "-m", "simulator", "validate", "--ranks", "2,4", "--sizes", "4KiB..64KiB:x4",
                          "--out", str(tmp_path / "v")], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "4 ranks on" in res.stderr and "--allow-oversubscribed" in res.stderr and not (tmp_path / "v").exists()


def test_repetitions_the_sentinel_saw_disturbed_are_left_out_of_a_point():
    # the fastest sentinel of p=2 is 10 us; 12 us is within the gate (1.25), 30 us is not
    rows = [Measurement("cpu", "ring", "allreduce", 2, 4096, "float32", i, t, round=i // 3, sentinel_s=s)
            for i, (t, s) in enumerate([(1e-3, 10e-6), (1e-3, 12e-6), (1e-3, 10e-6), (3e-3, 30e-6), (3e-3, 30e-6)])]
    rows += [Measurement("cpu", "ring", "allreduce", 2, 65536, "float32", i, 5e-3, sentinel_s=40e-6) for i in range(3)]
    small, large = Measurements(rows).points()
    assert small.seconds == 1e-3 and small.repeats == 3 and small.disturbed == 2 and not small.slow_only
    assert small.rounds == 1 and small.drift == 0                     # the disturbed round is gone
    assert large.slow_only and large.repeats == 3 and large.seconds == 5e-3 and is_noisy(large)
    # without a sentinel (0: none timed, as in files written before it) every repetition counts
    plain = [Measurement(m.device, m.algorithm, m.collective, m.ranks, m.size_bytes, m.dtype, m.repetition,
                         m.seconds, round=m.round) for m in rows]
    assert Measurements(plain).points()[0].repeats == 5 and Measurements(plain).points()[0].disturbed == 0
    # the gate is per rank count: a 4-rank point is judged against the 4-rank sentinel
    four = [Measurement("cpu", "ring", "allreduce", 4, 4096, "float32", i, 2e-3, sentinel_s=30e-6) for i in range(3)]
    (p4,) = [p for p in Measurements(rows + four).points() if p.ranks == 4]
    assert p4.disturbed == 0 and not p4.slow_only


def test_sentinel_column_round_trips_and_a_bad_cell_is_named(tmp_path):
    from validation.records import MeasurementError, read_measurements

    rows = [Measurement("cpu", "ring", "allreduce", 2, 4096, "float32", i, 1e-3, sentinel_s=s)
            for i, s in enumerate([1e-5, 2e-5, 3e-5])]
    Measurements(rows).write(tmp_path)
    assert [m.sentinel_s for m in read_measurements(tmp_path / "measurements.csv").rows] == [1e-5, 2e-5, 3e-5]
    bad = tmp_path / "bad.csv"
    bad.write_text("device,algorithm,collective,ranks,size_bytes,dtype,repetition,seconds,sentinel_s\n"
                   "cpu,ring,allreduce,2,4096,float32,0,1e-3,-1\n")
    with pytest.raises(MeasurementError, match=r"bad.csv: line 2, column 'sentinel_s': expected sentinel seconds"):
        read_measurements(bad)


def test_measure_times_a_sentinel_next_to_every_batch_and_records_it():
    from validation.measure import ATTEMPTS, SENTINEL_REPEATS, measure

    m = measure(["ring", "recursive_doubling"], [2], [4096, 65536], repeats=4, warmup=1, rounds=2, pin=False)
    info = m.provenance["measure"]["sentinel"]
    assert info["size_bytes"] == {"2": 65536} and info["repeats"] == SENTINEL_REPEATS   # no point above 64 KiB
    batches = 2 * 2 * 2 + info["batches_measured_again"]                 # points x rounds, and the ones re-timed
    assert info["readings"] >= 2 * batches and info["batches_measured_again"] <= 8 * (ATTEMPTS - 1)
    assert len(m.rows) == 2 * batches and all(r.sentinel_s > 0 for r in m.rows)
    # a row carries the slower of the readings around its batch; the fastest may be a reading during a wait
    assert 0 < info["fastest_s"]["2"] <= min(r.sentinel_s for r in m.rows)
    off = measure(["ring"], [2], [4096, 65536], repeats=2, warmup=0, sentinel=False, pin=False)
    assert off.provenance["measure"]["sentinel"] is None and all(r.sentinel_s == 0 for r in off.rows)
    assert len(off.rows) == 4
