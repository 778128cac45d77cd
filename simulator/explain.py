"""``trainsim run --explain``: where each second of an iteration went, in words, from the summary's keys.

Per device and measured iteration, a synchronous run's time is ``compute_s`` + ``exposed_communication_s``
+ ``wait_s`` (docs/config.md defines each); the rest of the text says what those hold for this run
(communication hidden behind compute, the pipeline bubble, tensor-parallel and pipeline transfers,
compression) and, for a faulted run, where the wall-clock time went by cause. The HTML report shows
the same lines.
"""

from __future__ import annotations

from typing import Any

from .formatting import with_unit

__all__ = ["explain_lines"]

_FAULT_CAUSES = (("lost_work_s", "work lost (rolled back, or in flight at a failure)"),
                 ("checkpoint_s", "writing checkpoints"), ("restart_s", "restarts, reloads and reconfigurations"),
                 ("detection_s", "noticing failures"), ("waiting_s", "waiting for a repaired part"),
                 ("degraded_s", "training slower than the failure-free job"))


def _s(value: float) -> str:
    """Seconds as a person reads them: ``33.5 ms``, ``12.4 min``, ``29.0 days`` (never ``2.5 Ms``)."""
    value = float(value)
    for scale, unit in ((86400.0, "days"), (3600.0, "h"), (60.0, "min")):
        if abs(value) >= 2 * scale:
            return f"{value / scale:.1f} {unit}"
    return with_unit("x_s", value)


def _pct(part: float, whole: float) -> str:
    if whole <= 0:
        return "–"
    share = 100 * part / whole
    return f"{share:.0f} %" if abs(share) >= 1 or share == 0 else f"{share:.1f} %"


def explain_lines(summary: dict[str, Any]) -> list[str]:
    """Sentences, one a line, saying where an iteration's time went (and, with ``faults``, the run's)."""
    it = float(summary["iteration_time_s"])
    comp, exposed, wait = (float(summary.get(k, 0.0)) for k in ("compute_s", "exposed_communication_s", "wait_s"))
    lines = []
    mean = f" (mean over {summary['replications']} seeds)" if summary.get("replications", 1) > 1 else ""
    per = "each replica's own iterations (asynchronous: no global step)" if summary.get("sync") == "asp" \
        else "one training step of the whole job"
    workers = summary["workers"]
    workers = int(workers) if isinstance(workers, float) and workers.is_integer() else workers
    lines.append(f"One iteration took {_s(it)}{mean}: {per}, {workers} devices, {summary['algorithm']}.")
    lines.append("Per device, that time went to:")
    lines.append(f"  computing (forward, backward, optimizer step)   {_s(comp):>10}  {_pct(comp, it):>5}")
    lines.append(f"  communication it had to wait for (exposed)      {_s(exposed):>10}  {_pct(exposed, it):>5}")
    lines.append(f"  waiting for peers or for a stage's input         {_s(wait):>10}  {_pct(wait, it):>5}")
    rest = it - (comp + exposed + wait)
    if abs(rest) > 0.01 * it:
        lines.append(f"  not in those three ({'overlap between iterations' if rest < 0 else 'between iterations'}) "
                     f"{_s(rest):>10}  {_pct(rest, it):>5}")
    comm = float(summary.get("communication_s", 0.0))
    if comm > 0:
        hidden = max(0.0, comm - exposed)
        lines.append(f"Communication was busy {_s(comm)} per iteration; about {_s(hidden)} of it "
                     f"({_pct(hidden, comm)}) overlapped the devices' computing (hidden).")
    for key, words in (("gradient_sync_s", "the data-parallel gradient sync"),
                       ("tensor_parallel_s", "tensor-parallel all-reduces (inside the ops, never hidden)"),
                       ("pipeline_send_s", "stage-to-stage sends"), ("zero_gather_s", "ZeRO-3 parameter gathers"),
                       ("compression_s", "compressing and decompressing gradients")):
        if float(summary.get(key, 0.0) or 0.0) > 0:
            lines.append(f"  of which {words}: {_s(summary[key])}")
    bubble = summary.get("pipeline_bubble_fraction")
    if bubble is not None and summary.get("pipeline_parallel", 1) > 1:
        lines.append(f"Pipeline bubble: from an iteration's first forward to its last backward, stages sat idle "
                     f"{100 * bubble:.1f} % of the time (counted in 'waiting' above; plots/pipeline.png shows it).")
    if "staleness_mean" in summary:
        lines.append(f"Staleness: a push was applied on average {summary['staleness_mean']:.2f} updates (at most "
                     f"{summary['staleness_max']}) after its worker read the model.")
    if "server_utilization" in summary:
        lines.append(f"The parameter servers were busy applying updates {100 * summary['server_utilization']:.0f} % "
                     "of the run.")
    if "wall_time_s" in summary:
        wall = float(summary["wall_time_s"])
        lines.append(f"With failures, the job ran {_s(wall)} of wall time at goodput {summary['goodput']:.3f} "
                     f"({summary.get('failures', 0):.0f} failures); the {_s(summary['time_lost_s'])} lost went to:")
        for key, words in _FAULT_CAUSES:
            if float(summary.get(key, 0.0)) > 0:
                lines.append(f"  {words:<52} {_s(summary[key]):>10}  {_pct(summary[key], wall):>5} of wall time")
    return lines
