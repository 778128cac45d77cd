"""Measurements from other implementations: nccl-tests and OSU micro-benchmark logs.

A user with a real cluster already has these logs; :func:`read_any` turns one into the same
:class:`~validation.records.Measurements` records ``trainsim validate`` writes, so
``trainsim calibrate LOG`` and ``trainsim compare PROFILE LOG`` work on them unchanged.
The format is detected from the content, never from the file name:

nccl-tests (``all_reduce_perf``, ``all_gather_perf``, ``reduce_scatter_perf``, ``broadcast_perf``,
``reduce_perf``, ``alltoall_perf``; any ``-t``/``-g`` layout)
    The ``# nThread ... nGpus ...`` header, one ``#  Rank  r Group g Pid ... device d [bus] NAME``
    line per rank (the rank count is the number of distinct ranks listed, else ``nThread × nGpus``),
    the column header ``#  size  count  type  redop  root  time  algbw  busbw  #wrong  time ...``
    (older versions have no ``root`` column and call ``#wrong`` ``error``), one row per size and
    ``# Avg bus bandwidth`` at the end. ``size`` is the collective's buffer in trainsim's sense
    (allgather: the gathered buffer), times are µs. The out-of-place and in-place times become
    repetitions 0 and 1 of one point. The collective comes from ``# Collective test starting:
    X_perf`` or a ``X_perf`` command line in the log; failing that, from the table (``root`` and
    ``redop``) where that is unambiguous. Several logs concatenated are several sections.
OSU micro-benchmarks (``osu_allreduce``, ``osu_allgather``, ``osu_reduce_scatter``, ``osu_bcast``,
``osu_reduce``, ``osu_alltoall``, ``osu_latency``, ``osu_bw``, ``osu_bibw``)
    ``# OSU MPI Allreduce Latency Test v7.x``, optional ``# Datatype: MPI_FLOAT.``, the column
    header ``# Size  Avg Latency(us) [Min Latency(us)  Max Latency(us)  Iterations]`` (osu_latency:
    ``Latency (us)``; osu_bw/osu_bibw: ``Bandwidth (MB/s)``) and one row per size. OSU logs do not
    record the rank count: collectives need ``ranks`` (``--ranks N``). Point-to-point tests are
    2 ranks, read as a 2-rank broadcast (one message of ``n`` bytes: one step, ``n`` bytes moved):
    osu_latency's one-way latency directly, osu_bw as ``n / bandwidth`` per message and osu_bibw as
    ``2 n / bandwidth`` per exchange (its bandwidth counts both directions).

Rows get ``source`` ``nccl-tests`` or ``osu`` and ``algorithm`` ``nccl`` or ``mpi``: the library
picks its own algorithm. Calibration fits them with the schedule of :data:`MODEL_ALGORITHMS`
(ring for allreduce, allgather and reduce_scatter), and ``compare`` predicts them with the
fastest fitted algorithm, as for the MPI reference.

A file that is neither, is truncated (a table without ``# Avg bus bandwidth``, a short row) or
reports wrong results raises :class:`LogError`, one line naming the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .records import FOREIGN, Measurement, MeasurementError, Measurements, read_measurements, read_text

__all__ = ["MODEL_ALGORITHMS", "LogError", "detect", "model_algorithm", "read_any", "read_log"]

#: the schedule trainsim fits a foreign implementation's measurements with, per collective
MODEL_ALGORITHMS = {"allreduce": "ring", "allgather": "ring", "reduce_scatter": "ring",
                    "broadcast": "binomial_tree", "reduce": "binomial_tree", "alltoall": "pairwise"}

NCCL_TESTS = {"all_reduce": "allreduce", "all_gather": "allgather", "reduce_scatter": "reduce_scatter",
              "broadcast": "broadcast", "reduce": "reduce", "alltoall": "alltoall"}
NCCL_TYPES = {"float": "float32", "half": "float16", "double": "float64", "int8": "int8", "uint8": "uint8",
              "int32": "int32", "uint32": "uint32", "int64": "int64", "uint64": "uint64", "bfloat16": "bfloat16"}
#: OSU test title -> (collective, what the value column is, bytes of trainsim's buffer per OSU size)
OSU_TESTS = {"allreduce latency": "allreduce", "allgather latency": "allgather",
             "reduce_scatter latency": "reduce_scatter", "broadcast latency": "broadcast",
             "reduce latency": "reduce", "all-to-all personalized exchange latency": "alltoall",
             "alltoall latency": "alltoall", "latency": "p2p", "bandwidth": "p2p",
             "bi-directional bandwidth": "p2p"}
OSU_TYPES = {"MPI_CHAR": "int8", "MPI_SIGNED_CHAR": "int8", "MPI_UNSIGNED_CHAR": "uint8", "MPI_INT": "int32",
             "MPI_FLOAT": "float32", "MPI_DOUBLE": "float64", "MPI_LONG": "int64"}


class LogError(MeasurementError):
    """A benchmark log that cannot be read: one line naming the file, the line and what was expected."""


def model_algorithm(collective: str) -> str:
    """The schedule a foreign implementation's ``collective`` is fitted and predicted with."""
    return MODEL_ALGORITHMS[collective]


