"""Measurement records and the files between the validation steps.

``measurements.csv`` has one row per timed repetition:

==============  =====================================================================
column          meaning
==============  =====================================================================
device          ``cpu`` or ``cuda`` (what ran the collective)
algorithm       a registered algorithm (``ring``, ...), or ``mpi`` for the MPI reference
collective      ``allreduce``, ...
ranks           participating ranks (>= 2)
size_bytes      bytes of each rank's buffer (> 0)
dtype           element type (``float32``, ...)
repetition      0, 1, ... (warm-ups are not recorded)
seconds         wall time of that repetition (> 0)
source          ``kernels`` (trainsim's Numba kernels), ``mpi`` (MPI_Allreduce), or ``nccl-tests`` /
                ``osu`` (read from those tools' logs, algorithm ``nccl`` / ``mpi``); optional
round           the pass over all points this repetition was timed in (0, 1, ...); optional (0)
sentinel_s      the *sentinel* next to this repetition: the slower of the median of a small ring allreduce
                timed just before and just after its batch of repetitions (``validation.measure``); 0 or
                absent: none was timed; optional
==============  =====================================================================

A :class:`Point` summarises a configuration's repetitions: its *statistic* (what is fitted and
compared: the median by default; ``p10`` or ``min`` on a shared machine, where background load
only ever adds time), the 10th/90th percentiles, the *dispersion* ``(p90 - p10) / median`` and
the *drift* between rounds ``(max - min of the rounds' statistics) / statistic`` (0 with one round).
Repetitions whose sentinel was more than :data:`QUIET_GATE` times the fastest sentinel of the same
rank count and source were timed while something else slowed the whole machine down (on a shared
VM every point, in cache or not, runs 2-5x slower for seconds at a time, and the sentinel sees it
with a correlation of 0.97-0.99); a point is summarised over its other repetitions, and counts the
ones it left out (``disturbed``). A point with none left is summarised over all of them and
flagged ``slow_only``.

``provenance.json`` sits beside it (machine, library versions, git revision, command line).
:func:`read_measurements` checks every cell and raises :class:`MeasurementError` with one
line naming the file, the line and the column. :func:`atomic_folder` writes a whole output
folder into a temporary sibling and renames the files into place, so a failed step leaves
nothing half-written.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulator import collectives
from simulator.collectives.schedule import COLLECTIVES
from simulator.errors import TrainsimInputError

__all__ = [
    "COLUMNS", "FOREIGN", "QUIET_GATE", "STATISTICS", "Measurement", "MeasurementError", "Measurements", "Point",
    "atomic_folder", "check_out_folder", "read_measurements",
]

REQUIRED = ("device", "algorithm", "collective", "ranks", "size_bytes", "dtype", "repetition", "seconds")
OPTIONAL = ("source", "round", "sentinel_s")
COLUMNS = (*REQUIRED, *OPTIONAL)
MPI = "mpi"  # algorithm and source name of the MPI_Allreduce reference
#: source -> algorithm label of measurements from another implementation (``validation.foreign``)
FOREIGN = {"nccl-tests": "nccl", "osu": MPI, MPI: MPI}
#: statistic of a point's repetitions -> the percentile it is
STATISTICS = {"median": 50.0, "p10": 10.0, "min": 0.0}
#: a repetition whose sentinel took more than this times the run's fastest sentinel was disturbed
QUIET_GATE = 1.25


class MeasurementError(TrainsimInputError, ValueError):
    """A measurements file that cannot be used: names the file, line, column and what was expected."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One timed repetition of one collective."""

    device: str
    algorithm: str
    collective: str
    ranks: int
    size_bytes: int
    dtype: str
    repetition: int
    seconds: float
    source: str = "kernels"
    round: int = 0
    sentinel_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Point:
    """One measured configuration: the repetitions of (algorithm, ranks, size) summarised."""

    device: str
    algorithm: str
    collective: str
    ranks: int
    size_bytes: int
    dtype: str
    source: str
    seconds: float      # the statistic of the repetitions (median by default; what is fitted and compared)
    p10_s: float
    p90_s: float
    repeats: int
    dispersion: float = 0.0   # (p90 - p10) / median
    drift: float = 0.0        # (max - min of the per-round statistics) / statistic; 0 with one round
    rounds: int = 1
    statistic: str = "median"
    disturbed: int = 0        # repetitions left out: timed while the sentinel said the machine was slowed down
    slow_only: bool = False   # every repetition was disturbed (then all of them are summarised)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.algorithm, self.ranks, self.size_bytes)


