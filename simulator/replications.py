"""``training.replications: R``: the same job under R derived seeds, summarised with 95 % confidence intervals.

Replication 0 runs under the config's own seed (so R = 1 is the plain run); replication r > 0
under a seed drawn from the stream ``replications`` (r) of that seed, so the set is
reproducible and adding replications never changes the earlier ones. Every numeric summary
key becomes the mean over replications, with ``<key>_ci95``: ``[low, high]``, the Student-t
95 % interval of that mean (``t(0.975, R − 1) · s / √R``). A key some replications leave
null (``time_to_target_s`` when the target is not reached) is the mean over those that have
it, with ``<key>_replications`` saying how many. Records, trace and tables are replication
0's, except ``failures.csv``, which holds every replication's rows (``replication`` column).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from simulator.config import Config
from simulator.results import Result
from simulator.rng import Streams

__all__ = ["replicate", "replication_seeds", "student_t975"]

# two-sided 95 % Student-t quantiles t(0.975, df), df = 1..30 (Fisher & Yates); beyond 30, the normal 1.96
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def student_t975(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else 1.96


def replication_seeds(seed: int, replications: int) -> list[int]:
    streams = Streams(seed)
    return [seed] + [int(streams.get("replications", r).integers(0, 2**63 - 1)) for r in range(1, replications)]


def replicate(config: Config, run: Callable[..., Result], progress: Callable[[int], None] | None = None) -> Result:
    """Run ``config`` under each replication seed with ``run(config, progress)`` and compose one result.

    ``progress(i)`` counts iterations over all replications (replication r's iteration i is r × n + i).
    """
    R, n = config.training.replications, config.training.iterations
    results = []
    for r, seed in enumerate(replication_seeds(config.seed, R)):
        training = config.training.model_copy(update={"replications": 1})
        step = None if progress is None else (lambda it, r=r: progress(r * n + it))
        results.append(run(config.model_copy(update={"seed": seed, "training": training}), step))
    first = results[0]
    summary = _combine([res.summary for res in results])
    summary["replications"] = R
    tables = dict(first.tables)
    if "failures" in first.tables:
        tables["failures"] = [{"replication": r, **row} for r, res in enumerate(results)
                              for row in res.tables["failures"]]
    run_info = {**first.run_info, "replication_seeds": replication_seeds(config.seed, R),
                "sim_wall_s": float(sum(res.run_info.get("sim_wall_s", 0.0) for res in results))}
    return Result(summary, first.iterations, first.trace, config.model_dump(mode="json"), run_info, tables)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _combine(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in summaries[0].items():
        values = [s.get(key) for s in summaries]
        if not any(_numeric(v) for v in values) or not all(v is None or _numeric(v) for v in values):
            out[key] = value
            continue
        have = np.array([float(v) for v in values if v is not None])
        if np.all(have == have[0]):          # the same in every replication (the seed cannot change it)
            mean, half = float(have[0]), 0.0
        else:
            mean = float(have.mean())
            half = student_t975(len(have) - 1) * float(have.std(ddof=1)) / math.sqrt(len(have))
        out[key] = mean
        out[f"{key}_ci95"] = [mean - half, mean + half]
        if len(have) < len(values):
            out[f"{key}_replications"] = len(have)
    return out
