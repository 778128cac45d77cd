"""nccl-tests and OSU logs: exact values parsed, known α, β recovered, bad files refused in one line, the CLI."""

from __future__ import annotations

import json

import pytest
from foreign_logs import nccl_log, osu_log

from simulator.cli import main
from simulator.network.profile import load_profile
from validation import calibrate, compare
from validation.calibrate import features
from validation.foreign import LogError, detect, read_any
from validation.records import read_measurements

SAMPLE_NCCL = """\
# nccl-tests version 2.17.6 nccl-headers=22603 nccl-library=22603
# Collective test starting: all_reduce_perf
# nThread 1 nGpus 2 minBytes 1024 maxBytes 4096 step: 2(factor) warmup iters: 5 iters: 20 agg iters: 1 validation: 1 graph: 0
#
# Using devices
#  Rank  0 Group  0 Pid  31337 on     node-a device  0 [0000:18:00] NVIDIA H100 80GB HBM3
#  Rank  1 Group  0 Pid  31337 on     node-a device  1 [0000:2a:00] NVIDIA H100 80GB HBM3
#
#                                                              out-of-place                       in-place          
#       size         count      type   redop    root     time   algbw   busbw #wrong     time   algbw   busbw #wrong
#        (B)    (elements)                               (us)  (GB/s)  (GB/s)            (us)  (GB/s)  (GB/s)       
        1024           256     float     sum      -1    10.50    0.10    0.10      0    10.20    0.10    0.10      0
        2048           512     float     sum      -1    11.00    0.19    0.19      0    10.90    0.19    0.19      0
        4096          1024     float     sum      -1    123.4    0.03    0.03      0    12346    0.00    0.00      0
# Out of bounds values : 0 OK
# Avg bus bandwidth    : 0.0733 
#
"""  # noqa: E501, W291 (the tool's own line lengths and padding)

SAMPLE_OSU = """\
# OSU MPI Allreduce Latency Test v7.3
# Datatype: MPI_FLOAT.
# Size       Avg Latency(us)   Min Latency(us)   Max Latency(us)  Iterations
4                       1.52              1.40              1.64        1000
8                       1.55              1.42              1.68        1000
1048576               310.25            305.10            315.40         100
"""

ALPHA, BETA, GAMMA = 8e-6, 2.5e-11, 1.0e-11  # s/step, s/B moved, s/B reduced


def _model(algorithm: str, ranks: int, collective: str = "allreduce"):
    def seconds(n: int) -> float:
        steps, moved, reduced = features(algorithm, ranks, n, collective)[:3]
        return ALPHA * steps + BETA * moved + GAMMA * reduced
    return seconds


