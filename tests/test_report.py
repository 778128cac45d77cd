"""The plots that answer questions (checked by the numbers they drew), report.html, --explain and --seeds."""

from __future__ import annotations

import base64
import csv
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from simulator.cli import main
from simulator.config import load_config
from simulator.link_traffic import link_names, link_traffic
from simulator.plots import links_plot, pipeline_plot
from simulator.run import simulate
from simulator.sweep import load_sweep, loss_overlay_plot, metric_plot, run_sweep

ROOT = Path(__file__).resolve().parents[1]
BERT = ROOT / "examples" / "04_bert_large_model_parallel_16gpu.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


def tiny(**changes) -> dict:
    cfg = {"name": "tiny", "seed": 7,
           "cluster": {"topology": {"kind": "switch", "devices": 8, "link": {"bandwidth": "10GB/s", "latency": "1us"}},
                       "device": "a100"},
           "workload": {"model": "resnet50", "batch_per_device": 32},
           "parallelism": {"data": 4},
           "communication": {"algorithm": "ring", "bucket_size": None},
           "training": {"iterations": 3, "warmup": 1}}
    cfg.update(changes)
    return cfg


# --- plots/pipeline.png ------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", [{}, {"parallelism.schedule": "gpipe"},
                                      {"parallelism.schedule": "interleaved", "parallelism.chunks": 2}])
def test_the_gantt_idle_area_is_the_summary_bubble(tmp_path, schedule):
    """Idle area ÷ drawn area (stages × window) = pipeline_bubble_fraction (same window: first forward to
    last backward; the run is deterministic, so the drawn iteration is every measured one)."""
    config = load_config(BERT, [f"{k}={v}" for k, v in schedule.items()])
    result = simulate(config)
    drawn = pipeline_plot(result, tmp_path / "pipeline.png")
    assert (tmp_path / "pipeline.png").read_bytes()[:8] == PNG
    start, end = drawn["window"]
    idle = drawn["stages"] * (end - start) - sum(b - a for row in drawn["rows"] for a, b, *_ in row)
    assert idle / (drawn["stages"] * (end - start)) == pytest.approx(drawn["idle_fraction"], rel=1e-9)
    assert drawn["idle_fraction"] == pytest.approx(result.summary["pipeline_bubble_fraction"], rel=1e-9, abs=1e-12)
    # every stage's row holds M forwards and M backwards (per chunk), none overlapping
    m, chunks = config.parallelism.microbatches, config.parallelism.chunks if schedule.get("parallelism.chunks") else 1
    for row in drawn["rows"]:
        assert sorted(k for _, _, k, _ in row) == ["B"] * (m * chunks) + ["F"] * (m * chunks)
        spans = sorted((a, b) for a, b, *_ in row)
        assert all(b1 <= a2 + 1e-12 for (_, b1), (a2, _) in zip(spans, spans[1:], strict=False))


def test_no_gantt_without_a_pipeline(tmp_path):
    assert pipeline_plot(simulate(load_config(tiny())), tmp_path / "p.png") is None
    assert not (tmp_path / "p.png").exists()


# --- plots/links.png --------------------------------------------------------------------------------


def test_link_bytes_are_conserved_and_add_up_to_the_summary():
    """Σ over links = Σ over flows of bytes × hops, and the transfers are exactly bytes_sent_per_iteration."""
    result = simulate(load_config(BERT))
    ctx = result.context
    traffic, why = link_traffic(ctx["config"], ctx["hardware"], ctx["network"], ctx["plan"])
    assert why == ""
    assert traffic.bytes.sum() == pytest.approx(traffic.flow_byte_hops, rel=1e-12)
    assert traffic.sent == pytest.approx(result.summary["bytes_sent_per_iteration"], rel=1e-12)
    assert sum(traffic.by_kind.values()) == pytest.approx(traffic.sent, rel=1e-12)
    assert sum(traffic.kind_bytes.values()).sum() == pytest.approx(traffic.bytes.sum(), rel=1e-12)
    # rebuilding the plan from the config alone gives the same bytes on every link
    again, _ = link_traffic(ctx["config"])
    assert np.array_equal(again.bytes, traffic.bytes)


@pytest.mark.parametrize("algorithm", ["ring", "rabenseifner", "recursive_doubling", "binomial_tree",
                                       "double_binary_tree", "hierarchical"])
