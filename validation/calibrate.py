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
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from simulator import collectives
from simulator.collectives.analytic import cache_term, physical_features
from simulator.network.profile import FORMAT, HardwareProfile, Regime

from .foreign import model_algorithm, read_any
from .provenance import collect as collect_provenance
from .records import FOREIGN, MPI, MeasurementError, Measurements, Point, uniform

__all__ = ["HOLDOUTS", "STRUCTURES", "CalibrationError", "Fit", "as_link_profile", "caches_of", "calibrate",
           "choose_structure", "coefficients", "features", "fit", "regimes", "split", "terms"]

COEFFS = ("alpha", "beta", "gamma", "sigma")       # per step, per byte moved, reduced, staged
TERMS = ("steps", "moved", "reduced", "staged")     # the schedule's feature each coefficient multiplies
#: when the design is ill-conditioned, coefficients are fixed at 0 in this order (folded into the others)
DROP_ORDER = ("sigma", "gamma")
HOLDOUTS = ("sizes", "ranks", "algorithms", "none")
#: ``--holdout algorithms`` fits these and predicts every other measured algorithm
FIT_ALGORITHMS = ("ring", "recursive_doubling")
CONDITION_LIMIT = 1e6      # column-scaled design matrix; above this a coefficient is not identifiable
BIC_MARGIN = 10.0          # a break must lower BIC by more than this
MIN_SIZES_PER_REGIME = 2

METHOD = ("non-negative weighted least squares on the schedule-derived cost t = alpha*steps + beta*bytes_moved + "
          "gamma*bytes_reduced + sigma*bytes_staged + sum over shared caches of delta_cache*bytes moved or staged "
          "beyond that cache + sum over private caches of pi_cache*bytes moved or staged out of a peer's copy of "
          "it (analytic.physical_features); weights 1/t (relative residuals), t = the statistic of the "
          "repetitions (fit.statistic)")
CRITERION = (f"a break between two fitted sizes (each side >= {MIN_SIZES_PER_REGIME} sizes) is kept when it "
             f"lowers BIC = n ln(RSS/n) + k ln(n) by more than {BIC_MARGIN:g} (k counts coefficients and the break)")
STRUCTURE_CRITERION = (f"structures in the order joint, ranks, algorithm, algorithm+ranks; a later one replaces the "
                       f"current choice only if its BIC is lower by more than {BIC_MARGIN:g}")

Caches = tuple[tuple[str, int, int], ...]


class CalibrationError(MeasurementError):
    """Measurements that cannot determine a profile (too few sizes, nothing left to fit, ...)."""


def coefficients(caches: Caches = ()) -> tuple[str, ...]:
    """The model's coefficient names: :data:`COEFFS`, then per cache ``spill_<level>`` (a shared cache) or
    ``peer_<level>`` (a private one)."""
    return (*COEFFS, *(f"{'spill' if shared_by > 1 else 'peer'}_{name}" for name, _, shared_by in caches))


def terms(caches: Caches = ()) -> tuple[str, ...]:
    """The features the coefficients multiply (keys of :func:`simulator.collectives.analytic.physical_features`)."""
    return (*TERMS, *(cache_term(name, shared_by) for name, _, shared_by in caches))


@lru_cache(maxsize=8192)
def features(algorithm: str, ranks: int, size_bytes: int, collective: str = "allreduce",
             caches: Caches = ()) -> tuple[float, ...]:
    """The schedule's physical features in :func:`terms` order."""
    f = physical_features(collectives.schedule(algorithm, ranks, size_bytes, collective), caches)
    return tuple(f[t] for t in terms(caches))


def design(points: Sequence[Point], caches: Caches = ()) -> np.ndarray:
    return np.array([features(p.algorithm, p.ranks, p.size_bytes, p.collective, caches) for p in points], dtype=float)


def caches_of(provenance: dict) -> Caches:
    """The cache levels ``provenance.json`` recorded (``validation.provenance.caches``), innermost first."""
    out = []
    for name, c in (provenance.get("caches") or {}).items():
        try:
            out.append((str(name), int(c["bytes"]), int(c.get("shared_by_cpus", 1))))
        except (TypeError, KeyError, ValueError):
            raise CalibrationError(f"provenance caches.{name}: expected {{bytes: N, shared_by_cpus: M}}, got {c!r}") \
                from None
    return tuple(sorted(out, key=lambda c: c[1]))


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