def _write(tmp_path, text, name="run.log"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- exact values -------------------------------------------------------------------------


def test_nccl_tests_sample_parses_to_exact_rows(tmp_path):
    m = read_any(_write(tmp_path, SAMPLE_NCCL))
    got = [(r.device, r.algorithm, r.collective, r.ranks, r.size_bytes, r.dtype, r.repetition, r.seconds, r.source)
           for r in m.rows]
    assert got == [("cuda", "nccl", "allreduce", 2, 1024, "float32", 0, pytest.approx(10.50e-6), "nccl-tests"),
                   ("cuda", "nccl", "allreduce", 2, 1024, "float32", 1, pytest.approx(10.20e-6), "nccl-tests"),
                   ("cuda", "nccl", "allreduce", 2, 2048, "float32", 0, pytest.approx(11.00e-6), "nccl-tests"),
                   ("cuda", "nccl", "allreduce", 2, 2048, "float32", 1, pytest.approx(10.90e-6), "nccl-tests"),
                   ("cuda", "nccl", "allreduce", 2, 4096, "float32", 0, pytest.approx(123.4e-6), "nccl-tests"),
                   ("cuda", "nccl", "allreduce", 2, 4096, "float32", 1, pytest.approx(12346e-6), "nccl-tests")]
    info = m.provenance["nccl_tests"]
    assert info["version"] == "2.17.6" and info["sections"][0]["gpus"] == ["NVIDIA H100 80GB HBM3"]


def test_the_rank_count_comes_from_the_rank_lines_in_any_g_t_layout(tmp_path):
    # 16 ranks as 2 processes x -g 8, and as 16 processes x -g 1: the same 16 ranks
    for gpus in (8, 1):
        m = read_any(_write(tmp_path, nccl_log(_model("ring", 16), ranks=16, gpus=gpus)))
        assert {r.ranks for r in m.rows} == {16}
        assert m.provenance["nccl_tests"]["sections"][0]["hosts"] == 16 // 8 if gpus == 8 else 16
    # no Rank lines at all: one process, nThread x nGpus ranks
    text = "\n".join(line for line in nccl_log(_model("ring", 8)).splitlines() if "Rank" not in line) + "\n"
    assert {r.ranks for r in read_any(_write(tmp_path, text)).rows} == {8}


def test_the_collective_is_named_by_the_log_or_read_from_the_table(tmp_path):
    for collective in ("allgather", "reduce_scatter", "broadcast", "alltoall"):
        log = nccl_log(_model("ring" if collective != "broadcast" else "binomial_tree", 8, collective)
                       if collective not in ("alltoall",) else (lambda n: 1e-3), collective=collective)
        assert {r.collective for r in read_any(_write(tmp_path, log)).rows} == {collective}
    # unnamed: reduce_scatter (size = count x 4 B x ranks) and broadcast (root 0, no redop) are told by the table
    for collective in ("reduce_scatter", "allreduce", "broadcast"):
        log = nccl_log(lambda n: 1e-3, collective=collective, named=False)
        assert {r.collective for r in read_any(_write(tmp_path, log)).rows} == {collective}
    # allgather and alltoall look alike: refused without a name, one line naming the row
    with pytest.raises(LogError, match=r"run\.log: line 17: the log does not name its test.*--collective"):
        read_any(_write(tmp_path, nccl_log(lambda n: 1e-3, collective="allgather", named=False)))
    assert {r.collective for r in read_any(_write(tmp_path, nccl_log(
        lambda n: 1e-3, collective="allgather", named=False)), collective="allgather").rows} == {"allgather"}


def test_osu_samples_parse_to_exact_rows(tmp_path):
    m = read_any(_write(tmp_path, SAMPLE_OSU), ranks=4)
    got = [(r.device, r.algorithm, r.collective, r.ranks, r.size_bytes, r.dtype, r.repetition, r.seconds, r.source)
           for r in m.rows]
    assert got == [("cpu", "mpi", "allreduce", 4, 4, "float32", 0, pytest.approx(1.52e-6), "osu"),
                   ("cpu", "mpi", "allreduce", 4, 8, "float32", 0, pytest.approx(1.55e-6), "osu"),
                   ("cpu", "mpi", "allreduce", 4, 1048576, "float32", 0, pytest.approx(310.25e-6), "osu")]
    # osu_allgather: OSU's size is each rank's part; trainsim's allgather buffer holds all four
    gather = read_any(_write(tmp_path, osu_log(lambda n: 2.0, test="allgather", sizes=(8,))), ranks=4)
    assert [(r.collective, r.size_bytes, r.dtype, r.seconds) for r in gather.rows] == [
        ("allgather", 32, "int8", pytest.approx(2e-6))]
    # point to point: a 2-rank broadcast of one message; bandwidth in MB/s becomes seconds per message
    lat = read_any(_write(tmp_path, osu_log(lambda n: 0.25, test="latency", sizes=(1, 8))))
    assert [(r.collective, r.ranks, r.size_bytes, r.seconds) for r in lat.rows] == [
        ("broadcast", 2, 1, pytest.approx(0.25e-6)), ("broadcast", 2, 8, pytest.approx(0.25e-6))]
    bw = read_any(_write(tmp_path, osu_log(lambda n: 1000.0, test="bw", sizes=(1 << 20,))))
    assert bw.rows[0].seconds == pytest.approx((1 << 20) / 1e9)
    bibw = read_any(_write(tmp_path, osu_log(lambda n: 1000.0, test="bibw", sizes=(1 << 20,))))
    assert bibw.rows[0].seconds == pytest.approx(2 * (1 << 20) / 1e9)


def test_the_format_is_detected_from_the_content_not_the_name(tmp_path):
    assert detect(SAMPLE_NCCL) == "nccl-tests" and detect(SAMPLE_OSU) == "osu"
    assert read_any(_write(tmp_path, SAMPLE_NCCL, "measurements.csv")).rows[0].source == "nccl-tests"
    csv_path = tmp_path / "x"
    read_any(_write(tmp_path, SAMPLE_NCCL)).write(tmp_path, "x")  # foreign rows round-trip through the CSV
    assert read_measurements(csv_path).rows == read_any(_write(tmp_path, SAMPLE_NCCL)).rows


# --- fitting recovers the truth -----------------------------------------------------------------


@pytest.mark.parametrize("collective", ["allreduce", "allgather"])
def test_a_synthetic_nccl_log_recovers_alpha_and_beta_within_1_percent(tmp_path, collective):
    # ring: allreduce reduces half of what it moves (R = M/2), so gamma folds into beta: beta + gamma/2;
    # ring allgather reduces nothing, so beta alone
    log = nccl_log(_model("ring", 8, collective), collective=collective)
    profile = calibrate(read_any(_write(tmp_path, log)), holdout="none", max_regimes=1)
    (r,) = profile.regimes
    beta = BETA + GAMMA / 2 if collective == "allreduce" else BETA
    assert r.alpha_s == pytest.approx(ALPHA, rel=0.01)
    assert r.beta_s_per_byte == pytest.approx(beta, rel=0.01)
    assert r.gamma_s_per_byte == 0 and "gamma" in r.fixed
    assert profile.fit["implementation"] == "nccl-tests" and profile.fit["model_algorithm"] == "ring"
    assert profile.name == f"nccl-tests-{collective}"


def test_a_synthetic_osu_log_recovers_alpha_and_beta_within_1_percent(tmp_path):
    sizes = [4 << (2 * k) for k in range(10)]
    log = osu_log(lambda n: _model("ring", 4)(n) * 1e6, sizes=sizes, full=True)
    (r,) = calibrate(read_any(_write(tmp_path, log), ranks=4), holdout="none", max_regimes=1).regimes
    assert r.alpha_s == pytest.approx(ALPHA, rel=0.01)
    assert r.beta_s_per_byte == pytest.approx(BETA + GAMMA / 2, rel=0.01)


def test_two_logs_concatenated_hold_out_a_rank_count(tmp_path):
    log = nccl_log(_model("ring", 2), ranks=2, gpus=2) + nccl_log(_model("ring", 8), ranks=8)
    data = read_any(_write(tmp_path, log))
    profile = calibrate(data, holdout="ranks", max_regimes=1)
    assert profile.fit["ranks"] == [2] and profile.fit["held_out_ranks"] == [8]
    c = compare(profile, data)
    held = [r for r in c.rows if r["held_out"]]
    assert {r["ranks"] for r in held} == {8} and {r["held_out_by"] for r in held} == {"ranks"}
    assert c.summary["mape_held_out_pct"] < 1.0  # the model is exact: fit 2 ranks, predict 8


# --- bad files: one line naming the file and line ------------------------------------------------


def _lines(text: str, keep: int) -> str:
    return "\n".join(text.splitlines()[:keep]) + "\n"


@pytest.mark.parametrize("text, ranks, message", [
    (_lines(SAMPLE_NCCL, 13), None, r"line 13: truncated: the table that starts at line 10 has no '# Avg bus"),
    (_lines(SAMPLE_NCCL, 12)[:-30] + "\n# Avg bus bandwidth    : 0.1\n", None, r"line 12: expected 13 columns"),
    (_lines(SAMPLE_NCCL, 8), None, r"line 8: truncated: the run that starts at line 3 has no results table"),
    (SAMPLE_NCCL.replace("      0    10.20", "      3    10.20"), None, r"line 12: nccl-tests reported wrong"),
    (SAMPLE_NCCL, 4, r"line 3: --ranks 4 disagrees with the log, which lists 2 ranks"),
    (SAMPLE_NCCL.replace("all_reduce_perf", "sendrecv_perf"), None, r"line 3: sendrecv_perf: trainsim has no model"),
    (SAMPLE_OSU, None, r"line 1: OSU logs do not record the number of ranks; pass --ranks N"),
    (SAMPLE_OSU[:-12], 4, r"line 6: expected 5 columns"),
    (_lines(SAMPLE_OSU, 3), 4, r"line 3: truncated: the OSU Allreduce Latency Test has no results"),
    ("# OSU MPI Put Latency Test v7.3\n# Size  Latency (us)\n1  1.0\n", 2, r"line 1: OSU Put Latency Test: trainsim"),
    ("hello: world\nsize: 3\n", None, r"line 1: not a measurements.csv, an nccl-tests log or an OSU"),
])
def test_a_truncated_or_foreign_file_is_one_line_naming_the_line(tmp_path, text, ranks, message):
    with pytest.raises(LogError, match=message) as e:
        read_any(_write(tmp_path, text), ranks=ranks)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(tmp_path / "run.log"))