@dataclass
class Measurements:
    """Repetitions plus the provenance of the run that measured them."""

    rows: list[Measurement]
    provenance: dict[str, Any] = field(default_factory=dict)
    source_path: Path | None = None

    def points(self, statistic: str = "median") -> list[Point]:
        """``statistic`` (:data:`STATISTICS`) and 10th/90th percentiles per configuration, sorted by (source,
        algorithm, ranks, size)."""
        if statistic not in STATISTICS:
            raise MeasurementError(f"--statistic: expected one of {', '.join(STATISTICS)}, got {statistic!r}")
        q = STATISTICS[statistic]
        fastest: dict[tuple, float] = {}
        for m in self.rows:
            if m.sentinel_s > 0:
                k = (m.device, m.ranks, m.source)
                fastest[k] = min(fastest.get(k, math.inf), m.sentinel_s)
        groups: dict[tuple, list[Measurement]] = {}
        for m in self.rows:
            key = (m.device, m.algorithm, m.collective, m.ranks, m.size_bytes, m.dtype, m.source)
            groups.setdefault(key, []).append(m)
        out = []
        for key, reps in groups.items():
            gate = QUIET_GATE * fastest.get((key[0], key[3], key[6]), math.inf)
            quiet = [m for m in reps if not m.sentinel_s or m.sentinel_s <= gate]
            used = quiet or reps
            t = np.asarray([m.seconds for m in used])
            p10, med, p90, value = np.percentile(t, [10, 50, 90, q])
            rounds = sorted({m.round for m in used})
            per_round = [float(np.percentile([m.seconds for m in used if m.round == k], q)) for k in rounds]
            out.append(Point(*key, float(value), float(p10), float(p90), len(t), float((p90 - p10) / med),
                             float((max(per_round) - min(per_round)) / value), len(rounds), statistic,
                             len(reps) - len(quiet) if quiet else 0, not quiet))
        return sorted(out, key=lambda p: (p.source, p.algorithm, p.ranks, p.size_bytes))

    def write(self, folder: Path, name: str = "measurements.csv", provenance: str | None = "provenance.json") -> None:
        """Write the CSV (one row per repetition) and, unless ``provenance`` is None, the provenance JSON."""
        with (folder / name).open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(COLUMNS)
            w.writerows(tuple(asdict(m).values()) for m in self.rows)
        if provenance:
            (folder / provenance).write_text(json.dumps(self.provenance, indent=2, sort_keys=True) + "\n")

    def __add__(self, other: Measurements) -> Measurements:
        return Measurements(self.rows + other.rows, {**other.provenance, **self.provenance})


# --- reading ---------------------------------------------------------------------------


