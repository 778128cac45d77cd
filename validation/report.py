"""Terminal-sized views of a comparison and a profile (plain data; ``simulator.cli`` prints them)."""

from __future__ import annotations

from typing import Any

from simulator.network.profile import HardwareProfile

from .compare import Comparison

__all__ = ["comparison_rows", "fixed_rows", "mape_rows", "regime_rows"]


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if n == int(n) else f"{n:.3g} {unit}"
        n /= 1024
    return str(n)


def human_seconds(t: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.4g} {unit}"
    return f"{t * 1e9:.4g} ns"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} %"


def comparison_rows(c: Comparison) -> list[dict[str, Any]]:
    """One row per point: algorithm, ranks, size, measured, predicted, error, fitted/held out."""
    return [{"algorithm": r["algorithm"] if r["algorithm"] == r["predicted_algorithm"]
             else f"{r['algorithm']} (vs {r['predicted_algorithm']})",
             "ranks": r["ranks"], "size": human_bytes(r["size_bytes"]),
             "measured": human_seconds(r["measured_s"]), "predicted": human_seconds(r["predicted_s"]),
             "error": f"{r['error_pct']:+.1f} %",
             "point": (f"held out ({r['held_out_by']})" if r["held_out"] else "fitted")
             + (" NOISY" if r.get("noisy") else ""),
             "spread": f"{r['dispersion_pct']:.0f} % / {r['drift_pct']:.0f} %" if "drift_pct" in r else "",
             "busbw GB/s": f"{r['measured_busbw_GBps']:.3g}" if r["measured_busbw_GBps"] is not None else "",
             } for r in c.rows]


def mape_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Held-out MAPE overall and per (algorithm, ranks); the MPI reference last."""
    rows = [{"points": "all held out", "n": summary["held_out_points"],
             "MAPE": _pct(summary["mape_held_out_pct"]),
             "MAPE >= 64 KiB": _pct(summary["mape_held_out_ge_64KiB_pct"])}]
    if "mape_held_out_ge_64KiB_quiet_pct" in summary:
        rows.append({"points": "held out, not noisy", "n": summary["held_out_points_ge_64KiB_quiet"], "MAPE": "",
                     "MAPE >= 64 KiB": _pct(summary["mape_held_out_ge_64KiB_quiet_pct"])})
    rows += [{"points": f"{g['algorithm']} p={g['ranks']}", "n": g["held_out_points"],
              "MAPE": _pct(g["mape_held_out_pct"]), "MAPE >= 64 KiB": _pct(g["mape_held_out_ge_64KiB_pct"])}
             for g in summary["by_group"]]
    label = {"sizes": "held out by size", "ranks": "held out by rank count", "algorithms": "held out by algorithm",
             "run": "measured in another run", "other": "another device/collective/implementation"}
    rows += [{"points": label[k["held_out_by"]], "n": k["points"], "MAPE": _pct(k["mape_pct"]),
              "MAPE >= 64 KiB": _pct(k["mape_ge_64KiB_pct"])} for k in summary.get("by_holdout", ())]
    ref = summary.get("reference_mpi")
    if ref:
        label = f"MPI reference ({', '.join(ref.get('collectives', ['allreduce']))})"
        rows.append({"points": label + ", from this profile", "n": ref["points"], "MAPE": _pct(ref["mape_pct"]),
                     "MAPE >= 64 KiB": _pct(ref["mape_ge_64KiB_pct"])})
    own = summary.get("reference_mpi_own_profile")
    if own:
        rows.append({"points": "MPI reference, from a profile fitted on MPI (held out)", "n": own["held_out_points"],
                     "MAPE": _pct(own["mape_held_out_pct"]), "MAPE >= 64 KiB": _pct(own["mape_held_out_ge_64KiB_pct"])})
    rep = summary.get("reproducibility")
    if rep:
        rows.append({"points": "run 1's profile on run 2's measurements", "n": rep["points"],
                     "MAPE": _pct(rep["mape_pct"]), "MAPE >= 64 KiB": _pct(rep["mape_ge_64KiB_pct"])})
    return rows


def _coef(value: float, stderr: float | None, scale: float) -> str:
    return f"{value * scale:.4g}" + (f" ± {stderr * scale:.2g}" if stderr is not None else " (fixed)")


def _why(reason: str) -> str:
    """A ``fixed`` reason in a few words: the table says *why* a coefficient is 0, never just that it is."""
    if reason.startswith("fitted negative"):
        return "negative→0"
    if reason.startswith("not identifiable"):
        return "not identifiable→0"
    return "no data→0"


def _cache_terms(values: dict[str, float], stderr: dict[str, float], prefix: str, fixed: dict[str, str]) -> str:
    """The fitted cache terms of one kind (those fixed at 0 are in :func:`fixed_rows`)."""
    parts = [f"{level} {_coef(value, stderr.get(level), 1e9)}"
             for level, value in sorted(values.items()) if f"{prefix}_{level}" not in fixed]
    return ", ".join(parts) or "-"


def regime_rows(profile: HardwareProfile) -> list[dict[str, Any]]:
    """One row per regime: size range, α (us), β (as GB/s and ns/B), γ (ns/B)."""
    rows = []
    for r in profile.regimes:
        hi = "inf" if r.max_bytes is None else human_bytes(r.max_bytes)
        rows.append({"algorithm": r.algorithm or "any", "ranks": r.ranks or "any",
                     "sizes": f"[{human_bytes(r.min_bytes)}, {hi})",
                     "alpha us": _coef(r.alpha_s, r.alpha_stderr_s, 1e6),
                     "beta ns/B": _coef(r.beta_s_per_byte, r.beta_stderr_s_per_byte, 1e9),
                     "gamma ns/B": _coef(r.gamma_s_per_byte, r.gamma_stderr_s_per_byte, 1e9),
                     "sigma ns/B": _coef(r.sigma_s_per_byte, r.sigma_stderr_s_per_byte, 1e9),
                     "spill ns/B": _cache_terms(r.spill_s_per_byte, r.spill_stderr_s_per_byte, "spill", r.fixed),
                     "peer ns/B": _cache_terms(r.peer_s_per_byte, r.peer_stderr_s_per_byte, "peer", r.fixed),
                     "points": r.points,
                     "cond": f"{r.condition_number:.3g}" if r.condition_number is not None else "-",
                     "fixed": ", ".join(f"{c} {_why(why)}" for c, why in r.fixed.items()) or "-"})
    return rows


def fixed_rows(profile: HardwareProfile) -> list[dict[str, Any]]:
    """One row per coefficient fixed at 0, with the whole reason (fitted negative, not identifiable, no data)."""
    return [{"regime": i, "coefficient": c, "why": why} for i, r in enumerate(profile.regimes)
            for c, why in r.fixed.items()]