# --- the CLI end to end -------------------------------------------------------------------------


def test_calibrate_an_nccl_log_then_compare(tmp_path, capsys):
    log = _write(tmp_path, nccl_log(_model("ring", 8), sizes=[4096 << k for k in range(15)]), "nccl.log")
    assert main(["calibrate", str(log), "--out", str(tmp_path / "p.yaml")]) == 0
    profile = load_profile(tmp_path / "p.yaml")
    assert profile.fit["sources"] == ["nccl-tests"] and profile.fit["holdout"] == "sizes"
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "p.yaml"), str(log), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["held_out_points"] == 7 and summary["mape_held_out_pct"] < 1.0
    assert summary["by_holdout"][0]["held_out_by"] == "sizes"
    assert main(["compare", str(tmp_path / "p.yaml"), str(log)]) == 0
    out = capsys.readouterr().out
    assert "nccl (vs ring)" in out and "held out by size" in out


def test_osu_on_the_command_line_needs_ranks(tmp_path, capsys):
    log = _write(tmp_path, osu_log(lambda n: _model("ring", 4)(n) * 1e6, sizes=[4 << k for k in range(12)]))
    assert main(["calibrate", str(log), "--out", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 1: OSU logs do not record the number of ranks" in err
    assert main(["calibrate", str(log), "--ranks", "4", "--out", str(tmp_path / "p.yaml")]) == 0
    assert load_profile(tmp_path / "p.yaml").fit["implementation"] == "osu"


def test_a_bad_log_on_the_command_line_is_one_line_exit_2(tmp_path, capsys):
    log = _write(tmp_path, _lines(SAMPLE_NCCL, 13))
    assert main(["calibrate", str(log), "--out", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.log: line 13: truncated" in err and "Traceback" not in err
