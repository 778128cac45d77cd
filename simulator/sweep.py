"""Parameter sweeps: a sweep YAML → one simulation per point on Dask → a tidy ``results.csv``.

A sweep file names a base config and the dotted keys to vary::

    base: ../01_resnet50_128gpu_ring.yaml        # relative to the sweep file
    set: {training.iterations: 5}                 # fixed overrides for every point
    grid:                                         # cartesian product, first key slowest
      cluster.topology.nodes: [1, 2, 4]
      communication.algorithm: [ring, auto]
    zip:                                          # varied together (equal lengths), one axis
      cluster.topology.inter.bandwidth: [100Gbps, 400Gbps]
      cluster.topology.inter.latency: [2us, 1us]
    seeds: [1, 2]                                 # replications (innermost axis)

Points are ``grid × zip × seeds`` in that order; every point is validated
(``load_config``) before anything runs, so a bad value fails fast naming the
point. Each point's resolved config is hashed; ``OUT/points/<hash>/`` holds its
``summary.json`` (or ``error.json`` for a point that fails at simulation, e.g. a
model that does not fit in memory), so re-running an interrupted sweep computes
only what is missing. ``OUT/results.csv`` has one row per point, ordered by point
index, and is always replaced atomically.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import Config, ConfigError, TrainsimInputError, load_config, read_yaml
from .config.errors import describe

__all__ = ["Point", "Sweep", "SweepFile", "SweepResult", "load_sweep", "run_sweep"]

POINTS = "points"
TABLE = "results.csv"


class SweepFile(BaseModel):
    """The sweep YAML schema (unknown keys are errors, like configs)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: str = Field(description="base config YAML, relative to the sweep file")
    name: str | None = Field(None, description="sweep name (default: the file's stem)")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted key → value applied to every point")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key → values (cartesian product)")
    zip: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key → values (varied together)")
    seeds: list[int] | None = Field(None, description="replication seeds (default: the base config's seed)")

    @field_validator("grid", "zip")
    @classmethod
    def _non_empty(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            if not values:
                raise ValueError(f"{key}: expected a non-empty list of values")
        return axes

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
            raise ValueError("expected a non-empty list of distinct integers")
        return seeds


def _check_axes(spec: SweepFile, path: Path) -> None:
    """Checks across keys (pydantic would report them at the top level, with the whole file as input)."""
    if len({len(v) for v in spec.zip.values()}) > 1:
        detail = ", ".join(f"{k} has {len(v)}" for k, v in spec.zip.items())
        raise ConfigError(f"{path}: zip: lists must have equal lengths ({detail})")
    seen: dict[str, str] = {}
    for section in ("set", "grid", "zip"):
        for key in getattr(spec, section):
            if key in seen:
                raise ConfigError(f"{path}: {section}.{key}: already given in {seen[key]}")
            if key == "seed":
                raise ConfigError(f"{path}: {section}.seed: use the top-level `seeds: [..]` list for replications")
            seen[key] = section


@dataclass(frozen=True)
class Point:
    """One sweep point: its index, the varied values (dotted key → value), the seed and the resolved config."""

    index: int
    values: dict[str, Any]
    seed: int
    config: Config
    hash: str


@dataclass(frozen=True)
class Sweep:
    """A validated sweep: the parsed file and its expanded points (in index order)."""

    name: str
    source: Path
    spec: SweepFile
    points: list[Point]

    @property
    def varied(self) -> list[str]:
        return [*self.spec.grid, *self.spec.zip]


@dataclass
class SweepResult:
    """What ``run_sweep`` returns: the table rows (by point index) and what was computed vs cached."""

    out: Path
    rows: list[dict[str, Any]]
    computed: int = 0
    cached: int = 0
    failed: int = 0
    wall_s: float = 0.0
    files: list[Path] = field(default_factory=list)


# --- expansion and validation ---------------------------------------------------------


def _override(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML flow syntax, so apply_override parses it back exactly


def config_hash(config: Config) -> str:
    """A stable hash of the resolved config (the cache key of a point)."""
    text = json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_sweep(path: str | Path) -> Sweep:
    """Read, validate and expand a sweep file; every point's config is validated here.

    Raises
    ------
    ConfigError
        One line naming the sweep key, or the point and the config key at fault.
    """
    path = Path(path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with base, grid, zip, seeds, got {type(raw).__name__}")
    try:
        spec = SweepFile.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(describe(e, str(path))) from None
    _check_axes(spec, path)
    base = path.parent / spec.base
    if not base.is_file():
        raise ConfigError(f"{path}: base: no such file {str(base)!r}")
    fixed = [_override(k, v) for k, v in spec.set.items()]
    grid = [[(k, v) for v in values] for k, values in spec.grid.items()]
    zipped = [list(zip(spec.zip, row, strict=True)) for row in zip(*spec.zip.values(), strict=True)] or [[]]
    seeds: list[int | None] = list(spec.seeds) if spec.seeds is not None else [None]
    points: list[Point] = []
    for combo in itertools.product(*grid, zipped, seeds):
        *pairs, zip_row, seed = combo
        values = dict([*pairs, *zip_row])
        overrides = [*fixed, *(_override(k, v) for k, v in values.items())]
        if seed is not None:
            overrides.append(f"seed={seed}")
        index = len(points)
        try:
            config = load_config(base, overrides)
        except ConfigError as e:
            seed_label = [] if seed is None else [f"seed={seed}"]
            label = ", ".join([*(f"{k}={v}" for k, v in values.items()), *seed_label])
            raise ConfigError(f"{path}: point {index} ({label}): {e}") from None
        points.append(Point(index, values, config.seed, config, config_hash(config)))
    return Sweep(spec.name or path.stem, path, spec, points)


# --- running one point (on a Dask worker) -----------------------------------------------


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cached(point_dir: Path) -> dict[str, Any] | None:
    """A finished point's record (summary or recorded error), or None if it still has to run."""
    for name in ("summary.json", "error.json"):
        file = point_dir / name
        if file.is_file():
            data = json.loads(file.read_text())
            return {"summary": data} if name == "summary.json" else data
    return None


def run_point(config: Config, point_dir: str) -> dict[str, Any]:
    """Simulate one point and write its folder; returns ``{"summary": ...}`` or ``{"error": ...}``.

    Bad input found at simulation time (a ``TrainsimInputError``: the model does
    not fit, more workers than devices, ...) is recorded in ``error.json`` and
    cached like a result; any other exception is returned but not cached, so a
    re-run tries the point again.
    """
    from .run import simulate

    out = Path(point_dir)
    try:
        result = simulate(config)
    except TrainsimInputError as e:
        record = {"error": str(e)}
        _atomic_write(out / "error.json", json.dumps(record, indent=2) + "\n")
        return record
    except Exception as e:  # noqa: BLE001 - one broken point must not stop the sweep
        return {"error": f"{type(e).__name__}: {e}"}
    result.write(out, plots=False)
    return {"summary": result.summary}


# --- the table --------------------------------------------------------------------------


def _flat(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in summary.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, list | tuple):
            out[f"{prefix}{key}"] = json.dumps(value)
        else:
            out[f"{prefix}{key}"] = value
    return out


def _row(point: Point, record: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"point": point.index}
    for key, value in point.values.items():
        row[key] = json.dumps(value) if isinstance(value, dict | list) else value
    row["seed"] = point.seed
    row["status"] = "error" if "error" in record else "ok"
    row["error"] = record.get("error", "")
    row["dir"] = f"{POINTS}/{point.hash}"
    for key, value in _flat(record.get("summary", {})).items():
        row.setdefault(key, value)        # a varied key's column keeps the point's value (`sync` is both)
    return row


def write_table(rows: list[dict[str, Any]], out: Path) -> Path:
    """Write ``results.csv`` (rows in the given order) atomically; also Parquet when pyarrow is importable."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    path = out / TABLE
    fd, tmp = tempfile.mkstemp(prefix=f".{TABLE}.", dir=out)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns), restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _write_parquet(rows, list(columns), out)
    return path


def _write_parquet(rows: list[dict[str, Any]], columns: list[str], out: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    data = {c: [None if row.get(c, "") == "" else row.get(c) for row in rows] for c in columns}
    data = {c: v if len({type(x) for x in v if x is not None}) <= 1 else [None if x is None else str(x) for x in v]
            for c, v in data.items()}
    tmp = out / ".results.parquet.tmp"
    pq.write_table(pa.table(data), tmp)
    os.replace(tmp, out / "results.parquet")


# --- the scaling plot -------------------------------------------------------------------


def _save(fig, path: Path) -> Path:
    """Write a finished figure atomically (temp file, then rename) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _design_keys(sweep: Sweep, rows: list[dict[str, Any]]) -> list[str]:
    """Varied keys that name a design: those whose values do not each pin down a separate worker count."""
    keys = []
    for key in sweep.varied:
        workers: dict[str, set[Any]] = {}
        for row in rows:
            workers.setdefault(str(row[key]), set()).add(row.get("workers"))
        sets = list(workers.values())
        disjoint = len(sets) > 1 and sum(len(s) for s in sets) == len(set().union(*sets))
        if not disjoint:
            keys.append(key)
    return keys


def scaling_plot(sweep: Sweep, rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Throughput and scaling efficiency vs workers, one line per design (mean over seeds)."""
    ok = [r for r in rows if r["status"] == "ok" and "workers" in r]
    if len({r["workers"] for r in ok}) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    design = _design_keys(sweep, ok)
    lines: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for r in ok:
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={r[k]}" for k in design) or sweep.name
        lines.setdefault(label, {}).setdefault(r["workers"], []).append(
            (r["throughput_samples_per_s"], r["scaling_efficiency"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for label, by_workers in lines.items():
        xs = sorted(by_workers)
        thr = [sum(v[0] for v in by_workers[x]) / len(by_workers[x]) for x in xs]
        eff = [sum(v[1] for v in by_workers[x]) / len(by_workers[x]) for x in xs]
        ax1.plot(xs, thr, marker="o", label=label)
        ax2.plot(xs, eff, marker="o", label=label)
    for ax, ylabel in ((ax1, "throughput (samples/s)"), (ax2, "scaling efficiency")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("workers")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    ax1.set_yscale("log")
    ax2.set_ylim(0, 1.05)
    ax2.legend(fontsize=8)
    fig.suptitle(sweep.name)
    return _save(fig, path)


def _plots(sweep: Sweep, rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """The sweep's plots that its points can answer (each returns None when they cannot)."""
    made = [scaling_plot(sweep, rows, folder / "scaling.png"), checkpoint_plot(sweep, rows, folder / "checkpoint.png"),
            target_plot(sweep, rows, folder / "target.png")]
    axes = [*sweep.spec.grid, *list(sweep.spec.zip)[:1]]   # the zipped keys vary together: one axis
    for key in axes:
        for metric in METRICS:
            drawn = metric_plot(sweep, rows, key, metric, folder / f"{METRICS[metric][1]}_vs_{key}.png")
            made.append(drawn["path"] if drawn else None)
    drawn = loss_overlay_plot(sweep, rows, folder.parent, folder / "loss.png")
    made.append(drawn["path"] if drawn else None)
    return [p for p in made if p is not None]


# --- a plot for any swept key, and overlaid loss curves ---------------------------------------

METRICS = {"iteration_time_s": ("iteration time (s)", "iteration_time"),
           "throughput_samples_per_s": ("throughput (samples/s)", "throughput")}


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _tied(sweep: Sweep, key: str) -> set[str]:
    """Keys that vary together with ``key`` (its zip partners), and ``key`` itself."""
    return set(sweep.spec.zip) if key in sweep.spec.zip else {key}


def _axis(sweep: Sweep, key: str) -> tuple[list[str], list[str], list[Any]]:
    """The keys on ``key``'s axis (its zip partners vary with it: one axis), each position's values as JSON,
    and what to label the positions with."""
    axis = list(sweep.spec.zip) if key in sweep.spec.zip else [key]
    columns = [sweep.spec.zip[k] if k in sweep.spec.zip else sweep.spec.grid[k] for k in axis]
    rows = list(zip(*columns, strict=True))
    entries = [json.dumps(list(e), sort_keys=True) for e in rows]
    values = list(columns[0]) if len(axis) == 1 else [", ".join(_label(v) for v in e) for e in rows]
    return axis, entries, values


def metric_plot(sweep: Sweep, rows: list[dict[str, Any]], key: str, metric: str, path: Path) -> dict | None:
    """``metric`` against the swept ``key``: one line per combination of the other varied keys, the mean over
    seeds with min–max bars; with an ideal-scaling line when the key sets the worker count.

    Returns the numbers drawn (``lines``: label → x, mean, low, high; ``ideal``: label → y) and the path.
    """
    ok = [r for r in rows if r["status"] == "ok" and isinstance(r.get(metric), int | float)]
    axis, entries, values = _axis(sweep, key)
    if len(set(entries)) < 2 or not ok:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = len(axis) == 1 and _numeric(values)
    order = {e: i for i, e in reversed(list(enumerate(entries)))}   # the first index of each entry
    others = [k for k in sweep.varied if k not in _tied(sweep, key)]
    groups: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for r in ok:
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={_label(r[k])}" for k in others) or sweep.name
        at = order.get(json.dumps([_value(r[k]) for k in axis], sort_keys=True))
        if at is not None:
            groups.setdefault(label, {}).setdefault(at, []).append(r)
    ylabel, _ = METRICS[metric]
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    lines: dict[str, dict[str, list[float]]] = {}
    ideal: dict[str, list[float]] = {}
    for i, (label, by_x) in enumerate(groups.items()):
        xs = sorted(by_x)
        offset = 0.0 if numeric or len(groups) == 1 else 0.08 * (i - (len(groups) - 1) / 2)   # side by side
        ys = [np.array([float(r[metric]) for r in by_x[x]]) for x in xs]
        pos = [float(values[x]) for x in xs] if numeric else [float(x) + offset for x in xs]
        mean = [float(y.mean()) for y in ys]
        low, high = [float(y.min()) for y in ys], [float(y.max()) for y in ys]
        lines[label] = {"x": pos, "mean": mean, "low": low, "high": high}
        err = np.array([np.subtract(mean, low), np.subtract(high, mean)])
        ax.errorbar(pos, mean, yerr=err, marker="o", capsize=3, color=f"C{i}", label=label,
                    linestyle="-" if numeric else "none")   # categories are not joined by lines
        workers = [float(by_x[x][0].get("workers", 0) or 0) for x in xs]
        if len(set(workers)) > 1 and workers[0] > 0:
            per_device = mean[0] / workers[0] if metric == "throughput_samples_per_s" else None
            ideal[label] = [per_device * w for w in workers] if per_device is not None else [mean[0]] * len(xs)
            ax.plot(pos, ideal[label], linestyle="--", color=f"C{i}", alpha=0.6, linewidth=1,
                    label=f"ideal scaling ({label})" if len(groups) > 1 else "ideal scaling (linear in workers)")
    if numeric:
        positive = all(float(v) > 0 for v in values)
        if positive and max(float(v) for v in values) / min(float(v) for v in values) >= 8:
            ax.set_xscale("log", base=2)
        ax.set_xticks([float(v) for v in values], [_label(v) for v in values])
    else:
        ax.set_xticks(range(len(values)), [_label(v) for v in values], rotation=20 if len(values) > 4 else 0,
                      ha="right" if len(values) > 4 else "center")
        ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_xlabel(", ".join(axis))
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    seeds = max((len(v) for g in groups.values() for v in g.values()), default=1)
    if len(groups) > 1 or ideal:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title(f"{sweep.name}: {ylabel.split(' (')[0]} against {key.rsplit('.', 1)[-1]}"
                 + (f" (mean of {seeds} seeds, bars: min–max)" if seeds > 1 else ""), fontsize=10)
    return {"path": _save(fig, path), "lines": lines, "ideal": ideal, "numeric": numeric}


def _value(cell: Any) -> Any:
    """A table cell back as the sweep value (mappings and lists are stored as JSON)."""
    if isinstance(cell, str) and cell[:1] in "{[":
        try:
            return json.loads(cell)
        except ValueError:
            return cell
    return cell


def _read_curve(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    file = folder / "convergence.csv"
    if not file.is_file():
        return None
    with open(file, newline="") as f:
        data = [(float(r["time_s"]), float(r["loss"])) for r in csv.DictReader(f) if r.get("loss") not in ("", None)]
    data = [(t, v) for t, v in data if np.isfinite(t) and np.isfinite(v)]
    if len(data) < 2:
        return None
    t, v = np.array(data).T
    return t, v


def loss_overlay_plot(sweep: Sweep, rows: list[dict[str, Any]], out: Path, path: Path) -> dict | None:
    """Loss against simulated time, one line per design (the varied values), shaded min–max over the seeds.

    Each seed's curve is interpolated onto one time grid, up to the end of the shortest; returns, per
    design, that grid and the mean, low and high curves.
    """
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for r in rows:
        if r["status"] != "ok":
            continue
        curve = _read_curve(out / r["dir"])
        if curve is not None:
            label = ", ".join(f"{k.rsplit('.', 1)[-1]}={_label(r[k])}" for k in sweep.varied) or sweep.name
            curves.setdefault(label, []).append(curve)
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.4))
    drawn = {}
    for i, (label, runs) in enumerate(curves.items()):
        end = min(float(t[-1]) for t, _ in runs)
        start = max(float(t[0]) for t, _ in runs)
        grid = np.linspace(start, end, 200) if end > start else np.array([start])
        stack = np.array([np.interp(grid, t, v) for t, v in runs])
        mean, low, high = stack.mean(axis=0), stack.min(axis=0), stack.max(axis=0)
        drawn[label] = {"time_s": grid.tolist(), "mean": mean.tolist(), "low": low.tolist(), "high": high.tolist(),
                        "seeds": len(runs)}
        ax.plot(grid, mean, color=f"C{i}", label=label + (f" ({len(runs)} seeds)" if len(runs) > 1 else ""))
        if len(runs) > 1:
            ax.fill_between(grid, low, high, color=f"C{i}", alpha=0.2, linewidth=0)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("training loss")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    shaded = any(d["seeds"] > 1 for d in drawn.values())
    ax.set_title(f"{sweep.name}: loss against time" + (" (line: mean over seeds, band: min–max)" if shaded else ""),
                 fontsize=10)
    return {"path": _save(fig, path), "curves": drawn}


def _label(value: Any) -> str:
    """A varied value as a short label: a mapping's values joined (``topk 0.01``), a name as is."""
    try:
        value = json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value
    except ValueError:
        pass
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" if isinstance(v, bool) else str(v) for k, v in value.items())
    return str(value)


def target_plot(sweep: Sweep, rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Time to the target loss (bars, mean over seeds; ✗ never reached) and updates to it, per design."""
    ok = [r for r in rows if r["status"] == "ok" and "time_to_target_s" in r]
    if not ok or not sweep.varied or CHECKPOINT_KEY in sweep.varied:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    designs: dict[str, list[dict[str, Any]]] = {}
    for r in ok:
        designs.setdefault(", ".join(_label(r[k]) for k in sweep.varied), []).append(r)
    labels = list(designs)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 0.45 * len(labels) + 1.8), sharey=True)
    for i, label in enumerate(labels):
        reached = [r for r in designs[label] if r["time_to_target_s"] not in (None, "")]
        if len(reached) == len(designs[label]):
            a.barh(i, np.mean([float(r["time_to_target_s"]) for r in reached]), color="C0")
            b.barh(i, np.mean([float(r["updates_to_target"]) for r in reached]), color="C1")
        else:
            for ax in (a, b):
                ax.text(0, i, f"  not reached ({len(designs[label]) - len(reached)} of {len(designs[label])} seeds)",
                        va="center", fontsize=8, color="C3")
    a.set_yticks(range(len(labels)), labels, fontsize=8)
    a.invert_yaxis()
    a.set_xlabel("simulated time to the target loss (s)")
    b.set_xlabel("updates to the target loss")
    for ax in (a, b):
        ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle(f"{sweep.name}: time and updates to the target (mean over seeds)")
    return _save(fig, path)


CHECKPOINT_KEY = "faults.checkpoint.every"


def _interval_s(value: Any, row: dict[str, Any]) -> float:
    """A checkpoint interval as seconds: a duration, or iterations × the failure-free iteration time."""
    from topologies.units import parse

    if isinstance(value, str) and not value.strip().isdigit():
        return parse(value, "duration")
    return float(value) * float(row["iteration_time_s"])


def checkpoint_plot(sweep: Sweep, rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Goodput against the checkpoint interval (95 % intervals with replications), Young/Daly's optimum marked."""
    ok = [r for r in rows if r["status"] == "ok" and "goodput" in r]
    if CHECKPOINT_KEY not in sweep.varied or len({str(r[CHECKPOINT_KEY]) for r in ok}) < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [k for k in sweep.varied if k != CHECKPOINT_KEY]
    lines: dict[str, list[tuple[float, float, float, float]]] = {}
    for r in ok:
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={r[k]}" for k in others) or sweep.name
        low, high = json.loads(r["goodput_ci95"]) if r.get("goodput_ci95") else (r["goodput"], r["goodput"])
        lines.setdefault(label, []).append((_interval_s(r[CHECKPOINT_KEY], r), r["goodput"], low, high))
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for i, (label, points) in enumerate(sorted(lines.items())):
        points.sort()
        x = np.array([p[0] for p in points]) / 60.0
        y = np.array([p[1] for p in points])
        err = np.array([[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]])
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label, color=f"C{i}")
    optima = sorted({round(float(r["young_daly_interval_s"]), 6) for r in ok if r.get("young_daly_interval_s")})
    for j, tau in enumerate(optima):
        label = "Young/Daly √(2δM)" + (f" = {tau / 60:.0f} min" if len(optima) == 1 else "")
        ax.axvline(tau / 60.0, color="grey", linestyle="--", linewidth=1, label=label if j == 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel("checkpoint interval (minutes of training)")
    ax.set_ylabel("goodput (useful / wall time)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{sweep.name}: goodput against the checkpoint interval")
    return _save(fig, path)


# --- running a sweep --------------------------------------------------------------------


def _client(scheduler: str | None, workers: int | None):
    """A Dask client (and the cluster it owns, if embedded)."""
    import logging

    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except (OSError, ValueError, TypeError) as e:     # unreachable, or not an address at all
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise TrainsimInputError(f"--scheduler {scheduler}: cannot connect ({first}); expected an address "
                                     "like tcp://host:8786") from None
    n = workers or os.cpu_count() or 1
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    return Client(cluster), cluster


def _clean_leftovers(out: Path) -> int:
    """Remove what a killed sweep left half-written: ``points/.<hash>.*`` folders and ``.results.*`` files."""
    import shutil

    if out.exists() and not out.is_dir():
        raise TrainsimInputError(f"--out {out}: exists and is not a folder")
    removed = 0
    for pattern in (f"{POINTS}/.*", f".{TABLE}.*", ".results.parquet.tmp", "plots/.*.tmp.png"):
        for leftover in out.glob(pattern):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            removed += 1
    return removed


def _split_cached(sweep: Sweep, out: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Point]]:
    """Records of points already in ``out/points/`` (by hash), and the points still to run (one per hash)."""
    records: dict[str, dict[str, Any]] = {}
    todo: dict[str, Point] = {}
    for p in sweep.points:
        if p.hash in records or p.hash in todo:
            continue
        cached = _cached(out / POINTS / p.hash)
        if cached is None:
            todo[p.hash] = p
        else:
            records[p.hash] = cached
    return records, todo


def _compute(client: Any, todo: dict[str, Point], out: Path, done: Callable[[str, dict[str, Any]], None]) -> None:
    """Submit one task per point and call ``done(hash, record)`` as each finishes (in completion order)."""
    from dask.distributed import as_completed

    futures = {client.submit(run_point, p.config, str(out / POINTS / h), key=f"trainsim-point-{h}", pure=False): h
               for h, p in todo.items()}
    for future in as_completed(futures):
        done(futures[future], future.result())


def _final_table(records: dict, out: Path, table: Callable[[], None]) -> None:
    if records or (out / TABLE).exists():    # nothing ran and nothing was there: write nothing
        table()


def run_sweep(sweep: Sweep | str | Path, out: str | Path, *, client: Any = None, scheduler: str | None = None,
              workers: int | None = None, plots: bool = True,
              progress: Callable[[int, int], None] | None = None) -> SweepResult:
    """Run every point not already in ``out/points/`` on Dask and write ``out/results.csv``.

    ``client`` is an existing ``dask.distributed.Client``; otherwise one is made
    for ``scheduler`` (an address such as ``tcp://host:8786``; workers write the
    point folders, so ``out`` must be on a filesystem they share) or for an
    embedded ``LocalCluster`` of ``workers`` processes (default: one per CPU).
    ``progress(done, total)`` is called as points finish (cached ones count as done).
    Rows are ordered by point index whatever the completion order; the table is
    rewritten atomically about once a second and at the end (also on interrupt).
    """
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    out = Path(out).resolve()
    t0 = time.perf_counter()
    _clean_leftovers(out)
    records, todo = _split_cached(sweep, out)
    result = SweepResult(out=out, rows=[], cached=len(records))
    total = len(records) + len(todo)
    out.mkdir(parents=True, exist_ok=True)
    last = [time.perf_counter()]

    def table() -> None:
        result.rows = [_row(p, records[p.hash]) for p in sweep.points if p.hash in records]
        write_table(result.rows, out)
        last[0] = time.perf_counter()

    def done(h: str, record: dict[str, Any]) -> None:
        records[h] = record
        result.computed += 1
        if progress:
            progress(len(records), total)
        if time.perf_counter() - last[0] > 1.0:
            table()

    if progress:
        progress(len(records), total)
    owned = None
    try:
        if todo:
            if client is None:
                client, cluster = owned = _client(scheduler, workers)
            _compute(client, todo, out, done)
    finally:
        if owned:
            owned[0].close()
            if owned[1] is not None:
                owned[1].close()
        _final_table(records, out, table)
    result.failed = sum(1 for r in result.rows if r["status"] == "error")
    result.files = [out / TABLE]
    drawn = _plots(sweep, result.rows, out / "plots") if plots else []
    from .report import write_sweep_report

    result.files += drawn + [write_sweep_report(sweep, result.rows, out, drawn)]
    result.wall_s = time.perf_counter() - t0
    return result
