"""``report.html``: one self-contained page per run (next to ``summary.json``) and per sweep.

The page holds the summary with units, every plot (embedded as base64 PNG), where an iteration's
time went (:mod:`simulator.explain`), the assumptions the model made, the resolved config and a
button that opens ``trace.json`` in the Perfetto UI (the trace is embedded when it is at most
``EMBED_TRACE_BYTES``; otherwise the page says how to open the file). No server, no network access
needed to read it; everything a user wrote (names, config values) is HTML-escaped. Built with the
standard library only (``html.escape`` and f-strings), so it adds no dependency.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .devices import WORK_KINDS
from .formatting import fmt, with_unit

__all__ = ["EMBED_TRACE_BYTES", "REPORT", "write_run_report", "write_sweep_report"]

REPORT = "report.html"
EMBED_TRACE_BYTES = 8 * 2**20
PERFETTO = "https://ui.perfetto.dev"

CAPTIONS = {
    "iterations.png": "Each iteration's time split into compute, exposed communication and waiting (mean over "
                      "devices).",
    "pipeline.png": "One iteration of the pipeline: forward, backward and idle time per stage. The hatched grey is the "
                    "bubble; its share of the drawn area is the summary's pipeline_bubble_fraction.",
    "links.png": "The busiest directed links: the share of one iteration their bytes take at line rate, by kind of "
                 "traffic. The longest bar is the bottleneck.",
    "loss.png": "Training loss of the learning problem, against gradients applied and against simulated time.",
    "staleness.png": "How stale the applied pushes were (updates between a worker's read and its push).",
    "workers.png": "Per-device compute, exposed communication and waiting; server utilisation.",
    "timeline.png": "The faulted run over time: iterations kept, throughput and where the time went.",
    "scaling.png": "Throughput and scaling efficiency against the worker count.",
    "checkpoint.png": "Goodput against the checkpoint interval, Young/Daly's optimum marked.",
    "target.png": "Time and updates to the target loss, per design.",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;
color:#222;background:#fff;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{padding:.2em .7em;border-bottom:1px solid #eee;text-align:left}
td.v{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}td.raw{color:#777;font-size:.85em}
figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:.9em}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.85em;max-height:40em;white-space:pre-wrap}
.note{color:#666;font-size:.9em}button{font-size:1em;padding:.4em 1em;cursor:pointer}
.scroll{overflow-x:auto}
"""

