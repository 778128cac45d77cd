"""Calibration: fit α, β, γ to measured collectives, on the simulator's own cost model.

For a measured point (algorithm, ranks p, size n) the schedule gives three exact integers
(:func:`simulator.collectives.analytic.step_maxima`): busy steps ``S``, the sum over steps
of the most bytes any rank moves ``M``, and the sum of the most bytes any rank reduces
``R``. The model ``t = α·S + β·M + γ·R`` is linear in (α, β, γ), so the fit is a linear
least-squares problem (numpy only):

* **Weighted by 1/t** — we minimise ``Σ ((t_i - model_i) / t_i)²``, the squared *relative*
  residuals, so a 4 KiB point counts as much as a 64 MiB one (times span five decades).
  ``t_i`` is the median of the point's repetitions.
* **Standard errors** from the residual covariance ``s² (AᵀA)⁻¹`` with
  ``s² = RSS / (n - k)`` (A: the weighted design matrix, k: coefficients fitted).
* **Identifiability.** With one algorithm, bytes reduced are proportional to bytes moved
  (ring: ``R = M / 2``), so β and γ cannot be separated: when the column-scaled design
  matrix has condition number above 1e6, γ is fixed at 0 (it is folded into β) and the
  profile says so. Mixing algorithms (ring and recursive_doubling) separates them.
* **Non-negativity.** A coefficient that comes out negative is fixed at 0 (the one with the
  most negative t-statistic first) and the rest refitted; the profile records why.
* **Regimes.** Protocol or cache changes (eager vs rendezvous, a buffer falling out of L3)
  bend the curve. Candidate breaks lie between consecutive fitted sizes (each side keeps at
  least two sizes); the best split (least total RSS) is kept only if it lowers the Bayesian
  information criterion ``BIC = n·ln(RSS/n) + k·ln(n)`` by more than 10 — "very strong"
  evidence on Kass & Raftery's scale — where k counts every fitted coefficient plus one for
  the break. Greedy: up to ``max_regimes`` regimes. The regime boundary is the geometric
  mean of the two sizes either side of the break.
* **Structure.** Which points share coefficients is also chosen from the data: ``joint``
  (one set for every algorithm and rank count, the textbook Hockney assumption), per
  ``ranks``, per ``algorithm``, or per ``algorithm+ranks`` — each group with its own
  regimes. On a real cluster ``joint`` should win; on a 2-core machine running 4 ranks, the
  oversubscribed runs cost far more per step and a per-rank structure wins. A structure
  replaces the simpler current choice only if it lowers the total BIC by more than 10.
  Specific groups come with a ``joint`` fallback group for what was not fitted.
  ``--holdout ranks`` allows only structures that share numbers across rank counts.

Held-out points (:func:`split`) are removed *before* any of this, so they cannot influence
the fit; ``validation.compare`` reports error on them only.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from simulator import collectives
from simulator.collectives.analytic import step_maxima
from simulator.network.profile import FORMAT, HardwareProfile, Regime

from .foreign import model_algorithm, read_any
from .provenance import collect as collect_provenance
from .records import FOREIGN, MPI, MeasurementError, Measurements, Point, uniform

__all__ = ["HOLDOUTS", "STRUCTURES", "CalibrationError", "Fit", "as_link_profile", "calibrate", "choose_structure",
           "features", "fit", "regimes", "split"]

COEFFS = ("alpha", "beta", "gamma")
HOLDOUTS = ("sizes", "ranks", "algorithms", "none")
#: ``--holdout algorithms`` fits these and predicts every other measured algorithm
FIT_ALGORITHMS = ("ring", "recursive_doubling")
CONDITION_LIMIT = 1e6      # column-scaled design matrix; above this a coefficient is not identifiable
BIC_MARGIN = 10.0          # a break must lower BIC by more than this
MIN_SIZES_PER_REGIME = 2

METHOD = ("weighted least squares on the schedule-derived cost t = alpha*steps + beta*bytes_moved + "
          "gamma*bytes_reduced, weights 1/t (relative residuals), t = median of the repetitions")
CRITERION = (f"a break between two fitted sizes (each side >= {MIN_SIZES_PER_REGIME} sizes) is kept when it "
             f"lowers BIC = n ln(RSS/n) + k ln(n) by more than {BIC_MARGIN:g} (k counts coefficients and the break)")
STRUCTURE_CRITERION = (f"structures in the order joint, ranks, algorithm, algorithm+ranks; a later one replaces the "
                       f"current choice only if its BIC is lower by more than {BIC_MARGIN:g}")


class CalibrationError(MeasurementError):
    """Measurements that cannot determine a profile (too few sizes, nothing left to fit, ...)."""


@lru_cache(maxsize=8192)
def features(algorithm: str, ranks: int, size_bytes: int, collective: str = "allreduce") -> tuple[int, int, int]:
    """``(busy steps, Σ max bytes moved, Σ max bytes reduced)`` of the schedule (exact integers)."""
    return step_maxima(collectives.schedule(algorithm, ranks, size_bytes, collective))


def design(points: Sequence[Point]) -> np.ndarray:
    return np.array([features(p.algorithm, p.ranks, p.size_bytes, p.collective) for p in points], dtype=float)


# --- the held-out split -----------------------------------------------------------------


def split(points: Sequence[Point], holdout: str = "sizes") -> tuple[list[Point], list[Point]]:
    """``(fitted, held_out)``.

    ``sizes``: every other size is held out — the 2nd, 4th, ... distinct size — but the
    smallest and the largest are always fitted, so held-out points are interpolations.
    ``ranks``: the largest rank count is held out (needs two or more rank counts).
    ``algorithms``: :data:`FIT_ALGORITHMS` (ring, recursive doubling) are fitted, every other
    algorithm (Rabenseifner, trees, ...) is held out (needs both kinds).
    ``none``: everything is fitted (nothing to report error on).
    """
    if holdout not in HOLDOUTS:
        raise CalibrationError(f"--holdout: expected one of {', '.join(HOLDOUTS)}, got {holdout!r}")
    if holdout == "sizes":
        sizes = sorted({p.size_bytes for p in points})
        held = set(sizes[1:-1:2])
        return [p for p in points if p.size_bytes not in held], [p for p in points if p.size_bytes in held]
    if holdout == "ranks":
        ranks = sorted({p.ranks for p in points})
        if len(ranks) < 2:
            raise CalibrationError(f"--holdout ranks: needs measurements at two or more rank counts, got {ranks}")
        return [p for p in points if p.ranks != ranks[-1]], [p for p in points if p.ranks == ranks[-1]]
    if holdout == "algorithms":
        fitted = [p for p in points if p.algorithm in FIT_ALGORITHMS]
        held = [p for p in points if p.algorithm not in FIT_ALGORITHMS]
        if not fitted or not held:
            have = sorted({p.algorithm for p in points})
            raise CalibrationError(f"--holdout algorithms: fits {' and '.join(FIT_ALGORITHMS)} and predicts the "
                                   f"other algorithms; needs measurements of both kinds, got {', '.join(have)}")
        return fitted, held
    return list(points), []


# --- one regime ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """A fitted regime: coefficients (α s, β s/B, γ s/B), standard errors, what was fixed and why."""

    coef: np.ndarray                 # (3,)
    stderr: np.ndarray               # (3,), nan where fixed or not estimable
    fixed: dict[str, str]
    rss: float                       # Σ squared relative residuals
    n: int
    sizes: tuple[int, int] = (0, 0)  # smallest and largest size fitted
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return len(COEFFS) - len(self.fixed)

    def regime(self, min_bytes: int, max_bytes: int | None, algorithm: str | None = None,
               ranks: int | None = None) -> Regime:
        se = [None if (c in self.fixed or not math.isfinite(s)) else float(s) for c, s in zip(COEFFS, self.stderr,
                                                                                              strict=True)]
        return Regime(
            algorithm=algorithm, ranks=ranks, min_bytes=min_bytes, max_bytes=max_bytes,
            alpha_s=float(self.coef[0]), beta_s_per_byte=float(self.coef[1]), gamma_s_per_byte=float(self.coef[2]),
            alpha_stderr_s=se[0], beta_stderr_s_per_byte=se[1], gamma_stderr_s_per_byte=se[2],
            fitted_range_bytes=self.sizes, fixed=self.fixed, points=self.n,
            rms_relative_residual=math.sqrt(self.rss / self.n) if self.n else None)


def _condition(a: np.ndarray) -> float:
    if a.shape[0] < a.shape[1]:
        return math.inf
    norms = np.linalg.norm(a, axis=0)
    s = np.linalg.svd(a / norms, compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else math.inf


def _solve(a: np.ndarray, free: list[int]) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares of ``a[:, free] @ x ≈ 1``; returns (coef(3), stderr(3), rss)."""
    n = a.shape[0]
    cols = a[:, free]
    norms = np.linalg.norm(cols, axis=0)
    scaled = cols / norms
    sol, *_ = np.linalg.lstsq(scaled, np.ones(n), rcond=None)
    resid = 1.0 - scaled @ sol
    rss = float(resid @ resid)
    coef, stderr = np.zeros(3), np.full(3, math.nan)
    coef[free] = sol / norms
    dof = n - len(free)
    if dof > 0:
        cov = rss / dof * np.linalg.pinv(scaled.T @ scaled)
        stderr[free] = np.sqrt(np.clip(np.diag(cov), 0, None)) / norms
    return coef, stderr, rss