def detect(text: str) -> str | None:
    """``"nccl-tests"``, ``"osu"``, ``"csv"`` (a measurements.csv) or None, from the content."""
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            body = s.lstrip("#").strip()
            if re.match(r"OSU\b", body):
                return "osu"
            if (body.startswith(("nThread ", "nccl-tests version", "rccl-tests version", "Collective test starting"))
                    or ("algbw" in body and "busbw" in body)):
                return "nccl-tests"
        elif s.startswith("device,") or s.split(",")[0].strip() in ("device", "algorithm"):
            return "csv"
    return None


def read_any(path: str | Path, ranks: int | None = None, collective: str | None = None) -> Measurements:
    """A ``measurements.csv``, an nccl-tests log or an OSU log, whichever the content is."""
    path = Path(path)
    text = read_text(path)
    kind = detect(text)
    if kind in (None, "csv"):
        if kind is None and text.strip() and "," not in text.strip().splitlines()[0]:
            first = next(i for i, line in enumerate(text.splitlines(), 1) if line.strip())
            raise LogError(f"{path}: line {first}: not a measurements.csv, an nccl-tests log or an OSU "
                           f"micro-benchmark log (expected a CSV header, '# nThread ...' or '# OSU MPI ... Test')")
        return read_measurements(path)
    return read_log(path, ranks, collective, text=text)


def read_log(path: str | Path, ranks: int | None = None, collective: str | None = None, *,
             text: str | None = None) -> Measurements:
    """Parse an nccl-tests or OSU log (see the module docstring); ``ranks`` where the log does not say."""
    path = Path(path)
    text = path.read_text() if text is None else text
    kind = detect(text)
    if kind == "nccl-tests":
        return _Nccl(path, ranks, collective).parse(text)
    if kind == "osu":
        return _Osu(path, ranks).parse(text)
    raise LogError(f"{path}: line 1: not an nccl-tests or OSU micro-benchmark log")


def _itemsize(dtype: str) -> int | None:
    try:
        return np.dtype(dtype).itemsize
    except TypeError:
        return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


# --- nccl-tests ------------------------------------------------------------------------


@dataclass
class _Section:
    start: int
    threads_gpus: int | None = None
    ranks: set[int] = field(default_factory=set)
    gpus: set[str] = field(default_factory=set)
    hosts: set[str] = field(default_factory=set)
    name: str | None = None
    columns: list[str] | None = None
    header_line: int = 0
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    done: bool = False


_RANK = re.compile(r"^#\s*Rank\s+(\d+)\s+Group\s+\d+\s+Pid\s+\d+\s+on\s+(\S+)\s+device\s+\d+\s+\[[^\]]*\]\s*(.*)$")
_PERF = re.compile(r"\b([a-z_]+)_perf(?:_mpi)?\b")