_PERFETTO_JS = """
(function(){
  var ORIGIN = %(origin)s, TITLE = %(title)s;
  var button = document.getElementById('open-perfetto');
  var status = document.getElementById('perfetto-status');
  if (!button) return;
  button.addEventListener('click', function(){
    var text = document.getElementById('trace-data').textContent.replace(/\\s+/g, '');
    var bin = atob(text), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var win = window.open(ORIGIN);
    if (!win) { status.textContent = 'The pop-up was blocked: allow pop-ups for this page, or open trace.json '
                + 'at ' + ORIGIN + ' (Open trace file).'; return; }
    status.textContent = 'Waiting for the Perfetto UI to load…';
    var timer = setInterval(function(){ win.postMessage('PING', ORIGIN); }, 50);
    function onMessage(evt){
      if (evt.data !== 'PONG') return;
      clearInterval(timer);
      window.removeEventListener('message', onMessage);
      win.postMessage({perfetto: {buffer: bytes.buffer, title: TITLE}}, ORIGIN);
      status.textContent = 'Sent the trace to the Perfetto UI.';
    }
    window.addEventListener('message', onMessage);
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _js_string(text: str) -> str:
    """A JavaScript string literal that is safe inside a <script> element."""
    return json.dumps(text).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _png(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _figures(files: Iterable[Path]) -> str:
    out = []
    for f in files:
        caption = CAPTIONS.get(f.name) or _sweep_caption(f.name)
        out.append(f'<figure id="plot-{_e(f.stem)}"><img src="{_png(f)}" alt="{_e(f.name)}" data-file="{_e(f.name)}">'
                   f"<figcaption><code>plots/{_e(f.name)}</code> — {_e(caption)}</figcaption></figure>")
    return "\n".join(out)


def _sweep_caption(name: str) -> str:
    if "_vs_" in name:
        metric, key = name.removesuffix(".png").split("_vs_", 1)
        return f"{metric.replace('_', ' ')} against the swept key {key} (mean over seeds, min–max bars)."
    return ""


def _summary_table(summary: dict[str, Any]) -> str:
    rows = []
    for key, value in summary.items():
        shown = with_unit(key, value) if not isinstance(value, list | dict) else json.dumps(value)
        raw = "" if isinstance(value, list | dict | str | bool) or value is None else fmt(value)
        if raw == shown:
            raw = ""
        rows.append(f'<tr data-key="{_e(key)}"><th>{_e(key)}</th><td class="v">{_e(shown)}</td>'
                    f'<td class="raw">{_e(raw)}</td></tr>')
    return '<table id="summary">\n' + "\n".join(rows) + "\n</table>"


def _assumptions(summary: dict[str, Any], context: dict[str, Any]) -> str:
    model = summary.get("network_model", "fluid")
    items = []
    if model == "fluid":
        items.append("Network: flow-level (fluid). The transfers of one collective step start together and share "
                     "every directed link max-min fairly; each flow also pays its path's latency once.")
    elif model == "alpha_beta":
        items.append("Network: α-β, no contention — every flow gets its path's slowest link to itself.")
    else:
        items.append("Network: a calibrated profile (cluster.profile) — each collective costs the fitted "
                     "α·steps + β·bytes + γ·bytes reduced of its schedule; the links' numbers are not used.")
    efficiency = summary.get("network_efficiency")
    if efficiency:
        shown = ", ".join(f"{k} {v if isinstance(v, list) else f'{v:.3g}'}" for k, v in efficiency.items())
        items.append(f"Links run at bandwidth × their class's efficiency ({shown}; topologies/link_classes.py), "
                     "and each message pays its route's largest software latency once "
                     "(network_software_latency_s).")
    else:
        items.append("Links run at line rate: a flow gets the configured bandwidth, with no protocol, header or "
                     "congestion-control overhead (network efficiency 100 %).")
    device = _device(context)
    if device is not None:
        eff = ", ".join(f"{k} {getattr(device.efficiency, k):g}" for k in WORK_KINDS)
        items.append(f"Compute: roofline on {device.name} — each piece of a layer's work (GEMM, attention, "
                     f"elementwise, embedding) takes max(FLOPs ÷ peak {device.peak_flops / 1e12:,.1f} TFLOP/s, bytes ÷ "
                     f"memory bandwidth {device.memory_bandwidth / 1e9:,.0f} GB/s) ÷ its kind's efficiency ({eff}), "
                     f"at {_precision(context)} precision.")
    else:
        items.append("Compute: roofline — max(FLOPs ÷ peak, bytes ÷ memory bandwidth) ÷ the efficiency of the work's "
                     "kind (GEMM, attention, elementwise, embedding).")
    items.append("Gradient reduction costs γ per byte reduced; an optimizer step is a roofline over the parameters.")
    items.append("Not modelled: data loading and the host's input pipeline; kernel-launch and framework overheads "
                 "beyond the efficiency factor; packet-level effects (switch buffers, retransmissions, congestion "
                 "control); workspace buffers in the memory model; contention between different kinds of transfer "
                 "that overlap in time with an allreduce (a pipeline send and a gradient sync are each timed on an "
                 "otherwise idle network; parameter-server flows do share links as they happen).")
    return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in items) + "</ul>"


def _precision(context: dict) -> str:
    """The run's ``workload.precision`` in words: the peak above is that precision's."""
    config = context.get("config")
    precision = "mixed" if config is None else config.workload.precision
    return {"mixed": "mixed (16-bit values, fp32 master weights)", "fp32": "fp32 (4-byte values)",
            "tf32": "tf32 (4-byte values, TF32 matrix products)"}[precision]


def _device(context: dict[str, Any]):
    hw = context.get("hardware")
    if hw is not None:
        return hw.device
    config = context.get("config")
    if config is None:
        return None
    try:
        from .resolve import resolve_device

        return resolve_device(config.cluster.device, config.workload.precision)
    except Exception:  # noqa: BLE001 - the report must not fail over a description
        return None


def _trace_section(folder: Path, title: str) -> str:
    trace = folder / "trace.json"
    if not trace.is_file():
        return '<p class="note">No trace.json was written.</p>'
    size = trace.stat().st_size
    how = (f"Or open <a href=\"{PERFETTO}\">{PERFETTO}</a> and drag <code>trace.json</code> (next to this page) "
           "onto it, or use “Open trace file”; <code>chrome://tracing</code> reads it too.")
    if size > EMBED_TRACE_BYTES:
        return (f'<p>trace.json is {with_unit("trace_bytes", size)}, too big to embed here '
                f"(more than {with_unit('limit_bytes', EMBED_TRACE_BYTES)}). {how}</p>")
    data = base64.b64encode(trace.read_bytes()).decode("ascii")
    script = _PERFETTO_JS % {"origin": _js_string(PERFETTO), "title": _js_string(title)}
    return (f'<p><button id="open-perfetto" type="button">Open the timeline in Perfetto</button> '
            f'<span id="perfetto-status" class="note"></span></p><p class="note">The button opens {PERFETTO} in a new '
            f"tab and hands it the trace embedded in this page ({with_unit('trace_bytes', size)}); nothing is "
            f"uploaded anywhere else. {how}</p>"
            f'<script type="application/octet-stream" id="trace-data">{data}</script>'
            f"<script>{script}</script>")


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _write(path: Path, text: str) -> Path:
    from topologies.io import write_atomically

    write_atomically(path, text)
    return path


def _plot_files(folder: Path) -> list[Path]:
    order = list(CAPTIONS)
    files = sorted(folder.glob("*.png")) if folder.is_dir() else []
    return sorted(files, key=lambda f: (order.index(f.name) if f.name in order else len(order), f.name))


def write_run_report(result, folder: Path, *, notes: dict[str, str] | None = None, plots: bool = True) -> Path:
    """Write ``folder/report.html`` for a run whose other files are already in ``folder``."""
    from .explain import explain_lines

    summary = result.summary
    name = str(summary.get("name", "trainsim run"))
    files = _plot_files(folder / "plots")
    parts = [f"<h1>{_e(name)}</h1>",
             f'<p class="note">trainsim run: {_e(summary.get("model", ""))} on {_e(summary.get("workers", ""))} '
             f'{_e(summary.get("device", ""))} devices, {_e(summary.get("algorithm", ""))}. Files next to this page: '
             "summary.json, iterations.csv, trace.json, config.resolved.yaml, plots/.</p>",
             "<h2>Where an iteration's time went</h2>",
             "<pre id=\"explain\">" + _e("\n".join(explain_lines(summary))) + "</pre>",
             "<h2>Plots</h2>"]
    if files:
        parts.append(_figures(files))
    elif not plots:
        parts.append('<p class="note">Plots were not written (--no-plots or output.plots: false).</p>')
    for file, why in (notes or {}).items():
        parts.append(f'<p class="note">No <code>plots/{_e(file)}</code>: {_e(why)}.</p>')
    parts += ["<h2>Summary</h2>", '<p class="note">SI units; the raw value (as in summary.json) on the right. '
              "Every key is defined in docs/config.md.</p>", _summary_table(summary),
              "<h2>Timeline (trace.json)</h2>", _trace_section(folder, name),
              "<h2>What the model assumed</h2>", _assumptions(summary, result.context)]
    config_file = folder / "config.resolved.yaml"
    if config_file.is_file():
        parts += ["<h2>Resolved config (config.resolved.yaml, SI units)</h2>",
                  f'<pre id="config">{_e(config_file.read_text())}</pre>']
    return _write(folder / REPORT, _page(f"trainsim: {name}", "\n".join(parts)))


_SWEEP_COLUMNS = ("workers", "iteration_time_s", "throughput_samples_per_s", "scaling_efficiency",
                  "exposed_communication_s", "pipeline_bubble_fraction", "final_loss", "time_to_target_s",
                  "goodput")


def _sweep_assumptions(sweep) -> str:
    if not sweep.points:
        return _assumptions({}, {})
    config = sweep.points[0].config
    models = sorted({p.config.network.model for p in sweep.points})
    return (f'<p class="note">For point 0 (network model{"s" if len(models) > 1 else ""}: {_e(", ".join(models))}).</p>'
            + _assumptions({"network_model": "profile" if config.cluster.profile else config.network.model},
                           {"config": config}))


def write_sweep_report(sweep, rows: list[dict[str, Any]], out: Path, plot_files: list[Path]) -> Path:
    """Write ``out/report.html`` for a sweep: its points with units, its plots, the sweep file."""
    varied = list(sweep.varied)
    metrics = [c for c in _SWEEP_COLUMNS if any(c in r and r[c] not in ("", None) for r in rows)]
    head = "".join(f"<th>{_e(c)}</th>" for c in ["point", *varied, "seed", "status", *metrics])
    body = []
    for r in rows:
        cells = [str(r["point"]), *(str(r.get(k, "")) for k in varied), str(r.get("seed", "")), r["status"]]
        cells += [with_unit(m, r[m]) if r.get(m) not in ("", None) else "" for m in metrics]
        title = f' title="{_e(r["error"])}"' if r.get("error") else ""
        body.append(f"<tr{title}>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    source = Path(sweep.source)
    parts = [f"<h1>{_e(sweep.name)}</h1>",
             f'<p class="note">trainsim sweep: {len(rows)} points; varied: {_e(", ".join(varied) or "nothing")}. '
             "results.csv holds every summary key of every point; points/&lt;hash&gt;/ each point's files.</p>",
             "<h2>Plots</h2>",
             _figures(plot_files) if plot_files else '<p class="note">No plots were written.</p>',
             "<h2>Points</h2>", f'<div class="scroll"><table id="points"><tr>{head}</tr>\n' + "\n".join(body)
             + "</table></div>",
             "<h2>What the model assumed</h2>", _sweep_assumptions(sweep)]
    if source.is_file():
        parts += [f"<h2>Sweep file ({_e(source.name)})</h2>", f"<pre id=\"sweep\">{_e(source.read_text())}</pre>"]
    return _write(out / REPORT, _page(f"trainsim sweep: {sweep.name}", "\n".join(parts)))


def write_lesson_report(run, out: Path) -> Path:
    """``report.html`` of a lesson run: the question, each claim with ✓/✗ and its numbers, the plots that
    answer the question (embedded), and links to each step's own report."""
    les = run.lesson
    claims = "".join(
        f"<tr><td>{'✓' if r['holds'] else '✗'}</td><td>{_e(r['claim'])}</td><td>{_e(r['detail'])}</td></tr>"
        for r in run.results)
    figures = []
    for name in les.plots:
        f = out / name
        if f.suffix == ".png" and f.is_file():
            figures.append(f'<figure><img src="{_png(f)}" alt="{_e(name)}" data-file="{_e(name)}">'
                           f"<figcaption><code>{_e(name)}</code></figcaption></figure>")
    links = "".join(f'<li><a href="{_e(step.id)}/report.html">{_e(step.id)}/report.html</a></li>'
                    for step in les.steps if (out / step.id / "report.html").is_file())
    body = (f"<h1>Lesson {les.number}: {_e(les.title)}</h1><p><b>Question.</b> {_e(les.question)}</p>"
            f"<p>The page: <code>{_e(les.page.name)}</code> (docs/lessons/). Every claim below is the page's answer, "
            f"checked against this run.</p>"
            f"<h2>Claims</h2><table><tr><th></th><th>claim</th><th>what the run gave</th></tr>{claims}</table>"
            f"<h2>The plots that answer it</h2>{''.join(figures) or '<p>(none drawn)</p>'}"
            + (f"<h2>Each run's report</h2><ul>{links}</ul>" if links else ""))
    return _write(out / "report.html", _page(f"lesson {les.number}: {les.title}", body))
