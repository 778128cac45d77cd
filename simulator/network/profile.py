"""Calibrated hardware profiles: fitted α, β, γ per message-size regime, loaded from YAML.

A profile is what ``trainsim validate`` / ``trainsim calibrate`` write (``profile.yaml``,
committed examples in ``validation/profiles/``) and what ``cluster.profile`` points at.
It holds numbers only: for each size regime the per-step latency α (s), the per-byte
transfer cost β (s/B) and the per-byte reduction cost γ (s/B), fitted on the
schedule-derived cost of :func:`simulator.collectives.analytic.schedule_cost`, so

``time(schedule) = α_r · busy_steps + β_r · Σ_step max bytes moved + γ_r · Σ_step max bytes reduced``
``                 + σ_r · Σ_step max bytes staged + Σ_shared cache δ_r,cache · bytes beyond that cache``
``                 + Σ_private cache π_r,cache · bytes read out of a peer's copy of that cache``

with the regime ``r`` chosen by the collective's message size (bytes per rank). The last two
(physical) terms come from :func:`simulator.collectives.analytic.physical_features` with the
profile's ``caches`` (the measuring machine's cache sizes); a profile without them has σ = δ = 0. This is the
same cost ``validation.compare`` predicts with, so the simulator and the validation table
can never disagree. The profile is congestion-free by construction (it was measured end to
end), so a network with a profile ignores the topology's link numbers for collective timing.

A profile may instead give ``link_classes``: per link class (``topologies.link_classes``) the
``efficiency`` and ``software_latency_s`` its links run at, and optionally the ``gamma_s_per_byte``
of a reduction (``trainsim calibrate --link-class``, or typed). Such a *link profile* does not time
collectives as a formula: its figures are written onto the topology's links of those classes, so
every collective (and every other flow) is timed on the real topology with them.

The file format (``format: trainsim-profile/1``) is documented in ``docs/validation.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from typing_extensions import TypedDict  # pydantic validates only this TypedDict on Python < 3.12

from simulator.collectives import Schedule
from simulator.collectives.analytic import physical_features, schedule_cost
from simulator.config.errors import TrainsimInputError, describe
from topologies import safe_yaml

__all__ = ["FORMAT", "CacheLevel", "ClassFigures", "FitRecord", "HardwareProfile", "ProfileError", "Regime",
           "load_profile"]

FORMAT = "trainsim-profile/1"

NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ProfileError(TrainsimInputError, ValueError):
    """A profile file that cannot be read or does not validate (one line: path, key, what was expected)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Count = Annotated[int, Field(ge=0)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class FitRecord(TypedDict, total=False):
    """What a profile was fitted on (``fit:``, written by ``trainsim calibrate``; every key optional).

    ``validation.compare`` reads ``algorithms``, ``ranks``, ``sizes_bytes`` and ``sources`` to tell fitted
    points from held-out ones, so each is checked here rather than trusted.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    method: str
    regime_criterion: str
    structure: str
    structure_criterion: str
    structure_bic: dict[str, Finite | None]  # None: that structure could not be fitted
    holdout: Literal["sizes", "ranks", "algorithms", "none"]
    algorithms: list[str]
    ranks: list[Annotated[int, Field(ge=1)]]
    sizes_bytes: list[Annotated[int, Field(gt=0)]]
    held_out_ranks: list[Annotated[int, Field(ge=1)]]
    held_out_sizes_bytes: list[Annotated[int, Field(gt=0)]]
    held_out_algorithms: list[str]
    sources: list[str]                 # kernels, or the implementation whose log was fitted (nccl-tests, osu)
    implementation: str                # nccl-tests or osu, when fitted on that tool's log
    model_algorithm: str               # the schedule that implementation's points were fitted with
    points_fitted: Count
    points_held_out: Count
    repetitions: Count
    rms_relative_residual: NonNegative
    measurements: str
    link_class: str                    # calibrate --link-class: the class the fit was turned into
    line_rate_Bps: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    hops: Annotated[int, Field(ge=1)]
    hop_latency_s: NonNegative
    statistic: Literal["median", "p10", "min"]   # what each point's repetitions were summarised by
    terms: list[str]                   # the model's terms (steps, moved, reduced, staged, beyond_/peer_<cache>)
    run_id: str                        # provenance.run_id of the measurements fitted
    cache_sizes_given: dict[str, int]  # cache sizes given on the command line instead of the provenance's
    oversubscribed_ranks: list[int]    # rank counts fitted although they ran oversubscribed (--allow-oversubscribed)


class Regime(_Strict):
    """α, β, γ that serve messages of ``min_bytes <= size < max_bytes`` (``max_bytes: null`` = no bound).

    ``algorithm`` / ``ranks`` restrict the regime to one algorithm / rank count (null = any):
    a profile whose measurements showed, say, an oversubscribed 4-rank run behaving unlike a
    2-rank one keeps separate numbers for each (see ``validation.calibrate``, "structure").
    """

    algorithm: str | None = None
    ranks: Annotated[int, Field(ge=1)] | None = None
    min_bytes: Annotated[int, Field(ge=0)] = 0
    max_bytes: Annotated[int, Field(gt=0)] | None = None
    alpha_s: NonNegative = Field(description="seconds per (busy) step")
    beta_s_per_byte: NonNegative = Field(description="seconds per byte moved, slowest rank of a step")
    gamma_s_per_byte: NonNegative = Field(0.0, description="seconds per byte reduced, slowest rank of a step")
    alpha_stderr_s: NonNegative | None = None
    beta_stderr_s_per_byte: NonNegative | None = None
    gamma_stderr_s_per_byte: NonNegative | None = None
    fitted_range_bytes: tuple[int, int] | None = Field(None, description="smallest and largest size fitted")
    sigma_s_per_byte: NonNegative = Field(0.0, description="seconds per byte staged (a receive buffer), slowest "
                                                            "rank of a step")
    sigma_stderr_s_per_byte: NonNegative | None = None
    spill_s_per_byte: dict[str, NonNegative] = Field(
        default_factory=dict, description="cache level -> extra seconds per byte moved or staged in a step whose "
                                          "working set does not fit that cache (profile.caches)")
    spill_stderr_s_per_byte: dict[str, NonNegative] = Field(default_factory=dict)
    peer_s_per_byte: dict[str, NonNegative] = Field(
        default_factory=dict, description="private cache level -> extra seconds per byte moved or staged out of a "
                                          "peer's copy of that cache (a cache-to-cache transfer; profile.caches)")
    peer_stderr_s_per_byte: dict[str, NonNegative] = Field(default_factory=dict)
    fixed: dict[str, str] = Field(default_factory=dict, description="coefficient -> why it was not fitted")
    points: Annotated[int, Field(ge=0)] | None = None
    rms_relative_residual: NonNegative | None = None
    condition_number: NonNegative | None = Field(None, description="of the column-scaled design matrix of the "
                                                                   "coefficients fitted")

    @property
    def selector(self) -> tuple[str | None, int | None]:
        return (self.algorithm, self.ranks)

    @property
    def physical(self) -> bool:
        """Has a staging or cache term (the cost needs :func:`physical_features`, not just the step maxima)."""
        return self.sigma_s_per_byte > 0 or any(v > 0 for v in (*self.spill_s_per_byte.values(),
                                                                     *self.peer_s_per_byte.values()))

    def cost(self, busy: int, moved: int, reduced: int, staged: int = 0, beyond: dict[str, float] | None = None,
             peer: dict[str, float] | None = None) -> float:
        t = self.alpha_s * busy + self.beta_s_per_byte * moved + self.gamma_s_per_byte * reduced
        t += self.sigma_s_per_byte * staged
        for level, delta in self.spill_s_per_byte.items():
            t += delta * (beyond or {}).get(level, 0)
        for level, pi in self.peer_s_per_byte.items():
            t += pi * (peer or {}).get(level, 0)
        return t


class CacheLevel(_Strict):
    """One cache level of the measuring machine (``validation.provenance.caches``)."""

    bytes: Annotated[int, Field(gt=0)]
    shared_by_cpus: Annotated[int, Field(ge=1)] = 1


class ClassFigures(_Strict):
    """What a link class's links run at (``topologies.link_classes``): either number may be left to the class."""

    efficiency: Annotated[float, Field(gt=0, le=1)] | None = None
    software_latency_s: NonNegative | None = None

    @model_validator(mode="after")
    def _something(self) -> ClassFigures:
        if self.efficiency is None and self.software_latency_s is None:
            raise ValueError("give efficiency, software_latency_s or both")
        return self


def _check_group(members: list[tuple[int, Regime]]) -> None:
    """One group's regimes are contiguous from 0 bytes to unbounded (ValueError naming the regime)."""
    first, last = members[0], members[-1]
    if first[1].min_bytes != 0:
        raise ValueError(f"regimes.{first[0]}: the first regime of a group must start at min_bytes 0, "
                         f"got {first[1].min_bytes}")
    for (i, a), (_, b) in zip(members, members[1:], strict=False):
        if a.max_bytes is None or a.max_bytes != b.min_bytes:
            raise ValueError(f"regimes.{i}: max_bytes must equal the next regime's min_bytes "
                             f"({b.min_bytes}), got {a.max_bytes}")
    if last[1].max_bytes is not None:
        raise ValueError(f"regimes.{last[0]}: the last regime of a group must have max_bytes null")


class HardwareProfile(_Strict):
    """A calibrated profile: groups of contiguous size regimes covering every message size, plus provenance.

    Regimes with the same ``(algorithm, ranks)`` form a group, listed in size order from
    ``min_bytes: 0`` to ``max_bytes: null``. A collective uses the most specific group that
    matches it — ``(algorithm, ranks)``, then ``(any, ranks)``, then ``(algorithm, any)``,
    then ``(any, any)`` — so a profile with specific groups also needs the ``(any, any)``
    group for algorithms and rank counts it was not fitted on.
    """

    format: Literal["trainsim-profile/1"]
    device: str = "unknown"
    name: str | None = None
    collective: str = "allreduce"
    dtype: str | None = None
    regimes: tuple[Regime, ...] = ()
    link_classes: dict[str, ClassFigures] = Field(default_factory=dict)
    gamma_s_per_byte: NonNegative | None = Field(None, description="link profiles: seconds per byte reduced")
    caches: dict[str, CacheLevel] = Field(default_factory=dict, description="cache levels the spill terms refer to")
    fit: FitRecord = Field(default_factory=dict)  # type: ignore[arg-type]
    provenance: dict[str, Any] = Field(default_factory=dict)

    @property
    def per_link(self) -> bool:
        """A link profile: figures per link class, applied on the topology (no whole-collective formula)."""
        return bool(self.link_classes)

    @model_validator(mode="after")
    def _groups_cover_every_size(self) -> HardwareProfile:
        if bool(self.regimes) == bool(self.link_classes):
            raise ValueError("regimes: a profile gives regimes (a whole-collective alpha-beta-gamma) or link_classes "
                             "(figures per link class on the topology), exactly one of the two")
        if self.link_classes:
            from topologies.link_classes import CLASSES

            unknown = [name for name in self.link_classes if name not in CLASSES]
            if unknown:
                raise ValueError(f"link_classes.{unknown[0]}: expected a link class, one of {', '.join(CLASSES)}")
            return self
        if self.gamma_s_per_byte is not None:
            raise ValueError("gamma_s_per_byte: a top-level gamma belongs to a link profile (link_classes); "
                             "a regime has its own")
        groups: dict[tuple[str | None, int | None], list[tuple[int, Regime]]] = {}
        for i, r in enumerate(self.regimes):
            groups.setdefault(r.selector, []).append((i, r))
        for members in groups.values():
            _check_group(members)
        for i, r in enumerate(self.regimes):
            for key, levels, shared in (("spill_s_per_byte", r.spill_s_per_byte, True),
                                        ("peer_s_per_byte", r.peer_s_per_byte, False)):
                unknown = sorted(set(levels) - set(self.caches))
                if unknown:
                    raise ValueError(f"regimes.{i}.{key}: cache level {unknown[0]!r} is not among the "
                                     f"profile's caches ({', '.join(self.caches) or 'none'})")
                wrong = [name for name in levels if (self.caches[name].shared_by_cpus > 1) != shared]
                if wrong:
                    kind = "a private" if shared else "a shared"
                    other = "peer_s_per_byte" if shared else "spill_s_per_byte"
                    raise ValueError(f"regimes.{i}.{key}: {wrong[0]} is {kind} cache (shared_by_cpus "
                                     f"{self.caches[wrong[0]].shared_by_cpus}); its term is {other}")
        if len(groups) > 1 and (None, None) not in groups:
            raise ValueError("regimes: a profile with algorithm- or rank-specific regimes needs a fallback group "
                             "(regimes with neither algorithm nor ranks)")
        return self

    def link_figures(self) -> dict[str, tuple[float | None, float | None]]:
        """Link class -> (efficiency, software latency s), for a link profile."""
        return {name: (f.efficiency, f.software_latency_s) for name, f in self.link_classes.items()}

    def group(self, algorithm: str | None = None, ranks: int | None = None) -> list[Regime]:
        """The regimes serving ``algorithm`` on ``ranks`` ranks (most specific match)."""
        for key in ((algorithm, ranks), (None, ranks), (algorithm, None), (None, None)):
            found = [r for r in self.regimes if r.selector == key]
            if found:
                return found
        return [r for r in self.regimes if r.selector == self.regimes[0].selector]  # single specific group

    def regime(self, size_bytes: float, algorithm: str | None = None, ranks: int | None = None) -> Regime:
        """The regime that serves messages of ``size_bytes`` bytes per rank."""
        group = self.group(algorithm, ranks)
        for r in group:
            if r.max_bytes is None or size_bytes < r.max_bytes:
                return r
        return group[-1]  # unreachable: the last regime of a group is unbounded

    @property
    def cache_terms(self) -> tuple[tuple[str, int, int], ...]:
        """The caches as :func:`~simulator.collectives.analytic.physical_features` takes them."""
        return tuple((name, c.bytes, c.shared_by_cpus) for name, c in self.caches.items())

    def schedule_time(self, schedule: Schedule) -> float:
        """Seconds of ``schedule`` with this profile's coefficients (regime by algorithm, ranks and size)."""
        regime = self.regime(schedule.size_bytes, schedule.algorithm, schedule.ranks)
        if not regime.physical:
            return schedule_cost(schedule, regime.alpha_s, regime.beta_s_per_byte, regime.gamma_s_per_byte)
        if schedule.slices > 1:
            raise ProfileError(f"profile {self.name or ''}: its staging / cache-spill terms are fitted on whole "
                               f"steps; a schedule pipelined in {schedule.slices} slices cannot use them (drop "
                               "algorithm_options.slices, or fit a profile without those terms)")
        f = physical_features(schedule, self.cache_terms)
        return regime.cost(f["steps"], f["moved"], f["reduced"], f["staged"],
                           {name: f[f"beyond_{name}"] for name in regime.spill_s_per_byte},
                           {name: f[f"peer_{name}"] for name in regime.peer_s_per_byte})

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        for key in ("regimes", "link_classes", "caches"):
            if not data.get(key):
                data.pop(key, None)
        for r in data.get("regimes", ()):
            for key in ("fixed", "spill_s_per_byte", "spill_stderr_s_per_byte", "peer_s_per_byte",
                        "peer_stderr_s_per_byte"):
                if not r.get(key):
                    r.pop(key, None)
            if not r.get("sigma_s_per_byte") and "sigma_stderr_s_per_byte" not in r:
                r.pop("sigma_s_per_byte", None)
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110, allow_unicode=True)

    def save(self, path: str | Path) -> Path:
        """Write the profile as YAML (atomically: a temporary file renamed into place)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(self.to_yaml(), encoding="utf-8")
            tmp.replace(path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise ProfileError(f"{path}: cannot write the profile ({e.strerror or e})") from None
        return path


def load_profile(path: str | Path) -> HardwareProfile:
    """Read and validate a profile YAML file.

    Raises
    ------
    ProfileError
        One line naming the file, the key and what was expected.
    """
    path = Path(path)
    try:
        raw = safe_yaml.read(path)
    except safe_yaml.YAMLInputError as e:
        hint = " (expected a profile.yaml from `trainsim calibrate`)" if str(e).endswith("no such file") else ""
        raise ProfileError(f"{e}{hint}") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
        raise ProfileError(f"{path}: expected a trainsim hardware profile (a mapping with format: {FORMAT}), "
                           f"got {got!r}")
    try:
        return HardwareProfile.model_validate(raw)
    except ValidationError as e:
        raise ProfileError(describe(e, str(path))) from None