def test_a_schedules_link_bytes_are_the_sum_of_its_steps(algorithm):
    """The tally routes steps that share their src/dst arrays once, with their bytes summed (link bytes are
    linear in them): every link, the flow bytes and the byte-hops equal those of routing step by step."""
    from simulator import collectives
    from simulator.link_traffic import _Tally

    cfg = tiny(cluster={"topology": {"kind": "hierarchical", "nodes": 4, "devices_per_node": 4,
                                     "intra": {"bandwidth": "300GB/s", "latency": "1us"},
                                     "inter": {"kind": "leaf_spine", "bandwidth": "100Gbps", "latency": "2us"}},
                        "device": "a100"}, parallelism={"data": 16})
    network = simulate(load_config(cfg)).context["network"]
    info = {"devices_per_node": 4} if algorithm == "hierarchical" else {}
    sched = collectives.schedule(algorithm, 8, 3_000_001, **info)
    groups = np.array([[0, 2, 4, 6, 8, 10, 12, 14], [1, 3, 5, 7, 9, 11, 13, 15]])
    tally = _Tally(network)
    tally.schedule(sched, groups, 1.0, "data_parallel")
    chunk = np.asarray(sched.chunk_bytes, dtype=float)
    want = [np.zeros(len(tally.links)), 0.0, 0.0, 0.0]
    for step in sched.steps:
        got = tally.step(groups[:, step.src].ravel(), groups[:, step.dst].ravel(), np.tile(chunk[step.chunk], 2))
        want = [w + g for w, g in zip(want, got, strict=True)]
    assert tally.links == pytest.approx(want[0], rel=1e-12, abs=1e-6)
    assert (tally.sent, tally.flow_bytes, tally.byte_hops) == pytest.approx(tuple(want[1:]), rel=1e-12)


def test_ring_allreduce_on_one_switch_loads_every_port_the_closed_form():
    """p ranks on one switch, one fused n-byte ring allreduce: every device's uplink and downlink carry
    2(p−1)/p · n, unused devices' links nothing, and each flow crosses two links."""
    result = simulate(load_config(tiny()))
    ctx = result.context
    traffic, _ = link_traffic(ctx["config"], ctx["hardware"], ctx["network"], ctx["plan"])
    n, p = ctx["hardware"].model.gradient_bytes, 4
    expected = 2 * (p - 1) / p * n
    names = link_names(ctx["network"].routing.graph)
    for d in range(8):
        for name in (f"d{d} → s0", f"s0 → d{d}"):
            got = traffic.bytes[names.index(name)]
            assert got == pytest.approx(expected if d < p else 0.0, rel=1e-6, abs=1.0), name
    assert traffic.bytes.sum() == pytest.approx(2 * traffic.sent, rel=1e-12)


def test_links_plot_shows_the_busiest_links(tmp_path):
    result = simulate(load_config(BERT))
    ctx = result.context
    traffic, _ = link_traffic(ctx["config"], ctx["hardware"], ctx["network"], ctx["plan"])
    drawn = links_plot(traffic, result.summary, tmp_path / "links.png")
    rows = drawn["rows"]
    assert 0 < len(rows) <= 12
    busy = traffic.utilisation(result.summary["iteration_time_s"])
    assert rows[0]["utilisation"] == pytest.approx(busy.max())
    assert [r["utilisation"] for r in rows] == sorted((r["utilisation"] for r in rows), reverse=True)
    edges = {frozenset((str(u), str(v))) for u, v in ctx["network"].routing.graph.edges()}
    assert all(frozenset(r["link"].split(" → ")) in edges for r in rows)
    assert drawn["total_link_bytes"] == pytest.approx(drawn["flow_byte_hops"], rel=1e-12)


def test_parameter_server_runs_say_why_there_is_no_links_plot(tmp_path):
    result = simulate(load_config(tiny(communication={"pattern": "parameter_server", "servers": 1},
                                       cluster={"topology": {"kind": "switch", "devices": 8,
                                                             "link": {"bandwidth": "10GB/s", "latency": "1us"}}})))
    result.write(tmp_path / "run")
    assert not (tmp_path / "run" / "plots" / "links.png").exists()
    assert "No <code>plots/links.png</code>: parameter-server" in (tmp_path / "run" / "report.html").read_text()


# --- sweeps: a plot for any swept key, overlaid loss curves --------------------------------------------


def _sweep(tmp_path: Path, base: dict, **spec) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", **spec}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    with Client(cluster) as c:
        yield c
    cluster.close()