def _whole(text: str, lowest: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected {what}, got {text!r}") from None
    if value < lowest:
        raise ValueError(f"expected {what}, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a positive number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive number of seconds, got {text!r}")
    return value


def _sentinel(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected sentinel seconds >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected sentinel seconds >= 0, got {text!r}")
    return value


def _dtype(text: str) -> str:
    try:
        return np.dtype(text).name
    except TypeError:
        raise ValueError(f"expected a numpy dtype name like float32, got {text!r}") from None


_PARSE = {
    "ranks": lambda s: _whole(s, 2, "a whole number of ranks >= 2"),
    "size_bytes": lambda s: _whole(s, 1, "a positive whole number of bytes"),
    "repetition": lambda s: _whole(s, 0, "a repetition index >= 0"),
    "round": lambda s: _whole(s, 0, "a round index >= 0"),
    "seconds": _seconds,
    "sentinel_s": _sentinel,
    "dtype": _dtype,
}


def _parse_row(row: dict[str, str | None]) -> Measurement:
    values: dict[str, Any] = {}
    for col in COLUMNS:
        text = (row.get(col) or "").strip()
        if not text:
            if col in OPTIONAL:
                continue
            raise _CellError(col, "expected a value, got an empty cell")
        try:
            values[col] = _PARSE[col](text) if col in _PARSE else text
        except ValueError as e:
            raise _CellError(col, str(e)) from None
    m = Measurement(**values)
    if m.source in FOREIGN and m.algorithm != FOREIGN[m.source]:
        raise _CellError("algorithm", f"expected {FOREIGN[m.source]} for source {m.source}, got {m.algorithm!r}")
    if m.source != MPI and m.source not in FOREIGN and (m.collective, m.algorithm) not in collectives.ALGORITHMS:
        known = ", ".join(collectives.algorithms(m.collective)) if m.collective in COLLECTIVES else ""
        raise _CellError("algorithm", f"expected a registered {m.collective} algorithm ({known}) "
                                      f"or source {MPI}, got {m.algorithm!r}")
    return m


class _CellError(Exception):
    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column, self.message = column, message


def read_text(path: Path) -> str:
    """A measurements file or log as text; missing or unreadable → one :class:`MeasurementError` line."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise MeasurementError(f"{path}: no such measurements file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MeasurementError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def read_measurements(path: str | Path) -> Measurements:
    """Read ``measurements.csv`` (and ``provenance.json`` beside it, when present).

    Raises
    ------
    MeasurementError
        ``PATH: line N, column 'seconds': expected a positive number of seconds, got 'abc'``
        and the like: a missing file or column, an empty file, a bad cell.
    """
    path = Path(path)
    text = read_text(path)
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    if not header:
        raise MeasurementError(f"{path}: empty file (expected a CSV header with columns {', '.join(REQUIRED)})")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise MeasurementError(f"{path}: missing column{'s' if len(missing) > 1 else ''} "
                               f"{', '.join(map(repr, missing))} (expected columns {', '.join(REQUIRED)})")
    reader.fieldnames = header
    rows = []
    for row in reader:
        try:
            rows.append(_parse_row(row))
        except _CellError as e:
            raise MeasurementError(f"{path}: line {reader.line_num}, column {e.column!r}: {e.message}") from None
    if not rows:
        raise MeasurementError(f"{path}: no measurements (a header but no rows)")
    return Measurements(rows, _read_provenance(path.with_name("provenance.json")), path)


def _read_provenance(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MeasurementError(f"{path}: expected a JSON object of provenance facts ({e})") from None
    if not isinstance(data, dict):
        raise MeasurementError(f"{path}: expected a JSON object of provenance facts, got {type(data).__name__}")
    return data


def uniform(points: Iterable[Point], attr: str, where: str) -> str:
    """The one value of ``attr`` shared by all points (calibration fits one device/dtype/collective)."""
    values = sorted({getattr(p, attr) for p in points})
    if len(values) != 1:
        raise MeasurementError(f"{where}: the measurements mix several {attr} values ({', '.join(map(str, values))});"
                               f" calibrate one at a time")
    return values[0]


# --- writing ---------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out``; on success its files replace those in ``out``.

    On an exception nothing in ``out`` changes and the temporary folder is removed.
    """
    out = Path(out)
    check_out_folder(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as e:
        raise TrainsimInputError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    try:
        yield tmp
        try:
            out.mkdir(exist_ok=True)
            for item in tmp.iterdir():
                target = out / item.name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                os.replace(item, target)
        except OSError as e:
            raise TrainsimInputError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: what validate / compare write: a folder with one is ours
OUTPUTS = ("measurements.csv", "comparison.csv", "profile.yaml", "summary.json", "predicted_vs_measured.png",
           "reference_mpi.csv", "provenance.json", "profile_mpi.yaml")


def check_out_folder(out: str | Path) -> None:
    """An output folder: not a file, its parent exists or can be made and is writable; else one line.

    Called before any work, so a bad ``--out`` is refused before minutes of measuring.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TrainsimInputError(f"--out {out}: is a file; expected a folder")
    if out.is_dir() and any(out.iterdir()) and not any((out / name).exists() for name in OUTPUTS):
        raise TrainsimInputError(f"--out {out}: holds other files and no previous validation output; choose an "
                                 "empty or new folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainsimInputError(f"--out {out}: cannot create its folder ({e.strerror or e})") from None
    if not os.access(out.parent, os.W_OK) or (out.is_dir() and not os.access(out, os.W_OK)):
        raise TrainsimInputError(f"--out {out}: not writable")