def fit(points: Sequence[Point]) -> Fit:
    """Fit α, β, γ to ``points`` (one regime). See the module docstring for the rules."""
    if not points:
        raise CalibrationError("calibrate: no points to fit")
    sizes = sorted({p.size_bytes for p in points})
    if len(sizes) < MIN_SIZES_PER_REGIME:
        raise CalibrationError(f"calibrate: alpha and beta cannot be separated with sizes {sizes}; "
                               f"measure at least {MIN_SIZES_PER_REGIME} sizes")
    x = design(points)
    t = np.array([p.seconds for p in points])
    a = x / t[:, None]
    fixed: dict[str, str] = {}
    for j, name in enumerate(COEFFS):
        if not a[:, j].any():
            fixed[name] = f"no {('steps', 'bytes moved', 'bytes reduced')[j]} in these measurements; fixed at 0"
    free = [j for j, c in enumerate(COEFFS) if c not in fixed]
    if "gamma" not in fixed and len(free) > 1 and _condition(a[:, free]) > CONDITION_LIMIT:
        fixed["gamma"] = ("not identifiable: bytes reduced are proportional to bytes moved in these measurements "
                          "(measure two algorithms, e.g. ring and recursive_doubling); folded into beta, fixed at 0")
        free.remove(2)
    if not free or _condition(a[:, free]) > CONDITION_LIMIT:
        raise CalibrationError(f"calibrate: alpha and beta cannot be separated with sizes {sizes}; "
                               f"measure at least {MIN_SIZES_PER_REGIME} sizes per regime")
    while True:
        coef, stderr, rss = _solve(a, free)
        negative = [j for j in free if coef[j] < 0]
        if not negative:
            break
        worst = min(negative, key=lambda j: coef[j] / stderr[j] if stderr[j] > 0 else -math.inf)
        se = f" ± {stderr[worst]:.2g}" if math.isfinite(stderr[worst]) else ""
        fixed[COEFFS[worst]] = f"fitted negative ({coef[worst]:.3g}{se}); fixed at 0 and the rest refitted"
        free.remove(worst)
        if not free:
            raise CalibrationError("calibrate: every coefficient fitted negative; the measurements do not follow "
                                   "the alpha-beta-gamma model")
    sizes = [p.size_bytes for p in points]
    return Fit(coef, stderr, dict(sorted(fixed.items())), rss, len(points), (min(sizes), max(sizes)))