def test_sweep_plots_any_key_with_means_over_seeds_and_ideal_scaling(tmp_path, client):
    path = _sweep(tmp_path, tiny(), grid={"parallelism.data": [2, 4, 8],
                                          "communication.algorithm": ["ring", "recursive_doubling"]},
                  seeds=[1, 2], set={"stragglers": {"distribution": "lognormal", "sigma": 0.3}})
    sweep = load_sweep(path)
    result = run_sweep(sweep, tmp_path / "out", client=client)
    names = {f.name for f in result.files}
    for key in ("parallelism.data", "communication.algorithm"):
        assert {f"iteration_time_vs_{key}.png", f"throughput_vs_{key}.png"} <= names
    rows = result.rows
    drawn = metric_plot(sweep, rows, "parallelism.data", "throughput_samples_per_s", tmp_path / "t.png")
    line = drawn["lines"]["algorithm=ring"]
    assert drawn["numeric"] and line["x"] == [2.0, 4.0, 8.0]
    for x, mean, low, high in zip(line["x"], line["mean"], line["low"], line["high"], strict=True):
        values = [r["throughput_samples_per_s"] for r in rows
                  if r["parallelism.data"] == x and r["communication.algorithm"] == "ring"]
        assert len(values) == 2 and mean == pytest.approx(np.mean(values)) and (low, high) == (min(values),
                                                                                              max(values))
    assert drawn["ideal"]["algorithm=ring"] == pytest.approx([line["mean"][0] * w / 2 for w in (2, 4, 8)])
    cat = metric_plot(sweep, rows, "communication.algorithm", "iteration_time_s", tmp_path / "c.png")
    assert not cat["numeric"] and set(cat["lines"]) == {"data=2", "data=4", "data=8"}
    assert cat["ideal"] == {}                       # the algorithm does not set the worker count
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("<img ") == len([f for f in result.files if f.suffix == ".png"])


def test_sweep_overlays_loss_curves_shaded_over_seeds(tmp_path, client):
    convergence = {"problem": "logistic_regression", "features": 8, "samples": 512, "lr": 0.5}
    base = tiny(training={"iterations": 6, "warmup": 1, "convergence": convergence})
    sweep = load_sweep(_sweep(tmp_path, base, grid={"parallelism.data": [2, 4]}, seeds=[1, 2]))
    result = run_sweep(sweep, tmp_path / "out", client=client)
    assert (tmp_path / "out" / "plots" / "loss.png").is_file()
    drawn = loss_overlay_plot(sweep, result.rows, tmp_path / "out", tmp_path / "loss.png")
    assert set(drawn["curves"]) == {"data=2", "data=4"}
    for label, curve in drawn["curves"].items():
        assert curve["seeds"] == 2
        assert np.all(np.array(curve["low"]) <= np.array(curve["mean"]) + 1e-12)
        assert np.all(np.array(curve["mean"]) <= np.array(curve["high"]) + 1e-12)
        firsts = []
        for r in result.rows:
            if f"data={r['parallelism.data']}" == label:
                with open(tmp_path / "out" / r["dir"] / "convergence.csv", newline="") as f:
                    firsts.append(float(next(csv.DictReader(f))["loss"]))
        assert curve["mean"][0] == pytest.approx(np.mean(firsts))