_FIELDS = {"alpha": "alpha_s", "beta": "beta_s_per_byte", "gamma": "gamma_s_per_byte", "sigma": "sigma_s_per_byte"}
_STDERR = {"alpha": "alpha_stderr_s", "beta": "beta_stderr_s_per_byte", "gamma": "gamma_stderr_s_per_byte",
           "sigma": "sigma_stderr_s_per_byte"}
_WHAT = {"steps": "steps", "moved": "bytes moved", "reduced": "bytes reduced", "staged": "bytes staged"}


@dataclass(frozen=True)
class Fit:
    """A fitted regime: coefficients (:func:`coefficients` order, SI units), standard errors, what was fixed, why."""

    coef: np.ndarray                 # (k,)
    stderr: np.ndarray               # (k,), nan where fixed or not estimable
    fixed: dict[str, str]
    rss: float                       # Σ squared relative residuals
    n: int
    sizes: tuple[int, int] = (0, 0)  # smallest and largest size fitted
    names: tuple[str, ...] = COEFFS
    condition: float | None = None   # of the column-scaled design of the coefficients fitted

    @property
    def k(self) -> int:
        return len(self.names) - len(self.fixed)

    def regime(self, min_bytes: int, max_bytes: int | None, algorithm: str | None = None,
               ranks: int | None = None) -> Regime:
        se = {c: None if (c in self.fixed or not math.isfinite(e)) else float(e)
              for c, e in zip(self.names, self.stderr, strict=True)}
        value = dict(zip(self.names, map(float, self.coef), strict=True))
        spill = {c.removeprefix("spill_"): value[c] for c in self.names if c.startswith("spill_")}
        peer = {c.removeprefix("peer_"): value[c] for c in self.names if c.startswith("peer_")}
        return Regime(
            algorithm=algorithm, ranks=ranks, min_bytes=min_bytes, max_bytes=max_bytes,
            **{_FIELDS[c]: value[c] for c in COEFFS}, **{_STDERR[c]: se[c] for c in COEFFS},
            spill_s_per_byte=spill,
            spill_stderr_s_per_byte={c.removeprefix("spill_"): se[c] for c in self.names
                                     if c.startswith("spill_") and se[c] is not None},
            peer_s_per_byte=peer,
            peer_stderr_s_per_byte={c.removeprefix("peer_"): se[c] for c in self.names
                                    if c.startswith("peer_") and se[c] is not None},
            fitted_range_bytes=self.sizes, fixed=self.fixed, points=self.n,
            rms_relative_residual=math.sqrt(self.rss / self.n) if self.n else None,
            condition_number=self.condition if self.condition is not None and math.isfinite(self.condition)
            else None)