# --- regimes -------------------------------------------------------------------------------


def _bic(rss: float, n: int, k: int) -> float:
    return n * math.log(max(rss, 1e-300) / n) + k * math.log(n)


@dataclass(frozen=True)
class _Split:
    gain: float                                 # BIC(one) - BIC(two)
    left: tuple[list[Point], Fit]
    right: tuple[list[Point], Fit]


def _best_split(points: list[Point], whole: Fit) -> _Split | None:
    sizes = sorted({p.size_bytes for p in points})
    best: tuple[float, _Split] | None = None
    for i in range(MIN_SIZES_PER_REGIME, len(sizes) - MIN_SIZES_PER_REGIME + 1):
        left = [p for p in points if p.size_bytes < sizes[i]]
        right = [p for p in points if p.size_bytes >= sizes[i]]
        try:
            fl, fr = fit(left), fit(right)
        except CalibrationError:
            continue
        if fl.n <= fl.k or fr.n <= fr.k:
            continue
        rss = fl.rss + fr.rss
        if best is None or rss < best[0]:
            n = len(points)
            gain = _bic(whole.rss, n, whole.k) - _bic(rss, n, fl.k + fr.k + 1)
            best = (rss, _Split(gain, (left, fl), (right, fr)))
    return None if best is None else best[1]