# --- report.html ------------------------------------------------------------------------------------


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict[str, str]] = []
        self.keys: list[str] = []
        self.scripts: list[dict[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        if tag == "tr" and "data-key" in a:
            self.keys.append(a["data-key"])
        if tag == "script":
            self.scripts.append(a)

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


NASTY = '<script>alert("x")</script> & <b>'


def test_the_run_report_embeds_every_plot_and_every_summary_key(tmp_path):
    out = main(["run", str(BERT), "--out", str(tmp_path / "run"), "--json",
                "--set", f"name={json.dumps(NASTY)}"])
    assert out == 0
    run = tmp_path / "run"
    page = _parse(run / "report.html")
    plots = sorted((run / "plots").glob("*.png"))
    assert {p.name for p in plots} >= {"iterations.png", "pipeline.png", "links.png"}
    by_file = {img["data-file"]: img["src"] for img in page.images}
    assert set(by_file) == {p.name for p in plots}
    for p in plots:
        head, data = by_file[p.name].split(",", 1)
        assert head == "data:image/png;base64" and base64.b64decode(data) == p.read_bytes()
    summary = json.loads((run / "summary.json").read_text())
    assert page.keys == list(summary)
    html = (run / "report.html").read_text()
    assert NASTY not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;" in html
    assert [s.get("id") for s in page.scripts] == ["trace-data", None]    # only ours: the trace and the button
    embedded = html.split('id="trace-data">', 1)[1].split("</script>", 1)[0]
    assert base64.b64decode(embedded) == (run / "trace.json").read_bytes()
    assert (run / "config.resolved.yaml").read_text().splitlines()[0] in "".join(page.text)
    text = "".join(page.text)
    assert "Links run at line rate" in text and "Not modelled" in text
    assert "its kind's efficiency (gemm 0.87, attention 0.6, elementwise 0.85" in text
    for value in summary.values():                         # strict JSON: never NaN or infinity
        assert not (isinstance(value, float) and not np.isfinite(value))


def test_no_plots_still_writes_a_report_and_the_folder_holds_one_run(tmp_path):
    run = tmp_path / "run"
    assert main(["run", str(BERT), "--out", str(run), "--json"]) == 0
    assert main(["run", str(BERT), "--out", str(run), "--json", "--no-plots"]) == 0
    assert sorted(p.name for p in run.iterdir()) == ["config.resolved.yaml", "iterations.csv", "report.html",
                                                     "run_info.json", "stages.csv", "summary.json", "trace.json",
                                                     "workers.csv"]
    page = _parse(run / "report.html")
    assert page.images == [] and "Plots were not written" in "".join(page.text)


def test_a_big_trace_is_not_embedded(tmp_path, monkeypatch):
    import simulator.report as report

    monkeypatch.setattr(report, "EMBED_TRACE_BYTES", 100)
    simulate(load_config(tiny())).write(tmp_path / "run", plots=False)
    html = (tmp_path / "run" / "report.html").read_text()
    assert 'id="trace-data"' not in html and "drag <code>trace.json</code>" in html


# --- --explain and --seeds ---------------------------------------------------------------------------


def test_explain_says_where_the_time_went(tmp_path, capsys):
    assert main(["run", str(BERT), "--out", str(tmp_path / "r"), "--explain", "--no-plots"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert "computing (forward, backward, optimizer step)" in out and "Pipeline bubble" in out
    assert f"{100 * summary['pipeline_bubble_fraction']:.1f} %" in out
    shares = [int(line.split()[-2]) for line in out.splitlines()
              if line.startswith("  ") and line.rstrip().endswith("%") and "wall" not in line]
    assert len(shares) == 3 and abs(sum(shares) - 100) <= 2


def test_seeds_is_replications(tmp_path, capsys):
    assert main(["run", str(BERT), "--out", str(tmp_path / "a"), "--json", "--no-plots", "--seeds", "2",
                 "--set", "stragglers.distribution=lognormal", "--set", "stragglers.sigma=0.1"]) == 0
    assert main(["run", str(BERT), "--out", str(tmp_path / "b"), "--json", "--no-plots", "--replications", "2",
                 "--set", "stragglers.distribution=lognormal", "--set", "stragglers.sigma=0.1"]) == 0
    a, b = ((tmp_path / x / "summary.json").read_text() for x in "ab")
    assert a == b and json.loads(a)["replications"] == 2 and "iteration_time_s_ci95" in json.loads(a)


# --- in a real browser -------------------------------------------------------------------------------


def _chromium() -> str | None:
    return next((b for b in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if shutil.which(b)), None)


@pytest.mark.browser
def test_the_report_renders_in_a_headless_browser_without_console_errors(tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium / chromium-browser / google-chrome on PATH (.ci/run installs one when it can)")
    import matplotlib.image

    run = tmp_path / "run"
    assert main(["run", str(BERT), "--out", str(run), "--json"]) == 0
    shot = tmp_path / "shot.png"
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
                           "--v=0", "--window-size=1200,1800", f"--screenshot={shot}",
                           (run / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50          # not blank: text and plots
    plots = pixels[500:1700]                                            # where the first plots are
    assert np.mean(np.any(plots < 0.9, axis=-1)) > 0.05                 # plenty of non-white there


def test_zipped_keys_are_one_axis_even_when_a_value_repeats(tmp_path):
    """examples/sweeps/topology.yaml zips kind with oversubscription (leaf_spine twice): every zip entry is
    its own category, never averaged with another that shares one of its values."""
    from simulator.sweep import load_sweep, metric_plot

    sweep = load_sweep(ROOT / "examples" / "sweeps" / "topology.yaml")
    kinds = sweep.spec.zip["cluster.topology.inter.kind"]
    overs = sweep.spec.zip["cluster.topology.inter.oversubscription"]
    rows = []
    for i, (kind, over) in enumerate(zip(kinds, overs, strict=True)):
        for alg in sweep.spec.grid["communication.algorithm"]:
            for seed in sweep.spec.seeds:
                rows.append({"status": "ok", "cluster.topology.inter.kind": kind,
                             "cluster.topology.inter.oversubscription": over, "communication.algorithm": alg,
                             "seed": seed, "iteration_time_s": 10.0 * i + (alg == "ring"), "workers": 128})
    drawn = metric_plot(sweep, rows, "cluster.topology.inter.kind", "iteration_time_s", tmp_path / "t.png")
    assert drawn["lines"]["algorithm=ring"]["mean"] == [1.0, 11.0, 21.0, 31.0, 41.0]
    assert drawn["lines"]["algorithm=hierarchical"]["low"] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert (tmp_path / "t.png").is_file()
