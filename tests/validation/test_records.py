"""Measurement files: a round trip, and one clear line (exit 2) for every malformed file."""

from __future__ import annotations

import pytest
from validation_helpers import ONE, synthetic

from simulator.cli import main
from validation.records import MeasurementError, read_measurements

HEADER = "device,algorithm,collective,ranks,size_bytes,dtype,repetition,seconds\n"
GOOD = "cpu,ring,allreduce,2,4096,float32,0,1.5e-05\n"


def test_write_then_read_gives_the_same_rows(tmp_path):
    data = synthetic(ONE, sizes="4KiB..16KiB:x2", ranks=(2,))
    data.write(tmp_path)
    back = read_measurements(tmp_path / "measurements.csv")
    assert back.rows == data.rows
    assert back.provenance == {"synthetic": True}  # provenance.json beside the CSV is read too
    assert back.points() == data.points()


@pytest.mark.parametrize(("text", "expected"), [
    ("", "empty file (expected a CSV header with columns device, algorithm"),
    (HEADER, "no measurements (a header but no rows)"),
    (HEADER.replace(",seconds", ""), "missing column 'seconds'"),
    (HEADER.replace("dtype,", "").replace(",seconds", ""), "missing columns 'dtype', 'seconds'"),
    (HEADER + GOOD.replace("1.5e-05", "fast"), "line 2, column 'seconds': expected a positive number of seconds, "
                                               "got 'fast'"),
    (HEADER + GOOD + GOOD.replace("1.5e-05", "-1"), "line 3, column 'seconds': expected a positive number"),
    (HEADER + GOOD.replace(",4096,", ",-4096,"), "line 2, column 'size_bytes': expected a positive whole number "
                                                 "of bytes, got -4096"),
    (HEADER + GOOD.replace(",2,", ",1,"), "column 'ranks': expected a whole number of ranks >= 2, got 1"),
    (HEADER + GOOD.replace("ring", "ringg"), "column 'algorithm': expected a registered allreduce algorithm"),
    (HEADER + GOOD.replace("float32", "float33"), "column 'dtype': expected a numpy dtype name"),
    (HEADER + GOOD.replace(",0,", ",,"), "column 'repetition': expected a value, got an empty cell"),
])
def test_malformed_files_name_the_file_line_and_column(tmp_path, capsys, text, expected):
    path = tmp_path / "measurements.csv"
    path.write_text(text)
    with pytest.raises(MeasurementError) as err:
        read_measurements(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message
    # the CLI turns it into one line on stderr, exit status 2, and writes nothing
    out = tmp_path / "profile.yaml"
    assert main(["calibrate", str(path), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0 and expected.split(":")[0] in captured.err
    assert not out.exists()


def test_missing_file_and_bad_provenance(tmp_path):
    with pytest.raises(MeasurementError, match="no such measurements file"):
        read_measurements(tmp_path / "nope.csv")
    (tmp_path / "measurements.csv").write_text(HEADER + GOOD)
    (tmp_path / "provenance.json").write_text("[1, 2]")
    with pytest.raises(MeasurementError, match="provenance.json: expected a JSON object"):
        read_measurements(tmp_path / "measurements.csv")


def test_mpi_rows_are_read_but_never_fitted(tmp_path):
    from validation.calibrate import calibrate

    data = synthetic(ONE, ranks=(2, 4))
    data.write(tmp_path)
    with (tmp_path / "measurements.csv").open("a") as fh:
        fh.write("cpu,mpi,allreduce,2,4096,float32,0,9.9,mpi\n")  # absurd: would wreck a fit that used it
    back = read_measurements(tmp_path / "measurements.csv")
    assert any(m.source == "mpi" for m in back.rows)
    assert calibrate(back).regimes == calibrate(data).regimes