def regimes(points: Sequence[Point], max_regimes: int = 2) -> list[tuple[list[Point], Fit]]:
    """Greedy segmentation by size into at most ``max_regimes`` fitted regimes, in size order."""
    segments = [(list(points), fit(points))]
    while len(segments) < max_regimes:
        candidates = [(i, _best_split(pts, f)) for i, (pts, f) in enumerate(segments)]
        candidates = [(i, s) for i, s in candidates if s is not None and s.gain > BIC_MARGIN]
        if not candidates:
            break
        i, s = max(candidates, key=lambda c: c[1].gain)
        segments[i:i + 1] = [s.left, s.right]
    return segments


def _boundaries(segments: list[tuple[list[Point], Fit]], algorithm: str | None = None,
                ranks: int | None = None) -> list[Regime]:
    out = []
    lo = 0
    for i, (_, f) in enumerate(segments):
        hi = None
        if i + 1 < len(segments):
            hi = int(round(math.sqrt(f.sizes[1] * segments[i + 1][1].sizes[0])))
        out.append(f.regime(lo, hi, algorithm, ranks))
        lo = hi or 0
    return out


# --- structure: which points share coefficients --------------------------------------------

#: name -> the point attributes that split the points into groups with their own coefficients
STRUCTURES: dict[str, tuple[str, ...]] = {
    "joint": (), "ranks": ("ranks",), "algorithm": ("algorithm",), "algorithm+ranks": ("algorithm", "ranks"),
}


@dataclass(frozen=True)
class Structure:
    name: str
    groups: list[tuple[tuple[str | None, int | None], list[tuple[list[Point], Fit]]]]
    rss: float
    k: int                      # coefficients fitted + breaks
    n: int

    @property
    def bic(self) -> float:
        return _bic(self.rss, self.n, self.k)


def fit_structure(points: Sequence[Point], name: str, max_regimes: int = 2) -> Structure:
    """Fit every group of ``STRUCTURES[name]`` separately (each with its own size regimes)."""
    keys = STRUCTURES[name]
    grouped: dict[tuple[str | None, int | None], list[Point]] = {}
    for p in points:
        sel = (p.algorithm if "algorithm" in keys else None, p.ranks if "ranks" in keys else None)
        grouped.setdefault(sel, []).append(p)
    groups = [(sel, regimes(pts, max_regimes)) for sel, pts in sorted(grouped.items(), key=lambda g: str(g[0]))]
    fits = [f for _, segs in groups for _, f in segs]
    if keys and any(f.n <= f.k for f in fits):  # an exact fit says nothing about the model: not comparable
        raise CalibrationError(f"calibrate: a {name} group has no more points than coefficients")
    breaks = sum(len(segs) - 1 for _, segs in groups)
    return Structure(name, groups, sum(f.rss for f in fits), sum(f.k for f in fits) + breaks, len(points))