def _condition(a: np.ndarray) -> float:
    if a.shape[0] < a.shape[1]:
        return math.inf
    norms = np.linalg.norm(a, axis=0)
    s = np.linalg.svd(a / norms, compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else math.inf


def _solve(a: np.ndarray, free: list[int]) -> tuple[np.ndarray, np.ndarray, float]:
    """Least squares of ``a[:, free] @ x ≈ 1``; returns (coef(k), stderr(k), rss)."""
    n, k = a.shape
    cols = a[:, free]
    norms = np.linalg.norm(cols, axis=0)
    scaled = cols / norms
    sol, *_ = np.linalg.lstsq(scaled, np.ones(n), rcond=None)
    resid = 1.0 - scaled @ sol
    rss = float(resid @ resid)
    coef, stderr = np.zeros(k), np.full(k, math.nan)
    coef[free] = sol / norms
    dof = n - len(free)
    if dof > 0:
        cov = rss / dof * np.linalg.pinv(scaled.T @ scaled)
        stderr[free] = np.sqrt(np.clip(np.diag(cov), 0, None)) / norms
    return coef, stderr, rss


def _what(name: str) -> str:
    if name.startswith("peer_"):
        return f"bytes read from a peer's {name.removeprefix('peer_')}"
    return _WHAT.get(name) or f"bytes in steps that spill {name.removeprefix('beyond_')}"


def _identifiable(a: np.ndarray, names: tuple[str, ...], free: list[int], fixed: dict[str, str],
                  sizes: list[int]) -> None:
    """Fix coefficients at 0 (``DROP_ORDER``, then cache terms outermost first) until the column-scaled design
    of the rest has a condition number <= :data:`CONDITION_LIMIT`; say why in ``fixed``."""
    order = [*DROP_ORDER, *reversed([c for c in names if c.startswith(("spill_", "peer_"))])]
    for name in order:
        j = names.index(name)
        if len(free) <= 1 or j not in free:
            continue
        cond = _condition(a[:, free])
        if cond <= CONDITION_LIMIT:
            return
        into = "gamma" if name == "sigma" else "beta" if name == "gamma" else "the per-byte terms"
        fixed[name] = (f"not identifiable (condition number {cond:.2g}: proportional to the other terms here); "
                       f"folded into {into}, fixed at 0")
        free.remove(j)
    if not free or _condition(a[:, free]) > CONDITION_LIMIT:
        raise CalibrationError(f"calibrate: alpha and beta cannot be separated with sizes {sizes}; "
                               f"measure at least {MIN_SIZES_PER_REGIME} sizes per regime")


def fit(points: Sequence[Point], caches: Caches = ()) -> Fit:
    """Fit the model's coefficients to ``points`` (one regime). See the module docstring for the rules."""
    if not points:
        raise CalibrationError("calibrate: no points to fit")
    sizes = sorted({p.size_bytes for p in points})
    if len(sizes) < MIN_SIZES_PER_REGIME:
        raise CalibrationError(f"calibrate: alpha and beta cannot be separated with sizes {sizes}; "
                               f"measure at least {MIN_SIZES_PER_REGIME} sizes")
    names, feats = coefficients(caches), terms(caches)
    x = design(points, caches)
    t = np.array([p.seconds for p in points])
    a = x / t[:, None]
    fixed: dict[str, str] = {}
    for j, name in enumerate(names):
        if not a[:, j].any():
            fixed[name] = f"no {_what(feats[j])} in these measurements; fixed at 0"
    free = [j for j, c in enumerate(names) if c not in fixed]
    _identifiable(a, names, free, fixed, sizes)
    while True:  # non-negative least squares: active set, the most negative t-statistic leaves first
        coef, stderr, rss = _solve(a, free)
        negative = [j for j in free if coef[j] < 0]
        if not negative:
            break
        worst = min(negative, key=lambda j: coef[j] / stderr[j] if stderr[j] > 0 else -math.inf)
        se = f" ± {stderr[worst]:.2g}" if math.isfinite(stderr[worst]) else ""
        fixed[names[worst]] = f"fitted negative ({coef[worst]:.3g}{se}); fixed at 0 and the rest refitted"
        free.remove(worst)
        if not free:
            raise CalibrationError("calibrate: every coefficient fitted negative; the measurements do not follow "
                                   "the alpha-beta-gamma model")
    sizes = [p.size_bytes for p in points]
    return Fit(coef, stderr, dict(sorted(fixed.items())), rss, len(points), (min(sizes), max(sizes)), names,
               _condition(a[:, free]))


# --- regimes -------------------------------------------------------------------------------


def _bic(rss: float, n: int, k: int) -> float:
    return n * math.log(max(rss, 1e-300) / n) + k * math.log(n)


@dataclass(frozen=True)
class _Split:
    gain: float                                 # BIC(one) - BIC(two)
    left: tuple[list[Point], Fit]
    right: tuple[list[Point], Fit]


def _best_split(points: list[Point], whole: Fit, caches: Caches = ()) -> _Split | None:
    sizes = sorted({p.size_bytes for p in points})
    best: tuple[float, _Split] | None = None
    for i in range(MIN_SIZES_PER_REGIME, len(sizes) - MIN_SIZES_PER_REGIME + 1):
        left = [p for p in points if p.size_bytes < sizes[i]]
        right = [p for p in points if p.size_bytes >= sizes[i]]
        try:
            fl, fr = fit(left, caches), fit(right, caches)
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


def regimes(points: Sequence[Point], max_regimes: int = 2, caches: Caches = ()) -> list[tuple[list[Point], Fit]]:
    """Greedy segmentation by size into at most ``max_regimes`` fitted regimes, in size order."""
    segments = [(list(points), fit(points, caches))]
    while len(segments) < max_regimes:
        candidates = [(i, _best_split(pts, f, caches)) for i, (pts, f) in enumerate(segments)]
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


def fit_structure(points: Sequence[Point], name: str, max_regimes: int = 2, caches: Caches = ()) -> Structure:
    """Fit every group of ``STRUCTURES[name]`` separately (each with its own size regimes)."""
    keys = STRUCTURES[name]
    grouped: dict[tuple[str | None, int | None], list[Point]] = {}
    for p in points:
        sel = (p.algorithm if "algorithm" in keys else None, p.ranks if "ranks" in keys else None)
        grouped.setdefault(sel, []).append(p)
    groups = [(sel, regimes(pts, max_regimes, caches))
              for sel, pts in sorted(grouped.items(), key=lambda g: str(g[0]))]
    fits = [f for _, segs in groups for _, f in segs]
    if keys and any(f.n <= f.k for f in fits):  # an exact fit says nothing about the model: not comparable
        raise CalibrationError(f"calibrate: a {name} group has no more points than coefficients")
    breaks = sum(len(segs) - 1 for _, segs in groups)
    return Structure(name, groups, sum(f.rss for f in fits), sum(f.k for f in fits) + breaks, len(points))


def choose_structure(points: Sequence[Point], allowed: Sequence[str], max_regimes: int = 2,
                     caches: Caches = ()) -> tuple[Structure, dict[str, float | None]]:
    """The structure chosen among ``allowed``, tried in order: a later one replaces the current choice only
    if its BIC is lower by more than :data:`BIC_MARGIN`. Returns it and every candidate's BIC (None: not
    fittable, e.g. a group with too few sizes)."""
    chosen: Structure | None = None
    table: dict[str, float | None] = {}
    for name in allowed:
        try:
            s = fit_structure(points, name, max_regimes, caches)
        except CalibrationError:
            table[name] = None  # a group too small to fit: this structure is not available
            continue
        table[name] = round(s.bic, 2)
        if chosen is None or s.bic < chosen.bic - BIC_MARGIN:
            chosen = s
    if chosen is None:
        fit(points, caches)  # raises the located reason
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


def _oversubscribed(measurements: Measurements, fitted: Sequence[Point], allow: bool, where: str) -> list[int]:
    """Rank counts among ``fitted`` that ran oversubscribed (``provenance.measure.oversubscribed_ranks``); refused
    (one line) unless ``allow``."""
    recorded = (measurements.provenance.get("measure") or {}).get("oversubscribed_ranks") or []
    over = sorted({p.ranks for p in fitted} & {int(r) for r in recorded})
    if over and not allow:
        raise CalibrationError(f"{where}: ranks {', '.join(map(str, over))} ran oversubscribed (more ranks than "
                               f"CPUs: the timings include the scheduler's time slices); fit them anyway with "
                               f"--allow-oversubscribed, or hold them out (--holdout ranks)")
    return over


def calibrate(measurements: Measurements | str | Path, *, holdout: str = "sizes", max_regimes: int | None = None,
              by: str = "auto", name: str | None = None, command: Sequence[str] | None = None,
              allow_oversubscribed: bool = False, cache_terms: bool = True,
              statistic: str = "median", cache_sizes: dict[str, int] | None = None) -> HardwareProfile:
    """Fit a :class:`~simulator.network.profile.HardwareProfile` to measured collectives.

    Parameters
    ----------
    measurements : a ``Measurements`` object or the path of a ``measurements.csv``, an nccl-tests log
        or an OSU log (:func:`validation.foreign.read_any`).
    holdout : ``sizes`` (default), ``ranks``, ``algorithms`` or ``none`` — which points :func:`split` keeps out of
        the fit; the profile records the fitted sets so ``compare`` can flag held-out points.
    max_regimes : at most this many size regimes per group found by BIC; default 1 for the kernels when the
        measurements' provenance records the machine's caches (the cache terms put the bends where the caches
        end), else 2 (another implementation's protocol switches are not where a cache ends).
    by : ``auto`` (default: chosen by BIC), or one of :data:`STRUCTURES` — which points share
        coefficients: all (``joint``), those with the same rank count, algorithm, or both.
    allow_oversubscribed : fit rank counts that ran with more ranks than CPUs (refused otherwise).
    cache_terms : use the cache levels the provenance records (``spill_<level>`` / ``peer_<level>`` coefficients).
    statistic : what a point's repetitions are summarised by (``median``; ``p10`` or ``min`` on a shared
        machine); recorded as ``fit.statistic``, and ``compare`` summarises by the same.
    cache_sizes : level -> bytes, replacing (or adding) what the provenance records, e.g. a VM's share of a
        host's L3 that sysfs reports whole; recorded as ``fit.cache_sizes_given``.

    Rows from the MPI reference (``source: mpi``) are not fitted together with kernel rows; a file of MPI
    rows alone (``reference_mpi.csv``) is fitted as that implementation, like a log. Rows read from an
    nccl-tests or OSU log are fitted with the schedule of :func:`validation.foreign.model_algorithm` (ring
    for allreduce); one implementation (``source``) at a time.
    """
    if not isinstance(measurements, Measurements):
        measurements = read_any(measurements)
    where = str(measurements.source_path or "measurements")
    every = measurements.points(statistic)
    points = [fitted_as(p) for p in every if p.source != MPI] or [fitted_as(p) for p in every]
    if not points:
        raise CalibrationError(f"{where}: no measurements to fit")
    device, dtype, collective, source = (uniform(points, a, where) for a in ("device", "dtype", "collective",
                                                                              "source"))
    caches = caches_of(measurements.provenance) if cache_terms else ()
    if cache_sizes and cache_terms:
        shared = {n: k for n, _, k in caches}
        caches = tuple(sorted({**{n: (n, b, k) for n, b, k in caches},
                               **{n: (n, int(b), shared.get(n, 1)) for n, b in cache_sizes.items()}}.values(),
                              key=lambda c: c[1]))
    if max_regimes is None:  # another implementation switches protocols at sizes no cache says: search for them
        max_regimes = 1 if caches and source not in FOREIGN else 2
    if max_regimes < 1:
        raise CalibrationError(f"--regimes: expected at least 1, got {max_regimes}")
    allowed = _allowed(by, holdout)
    fitted, held = split(points, holdout)
    over = _oversubscribed(measurements, fitted, allow_oversubscribed, where)
    structure, table = choose_structure(fitted, allowed, max_regimes, caches)
    out = [r for sel, segs in structure.groups for r in _boundaries(segs, *sel)]
    if structure.name != "joint":  # the fallback for algorithms and rank counts not fitted
        out += _boundaries(regimes(fitted, max_regimes, caches))
    fit_info = {
        "method": METHOD, "regime_criterion": CRITERION, "structure": structure.name,
        "structure_criterion": STRUCTURE_CRITERION, "structure_bic": table, "holdout": holdout,
        "terms": list(terms(caches)), "statistic": statistic,
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
    if measurements.provenance.get("run_id"):
        fit_info["run_id"] = str(measurements.provenance["run_id"])
    if over:
        fit_info["oversubscribed_ranks"] = over
    if cache_sizes and cache_terms:
        fit_info["cache_sizes_given"] = dict(cache_sizes)
    if source in FOREIGN:
        fit_info["implementation"] = source
        fit_info["model_algorithm"] = model_algorithm(collective)
    provenance = {**measurements.provenance,
                  "calibrated": {**collect_provenance(command, light=True),
                                 "utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}}
    default = f"{source}-{collective}" if source in FOREIGN else f"{device}-{collective}"
    return HardwareProfile(format=FORMAT, device=device, name=name or default, collective=collective,
                           dtype=dtype, regimes=tuple(out), fit=fit_info, provenance=provenance,
                           caches={n: {"bytes": b, "shared_by_cpus": k} for n, b, k in caches})


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
