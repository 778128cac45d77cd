"""Record types, the run summary, and writers (json, csv, Perfetto trace, PNG plots).

The engine appends ``IterationRecord``s and trace spans to plain lists; this
module turns them into ``Result.summary`` and files. Writers build the whole
output in a temporary folder and rename it into place, so a failed run leaves
nothing half-written. Wall-clock facts go to ``run_info.json``, never into the
summary, so one seed gives byte-identical ``summary.json``.
"""

from __future__ import annotations

import csv
import json
import math
import operator
import os
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import TrainsimInputError

__all__ = ["IterationRecord", "Result", "Trace", "summarize"]


@dataclass(frozen=True, slots=True)
class IterationRecord:
    """One worker's iteration (seconds of simulated time)."""

    rank: int
    iteration: int
    start_s: float
    compute_s: float          # forward + backward + optimizer, after slowdowns
    comm_exposed_s: float     # waiting on gradient communication after backward
    wait_s: float             # waiting for slower peers (BSP barrier)
    end_s: float


_NAMED_TRACKS = 1_000_000  # thread ids of named tracks ("gradient allreduce"), clear of any rank


@dataclass
class Trace:
    """Chrome/Perfetto trace events ("X" complete events, microsecond timestamps)."""

    ranks: frozenset[int]
    events: list[dict[str, Any]] = field(default_factory=list)
    tracks: dict[str, int] = field(default_factory=dict)

    def traced(self, rank: int) -> bool:
        return rank in self.ranks

    def span(self, name: str, track: int | str, start: float, end: float, **args: Any) -> None:
        """Record ``name`` on ``track`` (a worker rank, or a named track like "comm")."""
        tid = track if isinstance(track, int) else self._named(track)
        ev = {"name": name, "ph": "X", "pid": 0, "tid": tid, "ts": start * 1e6, "dur": (end - start) * 1e6}
        if args:
            ev["args"] = args
        self.events.append(ev)

    def _named(self, track: str) -> int:
        tid = self.tracks.get(track)
        if tid is None:
            tid = self.tracks[track] = _NAMED_TRACKS + len(self.tracks)
            self._label(tid, track, sort_index=-1 - len(self.tracks))
        return tid

    def _label(self, tid: int, label: str, sort_index: int | None = None) -> None:
        self.events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": tid, "args": {"name": label}})
        self.events.append({"name": "thread_sort_index", "ph": "M", "pid": 0, "tid": tid,
                            "args": {"sort_index": tid if sort_index is None else sort_index}})

    def label_process(self, text: str) -> None:
        """A line about the whole run, shown on the process in Perfetto (``process_labels`` metadata)."""
        self.events.append({"name": "process_labels", "ph": "M", "pid": 0, "args": {"labels": text}})

    def label_ranks(self, labels: dict[int, str] | None = None) -> None:
        """Name each traced rank's track (``labels[rank]``, default "worker <rank>")."""
        for rank in sorted(self.ranks):
            self._label(rank, (labels or {}).get(rank, f"worker {rank}"))


def _iteration_ends(records: list[IterationRecord], iterations: int) -> np.ndarray:
    ends = np.zeros(iterations)
    for r in records:
        if r.iteration < iterations:
            ends[r.iteration] = max(ends[r.iteration], r.end_s)
    return ends


def _replica_durations(records: list[IterationRecord], replica_of: dict[int, int], warmup: int) -> np.ndarray:
    """Each replica's own iteration durations (asynchronous clocks), after warm-up, shape (replicas, n)."""
    ends: dict[int, dict[int, float]] = {}
    for r in records:
        mine = ends.setdefault(replica_of[r.rank], {})
        mine[r.iteration] = max(mine.get(r.iteration, 0.0), r.end_s)
    rows = [[e[i] for i in sorted(e)] for _, e in sorted(ends.items())]
    n = min(len(row) for row in rows)
    table = np.array([row[:n] for row in rows])
    return np.diff(np.concatenate([np.zeros((len(rows), 1)), table], axis=1), axis=1)[:, warmup:]


def percentiles(values: list[float], qs: tuple[int, ...]) -> tuple[float, ...]:
    """The ``qs``-th percentiles (0 < q < 100) of ``values``, interpolated linearly between the closest ranks:
    numpy's default method, and the standard library's ``inclusive`` one, which this is (``np.percentile``
    imports ``numpy.ma``, ~10 ms of every run's start-up)."""
    if len(values) == 1:
        return tuple(float(values[0]) for _ in qs)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return tuple(cuts[q - 1] for q in qs)