class _Nccl:
    def __init__(self, path: Path, ranks: int | None, collective: str | None):
        self.path, self.ranks, self.collective = path, ranks, collective

    def error(self, line: int, message: str) -> LogError:
        return LogError(f"{self.path}: line {line}: {message}")

    def parse(self, text: str) -> Measurements:
        self.sections: list[_Section] = []
        self.name: str | None = None  # a command line or 'Collective test starting' seen before the header
        self.version: str | None = None
        lines = text.splitlines()
        for i, raw in enumerate(lines, 1):
            self.line(i, raw.strip())
        if not self.sections:
            raise self.error(1, "no '# nThread ... nGpus ...' header: not a complete nccl-tests log")
        rows: list[Measurement] = []
        info: dict[str, Any] = {"version": self.version, "sections": []}
        for sec in self.sections:
            self.complete(sec, len(lines))
            rows += self.section(sec)
            info["sections"].append({"line": sec.start, "collective": rows[-1].collective, "ranks": rows[-1].ranks,
                                     "gpus": sorted(sec.gpus), "hosts": len(sec.hosts)})
        return Measurements(rows, {"implementation": "nccl-tests", "nccl_tests": info}, self.path)

    def line(self, i: int, s: str) -> None:
        body = s.lstrip("#").strip()
        sec = self.sections[-1] if self.sections else None
        self.names(s, body, sec)
        if body.startswith("nThread "):
            sec = _Section(i, name=self.name)
            if m := re.search(r"nThread\s+(\d+)\s+nGpus\s+(\d+)", body):
                sec.threads_gpus = int(m.group(1)) * int(m.group(2))
            self.sections.append(sec)
            self.name = None
        elif sec is None:
            return
        elif m := _RANK.match(s):
            sec.ranks.add(int(m.group(1)))
            sec.hosts.add(m.group(2))
            sec.gpus.add(m.group(3).strip())
        elif s.startswith("#") and "size" in body.split() and "count" in body.split():
            sec.columns, sec.header_line = body.split(), i
        elif body.startswith("Avg bus bandwidth"):
            if sec.columns is None:
                raise self.error(i, "'# Avg bus bandwidth' without a table before it")
            sec.done = True
        elif not s.startswith("#") and sec.columns is not None and not sec.done and s[:1].isdigit():
            sec.rows.append((i, s.split()))

    def names(self, s: str, body: str, sec: _Section | None) -> None:
        """The version line, and the test's name (``X_perf``) before its table."""
        if m := re.match(r"(?:nccl|rccl)-tests version (\S+)", body):
            self.version = m.group(1)
        if m := _PERF.search(s):
            if sec is not None and not sec.done and sec.columns is None:
                sec.name = sec.name or m.group(1)
            elif sec is None or sec.done:
                self.name = m.group(1)

    def complete(self, sec: _Section, last: int) -> None:
        if sec.columns is None:
            raise self.error(last, f"truncated: the run that starts at line {sec.start} has no "
                                   f"results table ('#  size  count  type ...')")
        if not sec.done:
            raise self.error(last, f"truncated: the table that starts at line {sec.header_line} has no "
                                   f"'# Avg bus bandwidth' line after it (did the run finish?)")
        if not sec.rows:
            raise self.error(sec.header_line, "a results table without rows")

    def rank_count(self, sec: _Section) -> int:
        ranks = len(sec.ranks) or None
        if ranks is None and sec.threads_gpus is not None and sec.threads_gpus > 1 and self.ranks is None:
            ranks = sec.threads_gpus  # one process, no device lines: nThread x nGpus ranks
        if self.ranks is not None and ranks is not None and ranks != self.ranks:
            raise self.error(sec.start, f"--ranks {self.ranks} disagrees with the log, which lists {ranks} ranks")
        ranks = ranks or self.ranks
        if ranks is None or ranks < 2:
            raise self.error(sec.start, "the log does not say how many ranks ran (no '#  Rank  r ... device' lines); "
                                        "pass --ranks N")
        return ranks

    def section(self, sec: _Section) -> list[Measurement]:
        cols = sec.columns or []
        times = [j for j, c in enumerate(cols) if c == "time"]
        wrong = [j for j, c in enumerate(cols) if c in ("#wrong", "error", "wrong")]
        need = {"size", "count", "type", "redop"}
        if not need <= set(cols) or not times:
            raise self.error(sec.header_line, f"expected the nccl-tests columns size, count, type, redop, time, "
                                              f"algbw, busbw, got {' '.join(cols)}")
        ranks = self.rank_count(sec)
        out: list[Measurement] = []
        collective = None
        for line, tok in sec.rows:
            if len(tok) != len(cols):
                raise self.error(line, f"expected {len(cols)} columns ({' '.join(cols)}), got {len(tok)}: "
                                       f"truncated or not an nccl-tests row")
            row = dict(zip(cols, tok, strict=False))
            size, count = _number(row["size"]), _number(row["count"])
            if size is None or count is None or size < 0 or size != int(size):
                raise self.error(line, f"expected a whole number of bytes in 'size', got {row['size']!r}")
            if any((_number(tok[j]) or 0) > 0 for j in wrong):
                raise self.error(line, f"nccl-tests reported wrong results at {int(size)} B; "
                                       f"measurements of a wrong collective cannot be calibrated")
            if size == 0:
                continue  # -b 0: nothing moved, nothing to fit
            if collective is None:
                collective = self.which(sec, line, row, int(size), int(count), ranks)
            dtype = NCCL_TYPES.get(row["type"], row["type"])
            for rep, j in enumerate(times):
                us = _number(tok[j])
                if us is None or not us > 0:
                    raise self.error(line, f"expected a positive time in µs in column {j + 1}, got {tok[j]!r}")
                out.append(Measurement("cuda", FOREIGN["nccl-tests"], collective, ranks, int(size), dtype, rep,
                                       us * 1e-6, "nccl-tests"))
        if not out:
            raise self.error(sec.header_line, "a results table with no size above 0 B")
        return out

    def which(self, sec: _Section, line: int, row: dict[str, str], size: int, count: int, ranks: int) -> str:
        name = sec.name
        if name is not None:
            if name not in NCCL_TESTS:
                raise self.error(sec.start, f"{name}_perf: trainsim has no model of this test (expected one of "
                                            f"{', '.join(k + '_perf' for k in NCCL_TESTS)})")
            if self.collective and NCCL_TESTS[name] != self.collective:
                raise self.error(sec.start, f"--collective {self.collective} disagrees with the log ({name}_perf)")
            return NCCL_TESTS[name]
        if self.collective:
            return self.collective
        dtype = NCCL_TYPES.get(row["type"], row["type"])
        item = 2 if dtype == "bfloat16" else _itemsize(dtype)
        if item is None:
            raise self.error(line, f"unknown nccl-tests type {row['type']!r}; pass --collective")
        rooted = _number(row.get("root", "-1")) not in (None, -1)
        reduces = row["redop"] != "none"
        if rooted:
            return "reduce" if reduces else "broadcast"
        if reduces and size == count * item and size != count * item * ranks:
            return "allreduce"
        if reduces and size == count * item * ranks:
            return "reduce_scatter"
        raise self.error(line, "the log does not name its test (no '# Collective test starting: X_perf' or "
                               "X_perf command line) and the table does not tell; pass --collective")