def choose_structure(points: Sequence[Point], allowed: Sequence[str], max_regimes: int = 2,
                     ) -> tuple[Structure, dict[str, float | None]]:
    """The structure chosen among ``allowed``, tried in order: a later one replaces the current choice only
    if its BIC is lower by more than :data:`BIC_MARGIN`. Returns it and every candidate's BIC (None: not
    fittable, e.g. a group with too few sizes)."""
    chosen: Structure | None = None
    table: dict[str, float | None] = {}
    for name in allowed:
        try:
            s = fit_structure(points, name, max_regimes)
        except CalibrationError:
            table[name] = None  # a group too small to fit: this structure is not available
            continue
        table[name] = round(s.bic, 2)
        if chosen is None or s.bic < chosen.bic - BIC_MARGIN:
            chosen = s
    if chosen is None:
        fit(points)  # raises the located reason
        raise CalibrationError("calibrate: no structure could be fitted")
    return chosen, table


# --- the public step --------------------------------------------------------------------


def _allowed(by: str, holdout: str) -> list[str]:
    names = list(STRUCTURES) if by == "auto" else [by]
    if by not in STRUCTURES and by != "auto":
        raise CalibrationError(f"--by: expected auto or one of {', '.join(STRUCTURES)}, got {by!r}")
    # a held-out rank count (algorithm) must be predicted by numbers shared across rank counts (algorithms)
    kind = {"ranks": "ranks", "algorithms": "algorithm"}.get(holdout)
    if kind:
        if by != "auto" and kind in STRUCTURES[by]:
            raise CalibrationError(f"--by {by} cannot predict a held-out {kind.rstrip('s')}; use --holdout sizes")
        names = [n for n in names if kind not in STRUCTURES[n]]
    return names


def fitted_as(p: Point) -> Point:
    """``p`` as the fit sees it: a foreign implementation's point (``nccl``, ``mpi`` from a log) takes the
    schedule trainsim models that implementation with (:data:`validation.foreign.MODEL_ALGORITHMS`)."""
    if p.source in FOREIGN and p.algorithm == FOREIGN[p.source]:
        return replace(p, algorithm=model_algorithm(p.collective))
    return p