def summarize(records: list[IterationRecord], *, name: str, devices: int, iterations: int, warmup: int,
              samples_per_step: int, samples_per_replica: int, single_device_s: float,
              communication_s: np.ndarray, algorithm: str, step_ends: np.ndarray | None = None,
              per_worker_clock: bool = False, replica_of_record: dict[int, int] | None = None) -> dict[str, Any]:
    """The keys every run has (DESIGN.md; each defined in docs/config.md), SI units.

    Iteration time. A synchronous run (allreduce, BSP, SSP) has global steps: step i ends
    when its last update is applied (``step_ends``: the protocol's record of when the last
    counted push of step i was applied; without one, when the last rank finishes iteration i,
    optimizer included); an iteration's time is the gap between consecutive step ends. An
    asynchronous run (ASP) has no global step: each replica's own iterations are timed.
    ``throughput_samples_per_s`` is ``samples_per_step`` over the mean step (ASP: the sum
    over replicas of their own rates); ``scaling_efficiency`` is that throughput over
    ``devices`` times one device's throughput training the whole model alone on one
    replica's batch (``single_device_s``: forward, backward and optimizer step of
    ``samples_per_replica`` samples, no communication).
    """
    if per_worker_clock:
        per_replica = _replica_durations(records, replica_of_record or {}, warmup)
        durations = per_replica.ravel()
        throughput = float(np.sum(samples_per_replica / per_replica.mean(axis=1)))
        span = float(max(r.end_s for r in records))
    else:
        ends = step_ends if step_ends is not None else _iteration_ends(records, iterations)
        durations = np.diff(np.concatenate([[0.0], ends]))[warmup:]
        throughput = samples_per_step / float(durations.mean())
        span = float(ends[-1])
    measured = [r for r in records if r.iteration >= warmup] or records
    p50, p99 = percentiles(durations.tolist(), (50, 99))
    return {
        "name": name,
        "workers": devices,
        "iterations": iterations,
        "warmup": warmup,
        "algorithm": algorithm,
        "iteration_time_s": float(durations.mean()),
        "iteration_time_p50_s": p50,
        "iteration_time_p99_s": p99,
        "throughput_samples_per_s": throughput,
        "scaling_efficiency": throughput * single_device_s / (devices * samples_per_replica),
        "compute_s": float(np.mean([r.compute_s for r in measured])),
        "communication_s": float(np.mean(communication_s[warmup:])),
        "exposed_communication_s": float(np.mean([r.comm_exposed_s for r in measured])),
        "wait_s": float(np.mean([r.wait_s for r in measured])),
        "simulated_time_s": span,
    }


@dataclass
class Result:
    """What ``simulate`` returns: the summary, per-iteration records, trace and resolved config."""

    summary: dict[str, Any]
    iterations: list[IterationRecord]
    trace: Trace
    config: dict[str, Any]
    run_info: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # name -> rows, written as <name>.csv
    # what the plots and the report may look at again, never written: the Config, and the job's
    # hardware, network and plan when one job ran (``simulate`` fills it)
    context: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def write(self, out_dir: str | Path, *, plots: bool = True) -> Path:
        """Write every output file into ``out_dir`` atomically; returns the folder.

        The folder then holds exactly this run: a previous trainsim run there is replaced whole (no
        stale ``convergence.csv`` from another job survives); a file, or a non-empty folder that is not a
        trainsim run, is refused (``TrainsimInputError``) and nothing is written.
        """
        out = Path(out_dir)
        _check_out(out)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        except OSError as e:
            raise TrainsimInputError(f"--out {out}: cannot create it ({e.strerror or e})") from None
        try:
            self._write_files(tmp, plots)
            _move_into_place(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    def _write_files(self, folder: Path, plots: bool) -> None:
        (folder / "summary.json").write_text(strict_json(self.summary, indent=2) + "\n")
        (folder / "run_info.json").write_text(strict_json(self.run_info, indent=2) + "\n")
        (folder / "config.resolved.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        with (folder / "iterations.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            names = [f.name for f in fields(IterationRecord)]
            w.writerow(names)
            w.writerows(operator.attrgetter(*names)(r) for r in self.iterations)  # asdict: a deep copy per row
        for table, rows in self.tables.items():
            with (folder / f"{table}.csv").open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else [])
                w.writeheader()
                w.writerows(rows)
        trace = {"traceEvents": self.trace.events, "displayTimeUnit": "ms"}
        (folder / "trace.json").write_text(json.dumps(trace))
        drawn: dict[str, Any] = {}
        if plots:
            from .plots import run_plots  # matplotlib is slow to import; only when asked

            drawn = run_plots(self, folder / "plots")
        from .report import write_run_report

        write_run_report(self, folder, notes=drawn.get("notes", {}), plots=plots)


RUN_MARKERS = ("summary.json", "run_info.json")   # what makes a folder a trainsim run


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise TrainsimInputError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not all((out / m).is_file() for m in RUN_MARKERS):
        raise TrainsimInputError(f"--out {out}: a folder with other files in it (not a trainsim run); "
                                 "give a new or empty folder")


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished folder to ``out``; a previous run there is swapped out whole, then deleted."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
    os.rmdir(old)
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)          # put the previous run back
        raise
    shutil.rmtree(old, ignore_errors=True)


def strict_json(obj: Any, **kw: Any) -> str:
    """JSON with no NaN or Infinity (``json.dumps(allow_nan=False)``): a result is always strict JSON."""
    return json.dumps(obj, allow_nan=False, **kw)


def check_finite(summary: dict[str, Any]) -> None:
    """A result never holds NaN or infinity: a non-finite figure is the inputs' fault, said in one line."""
    for key, value in summary.items():
        values = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise TrainsimInputError(f"results: {key} came out {v} — the config's numbers are beyond what "
                                         "the model can compute (an enormous latency, a tiny bandwidth, ...)")