# --- OSU micro-benchmarks ----------------------------------------------------------------


_OSU_TITLE = re.compile(r"^#\s*OSU\s+(\S+)\s+(.*?)\s+Test\b(?:\s+v(\S+))?", re.IGNORECASE)


class _Osu:
    def __init__(self, path: Path, ranks: int | None):
        self.path, self.ranks = path, ranks

    def error(self, line: int, message: str) -> LogError:
        return LogError(f"{self.path}: line {line}: {message}")

    def parse(self, text: str) -> Measurements:
        lines = text.splitlines()
        self.rows: list[Measurement] = []
        self.tests: list[dict[str, Any]] = []
        self.test: dict[str, Any] | None = None
        for i, raw in enumerate(lines, 1):
            s = raw.strip()
            if not s:
                continue
            if m := _OSU_TITLE.match(s):
                self.finish()
                title = m.group(2).strip().lower()
                if title not in OSU_TESTS:
                    raise self.error(i, f"OSU {m.group(2)} Test: trainsim reads only "
                                        f"{', '.join(sorted(OSU_TESTS))} tests")
                self.test = {"title": m.group(2), "library": m.group(1), "version": m.group(3),
                             "kind": OSU_TESTS[title], "line": i, "rows": 0, "header": 0, "columns": 0,
                             "dtype": None}
            elif self.test is None:
                continue
            elif s.startswith("#"):
                self.comment(i, s.lstrip("#").strip())
            else:
                self.data(i, s, last=i == len(lines) and not text.endswith("\n"))
        if self.test is None:
            raise self.error(1, "no '# OSU MPI ... Test' title line")
        self.finish()
        return Measurements(self.rows, {"implementation": "osu", "osu": self.tests}, self.path)

    def comment(self, i: int, body: str) -> None:
        test = self.test
        assert test is not None
        if m := re.match(r"Datatype:\s*(\w+)", body):
            test["dtype"] = OSU_TYPES.get(m.group(1), m.group(1).lower())
        elif body.split()[:1] == ["Size"]:
            names = re.split(r"\s{2,}", body)
            unit = names[1] if len(names) > 1 else body[4:].strip()
            if not re.match(r"(avg )?latency ?\(us\)|bandwidth ?\(mb/s\)", unit.lower()):
                raise self.error(i, f"expected a second column 'Avg Latency(us)', 'Latency (us)' or "
                                    f"'Bandwidth (MB/s)', got {body!r}")
            test["header"], test["unit"] = i, unit
            test["columns"] = len(names) if len(names) > 1 else 0  # 0: columns not separable, not checked

    def data(self, i: int, s: str, last: bool) -> None:
        test = self.test
        assert test is not None
        if not test["header"]:
            raise self.error(i, f"a data row before the '# Size ...' column header: {s!r}")
        tok, ncols = s.split(), test["columns"]
        if (ncols and len(tok) != ncols) or len(tok) < 2 or last:
            raise self.error(i, f"expected {ncols or 'two or more'} columns, got {s!r}: truncated or not an "
                                f"OSU row")
        size, value = _number(tok[0]), _number(tok[1])
        if size is None or size != int(size) or size < 0:
            raise self.error(i, f"expected a whole number of bytes in the Size column, got {tok[0]!r}")
        if value is None or not value > 0:
            raise self.error(i, f"expected a positive {test['unit']}, got {tok[1]!r}")
        if size > 0:
            self.rows.append(self.row(test, int(size), value, test["dtype"], i))
            test["rows"] += 1

    def finish(self) -> None:
        test = self.test
        if test is None:
            return
        if not test["header"] or not test["rows"]:
            raise self.error(test["header"] or test["line"], f"truncated: the OSU {test['title']} Test has no "
                                                             f"results (no '# Size ...' header with rows after it)")
        self.tests.append(test)

    def row(self, test: dict[str, Any], size: int, value: float, dtype: str | None, line: int) -> Measurement:
        kind, unit = test["kind"], test["unit"].lower()
        if kind == "p2p":  # one message of `size` bytes between two ranks: a 2-rank broadcast
            ranks, collective, n = 2, "broadcast", size
            if "bandwidth" in unit:
                both = "bi-directional" in test["title"].lower()
                seconds = (2 if both else 1) * size / (value * 1e6)
            else:
                seconds = value * 1e-6
            dtype = dtype or "int8"
        else:
            if self.ranks is None:
                raise self.error(test["line"], "OSU logs do not record the number of ranks; pass --ranks N "
                                               "(the -np of the run)")
            ranks, collective, seconds = self.ranks, kind, value * 1e-6
            # OSU's size is each rank's contribution; trainsim's allgather/alltoall buffer holds all of them
            n = size * ranks if kind in ("allgather", "alltoall") else size
            dtype = dtype or ("float32" if kind in ("allreduce", "reduce", "reduce_scatter") else "int8")
        if ranks < 2:
            raise self.error(line, f"--ranks: a collective needs at least 2 ranks, got {ranks}")
        device = "cuda" if re.search(r"cuda|rocm|nccl", test["library"], re.IGNORECASE) else "cpu"
        return Measurement(device, FOREIGN["osu"], collective, ranks, n, dtype, 0, seconds, "osu")