def calibrate(measurements: Measurements | str | Path, *, holdout: str = "sizes", max_regimes: int = 2,
              by: str = "auto", name: str | None = None, command: Sequence[str] | None = None) -> HardwareProfile:
    """Fit a :class:`~simulator.network.profile.HardwareProfile` to measured collectives.

    Parameters
    ----------
    measurements : a ``Measurements`` object or the path of a ``measurements.csv``, an nccl-tests log
        or an OSU log (:func:`validation.foreign.read_any`).
    holdout : ``sizes`` (default), ``ranks``, ``algorithms`` or ``none`` — which points :func:`split` keeps out of
        the fit; the profile records the fitted sets so ``compare`` can flag held-out points.
    max_regimes : at most this many size regimes per group (1 = a single α, β, γ).
    by : ``auto`` (default: chosen by BIC), or one of :data:`STRUCTURES` — which points share
        coefficients: all (``joint``), those with the same rank count, algorithm, or both.

    Rows from the MPI reference (``source: mpi``) are never fitted. Rows read from an nccl-tests or
    OSU log are fitted with the schedule of :func:`validation.foreign.model_algorithm` (ring for
    allreduce); one implementation (``source``) at a time.
    """
    if not isinstance(measurements, Measurements):
        measurements = read_any(measurements)
    where = str(measurements.source_path or "measurements")
    points = [fitted_as(p) for p in measurements.points() if p.source != MPI]
    if not points:
        raise CalibrationError(f"{where}: no kernel measurements to fit (only MPI reference rows)")
    device, dtype, collective, source = (uniform(points, a, where) for a in ("device", "dtype", "collective",
                                                                              "source"))
    if max_regimes < 1:
        raise CalibrationError(f"--regimes: expected at least 1, got {max_regimes}")
    allowed = _allowed(by, holdout)
    fitted, held = split(points, holdout)
    structure, table = choose_structure(fitted, allowed, max_regimes)
    out = [r for sel, segs in structure.groups for r in _boundaries(segs, *sel)]
    if structure.name != "joint":  # the fallback for algorithms and rank counts not fitted
        out += _boundaries(regimes(fitted, max_regimes))
    fit_info = {
        "method": METHOD, "regime_criterion": CRITERION, "structure": structure.name,
        "structure_criterion": STRUCTURE_CRITERION, "structure_bic": table, "holdout": holdout,
        "algorithms": sorted({p.algorithm for p in fitted}), "ranks": sorted({p.ranks for p in fitted}),
        "sizes_bytes": sorted({p.size_bytes for p in fitted}),
        "held_out_ranks": sorted({p.ranks for p in held} - {p.ranks for p in fitted}),
        "held_out_sizes_bytes": sorted({p.size_bytes for p in held} - {p.size_bytes for p in fitted}),
        "held_out_algorithms": sorted({p.algorithm for p in held} - {p.algorithm for p in fitted}),
        "sources": [source],
        "points_fitted": len(fitted), "points_held_out": len(held),
        "repetitions": sum(p.repeats for p in fitted), "rms_relative_residual": math.sqrt(structure.rss / len(fitted)),
        "measurements": where,
    }
    if source in FOREIGN:
        fit_info["implementation"] = source
        fit_info["model_algorithm"] = model_algorithm(collective)
    provenance = {**measurements.provenance,
                  "calibrated": {**collect_provenance(command, light=True),
                                 "utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}}
    default = f"{source}-{collective}" if source in FOREIGN else f"{device}-{collective}"
    return HardwareProfile(format=FORMAT, device=device, name=name or default, collective=collective,
                           dtype=dtype, regimes=tuple(out), fit=fit_info, provenance=provenance)


def as_link_profile(profile: HardwareProfile, link_class: str, line_rate: float, *, hops: int = 2,
                    hop_latency: float = 0.0) -> HardwareProfile:
    """The fitted α, β, γ turned into a link class's figures (a *link profile*, ``cluster.profile``).

    The measured collective ran over links of ``link_class`` at ``line_rate`` bytes/s per direction,
    each message crossing ``hops`` links of ``hop_latency`` seconds. Of the fallback group (regimes
    fitted on every algorithm and rank count; else the first group), the largest messages' regime
    gives the bandwidth, ``efficiency = 1 / (β · line_rate)``, and γ (unless γ was fixed, not fitted:
    then the device's roofline γ stays); the smallest messages' regime
    gives the per-message latency, ``software_latency = α − hops · hop_latency``. ``trainsim run`` then
    times every collective on the real topology with them (``simulator.resolve.build_topology``).

    Raises
    ------
    CalibrationError
        An unknown class, or a fit that no link of that line rate could produce (1/β above the line
        rate, α below the hops' latency).
    """
    from topologies.link_classes import CLASSES

    if link_class not in CLASSES:
        raise CalibrationError(f"--link-class: expected one of {', '.join(CLASSES)}, got {link_class!r}")
    group = profile.group()
    small, large = group[0], group[-1]
    if large.beta_s_per_byte <= 0:
        raise CalibrationError("--link-class: the fit has beta = 0 (no bandwidth term) to turn into an efficiency")
    efficiency = 1.0 / (large.beta_s_per_byte * line_rate)
    if efficiency > 1 + 1e-9:
        raise CalibrationError(f"--line-rate: the fitted bandwidth 1/beta = {1 / large.beta_s_per_byte:.4g} B/s is "
                               f"above the line rate {line_rate:.4g} B/s; give the links' real rate")
    software = small.alpha_s - hops * hop_latency
    if software < 0:
        raise CalibrationError(f"--hop-latency: the fitted alpha {small.alpha_s:.3g} s is below {hops} hops of "
                               f"{hop_latency:.3g} s")
    fit = {**profile.fit, "link_class": link_class, "line_rate_Bps": float(line_rate), "hops": hops,
           "hop_latency_s": float(hop_latency)}
    return HardwareProfile(format=FORMAT, device=profile.device, name=profile.name, collective=profile.collective,
                           dtype=profile.dtype,
                           link_classes={link_class: {"efficiency": min(1.0, efficiency),
                                                      "software_latency_s": software}},
                           gamma_s_per_byte=None if "gamma" in large.fixed else large.gamma_s_per_byte,
                           fit=fit, provenance=profile.provenance)
