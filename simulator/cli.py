"""``trainsim`` command line: parse arguments, call the library, format. No modelling here.

Every command takes ``--json`` (one JSON object on stdout, nothing else there;
logs and progress go to stderr). Bad input is reported once, in ``main``, as one
line on stderr with exit status 2; any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, TrainsimInputError
from .formatting import fmt as _fmt
from .formatting import with_unit

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["main"]


@functools.cache
def stdout() -> Console:
    """The rich console on stdout, made when first printed to (``--help`` never loads rich)."""
    from rich.console import Console

    # a pipe or a file gets a fixed, roomy width instead of rich's 80-column default
    return Console(highlight=False, width=None if sys.stdout.isatty() else 140)


@functools.cache
def stderr() -> Console:
    """The rich console on stderr (progress, notes, the one-line errors), made when first used."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 140)


def say(text: str, *, dim: bool = False) -> None:
    """One line on stderr (a note, dim; or an error): through rich on a terminal, as plain text on a pipe or a
    file, so a scripted run that prints nothing else never loads rich (~25 ms of its start-up)."""
    if sys.stderr.isatty():
        from rich.markup import escape

        stderr().print(f"[dim]{escape(text)}[/dim]" if dim else text, markup=dim, highlight=False, soft_wrap=True)
    else:
        print(text, file=sys.stderr, flush=True)

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def names(what: str) -> dict[str, str]:
    """The names a config or flag accepts, with a short description each (imported only when asked)."""
    if what == "models":
        from .workloads import PRESETS

        return {k: f"{m.parameters / 1e6:,.1f} M parameters, {len(m.layers)} layers, "
                   f"{m.forward_flops / 1e9:,.1f} GFLOP forward per {m.sample_unit.rstrip('s')}"
                for k, m in PRESETS.items()}
    if what == "devices":
        from .devices import CATALOG, WORK_KINDS

        def peaks(d) -> str:   # the peak at each workload.precision the device has
            others = [f"{p} {getattr(d, f'{p}_flops') / 1e12:.4g}" for p in ("fp32", "tf32")
                      if getattr(d, f"{p}_flops") is not None]
            return f"{d.peak_flops / 1e12:.4g} TFLOP/s peak" + (f" ({', '.join(others)})" if others else "")

        return {k: f"{d.kind}, {peaks(d)}, {d.memory_bandwidth / 1e9:,.0f} GB/s, "
                   f"{d.memory_bytes / 1e9:,.0f} GB; efficiency "
                   + ", ".join(f"{w} {d.efficiency[w]:g}" for w in WORK_KINDS)
                for k, d in CATALOG.items()}
    if what == "topologies":
        import topologies

        def first(doc: str | None) -> str:
            line = (doc or "").strip().splitlines()[0] if doc else ""
            return line.removeprefix("Return ").replace("``", "")

        return {k: first(fn.__doc__) for k, fn in topologies.KINDS.items()}
    if what == "collectives":
        from .collectives import COLLECTIVES, algorithms

        return {c: "algorithms: " + ", ".join(algorithms(c)) for c in COLLECTIVES}
    if what == "algorithms":
        from .collectives import COLLECTIVES, algorithms

        found: dict[str, list[str]] = {}
        for c in COLLECTIVES:
            for a in algorithms(c):
                found.setdefault(a, []).append(c)
        return {a: ", ".join(cs) for a, cs in found.items()}
    if what.startswith("algorithms:"):
        from .collectives import algorithms

        return {a: "" for a in algorithms(what.split(":", 1)[1])}
    raise TrainsimInputError(f"list: expected one of {', '.join(LISTS)}, got {what!r}")


LISTS = ("models", "devices", "algorithms", "collectives", "topologies")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Help that shows each option's default and, for options that take a name, the names it accepts."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        listed = getattr(action, "names", None)
        if listed:
            text += f" [one of: {', '.join(names(listed))}]"
        default = action.default
        if ("%(default)" not in text and "default:" not in text and action.option_strings
                and default not in (None, False, [], argparse.SUPPRESS)):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """An argument error is one line (no usage block), exit status 2, like every other bad input."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def named(action: argparse.Action, what: str) -> argparse.Action:
    """Mark ``action`` as taking one of ``names(what)``; its help lists them."""
    action.names = what  # type: ignore[attr-defined]
    return action


def bounded(kind: type, low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: an ``int`` or a finite ``float`` in ``[low, high]`` (else a one-line argument error)."""
    import math

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a number from {low:g} to {high:g}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def command(name: str, configure: Callable[[argparse.ArgumentParser], None]):
    def register(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (configure, fn)
        return fn
    return register


def print_mapping(title: str, data: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    for key, value in data.items():
        table.add_row(key, with_unit(key, value))
    stdout().print(table)


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, key in enumerate(rows[0]):
        table.add_column(key, justify="left" if i == 0 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*(_fmt(v) for v in row.values()))
    stdout().print(table)


PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def check_file_path(path: Path, flag: str, suffixes: Sequence[str] = PLOT_SUFFIXES, example: str = "plot.png") -> None:
    """A file to write: a known suffix, not a folder, in a folder that exists (or can be made) and is
    writable; else one line. Checked before any work is done."""
    import os

    if path.suffix.lower() not in suffixes:
        raise TrainsimInputError(f"{flag} {path}: expected a file ending in {', '.join(suffixes)}")
    if path.is_dir():
        raise TrainsimInputError(f"{flag} {path}: is a folder; give a file name like {example}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainsimInputError(f"{flag} {path}: cannot create its folder ({e.strerror or e})") from None
    if not os.access(path.parent, os.W_OK):
        raise TrainsimInputError(f"{flag} {path}: its folder is not writable")


def refuse_to_replace(path: Path, flag: str, kind: str, is_kind: Callable[[Path], bool]) -> None:
    """An existing file is replaced only if it is what we would write there (a previous result), never a user's
    config or data."""
    if path.is_file() and not is_kind(path):
        raise TrainsimInputError(f"{flag} {path}: exists and is not {kind}; choose another name or remove it")


def _yaml_head(path: Path) -> Any:
    from topologies import safe_yaml

    try:
        return safe_yaml.read(path)
    except safe_yaml.YAMLInputError:
        return None


def _is_topology_file(path: Path) -> bool:
    if path.suffix.lower() == ".graphml":
        with path.open("rb") as f:
            return b"<graphml" in f.read(4096)
    data = _yaml_head(path)
    return isinstance(data, dict) and {"graph", "nodes", "edges"} <= set(data)


def _is_profile_file(path: Path) -> bool:
    data = _yaml_head(path)
    return isinstance(data, dict) and str(data.get("format", "")).startswith("trainsim-profile/")


def check_plot_path(path: Path, flag: str) -> None:
    check_file_path(path, flag)


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None):
    """A rich progress bar on stderr, yielding ``update(completed, total=None, description=None)``.

    Drawn only on a terminal: a pipe or a log file gets no bar (and no stray blank line before an error).
    """
    if not sys.stderr.isatty():
        yield lambda *a, **k: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr(), transient=True) as bar:
        task = bar.add_task(description, total=total)

        def update(completed: int, total: int | None = None, description: str | None = None) -> None:
            fields = {"completed": completed}
            if total is not None:
                fields["total"] = total
            if description is not None:
                fields["description"] = description
            bar.update(task, **fields)

        yield update


def emit_json(obj: Any) -> None:
    from .results import strict_json

    sys.stdout.write(strict_json(obj, indent=2) + "\n")


# --- trainsim run ---------------------------------------------------------------------


def _configure_run(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="YAML config (see examples/)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/<name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key before validation, e.g. --set parallelism.data=64")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.add_argument("--no-plots", action="store_true",
                   help="skip PNG plots (report.html is still written, without them)")
    p.add_argument("--replications", "--seeds", dest="replications", metavar="R",
                   help="run R derived seeds; the summary gives means and 95%% CIs (= --set training.replications=R;"
                        " --seeds R is the same flag)")
    p.add_argument("--explain", action="store_true",
                   help="after the run, say in words where each second of an iteration went (stderr with --json)")
    p.add_argument("--explain-placement", action="store_true",
                   help="print where every rank runs (device, node, groups, stages) and exit without simulating")
    p.epilog = ("example: trainsim run examples/01_resnet50_128gpu_ring.yaml --out runs/r50\n"
                "names a config accepts: trainsim list models | devices | topologies | algorithms | collectives")


@command("run", _configure_run)
def cmd_run(args: argparse.Namespace) -> int:
    with importing():
        from .config import load_config, locate
        from .run import simulate

    overrides = args.overrides + ([f"training.replications={args.replications}"] if args.replications else [])
    config = load_config(args.config, overrides)
    if args.explain_placement:
        from .placement_report import explain_placement

        explain_placement(config, as_json=args.json, console=stdout())
        return 0
    with progress_bar(f"simulating {config.name}", config.training.iterations * config.training.replications) as bar:
        try:
            result = simulate(config, progress=lambda it: bar(it + 1))
        except ConfigError as e:  # a check that needs the built job: name the file (or the --set) too
            raise locate(e, args.config, overrides) from None
    out = args.out or Path("runs") / config.name
    from .provenance import provenance

    result.run_info.update(provenance(["trainsim", *args.argv]))
    plots = config.output.plots and not args.no_plots
    if plots:
        with importing():
            from .plots import pyplot

            pyplot()
    result.write(out, plots=plots)
    if args.json:
        emit_json(result.summary)
    else:
        print_mapping(f"{config.name}  →  {out}/", result.summary)
    if args.explain:
        from .explain import explain_lines

        print("\n".join(explain_lines(result.summary)), file=sys.stderr if args.json else sys.stdout, flush=True)
    say(f"wrote {out}/ (simulated in {result.run_info['sim_wall_s']:.2f} s; open {out}/report.html)", dim=True)
    return 0


# --- trainsim collective --------------------------------------------------------------


def _configure_collective(p: argparse.ArgumentParser) -> None:
    named(p.add_argument("--algorithm", default="ring", help="an algorithm of --collective, 'auto' or 'all'"),
          "algorithms:allreduce")
    named(p.add_argument("--collective", default="allreduce", help="the collective to time"), "collectives")
    p.add_argument("--ranks", default="8", help="e.g. 8 or 2,4,8 or 2..64:x2")
    p.add_argument("--size", "--sizes", dest="sizes", default="64MiB", help="e.g. 64MiB or 8B..1GiB:x4")
    named(p.add_argument("--topology", default="switch", help="topology kind"), "topologies")
    p.add_argument("--bandwidth", default="10GB/s", help="link bandwidth, e.g. 100Gbps")
    p.add_argument("--latency", default="1us", help="per-hop latency, e.g. 1us")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a topology parameter (e.g. k=4 for fat_tree) or, when an algorithm of --collective "
                        "takes the key, an algorithm option (pipeline_chunks=16 for double_binary_tree; inter=, "
                        "intra=, pipeline_chunks= for hierarchical), or a link class: class=nvlink, "
                        "efficiency=0.9, software_latency=2us for every link (intra_class=, inter_class=, ... "
                        "for hierarchical) and launch_latency=8.4us per collective (topologies/link_classes.py)")
    p.add_argument("--gamma", type=bounded(float, 0, 1), default=0.0, help="reduce cost, seconds per byte")
    p.add_argument("--network", choices=["fluid", "alpha_beta"], default="fluid")
    p.add_argument("--plot", type=Path,
                   help="write a log-log time-vs-size plot here (.png, .svg or .pdf); nothing is written unless asked")
    p.add_argument("--json", action="store_true", help="print results as one JSON object on stdout")
    p.epilog = ("example: trainsim collective --algorithm ring --ranks 8 --size 64MiB "
                "--topology switch --bandwidth 10GB/s --latency 1us --json")


@command("collective", _configure_collective)
def cmd_collective(args: argparse.Namespace) -> int:
    from .collective_report import collective_rows, plot_rows
    from .collectives import COLLECTIVES
    from .sizes import parse_ranks, parse_sizes

    if args.collective not in COLLECTIVES:
        raise TrainsimInputError(f"--collective: expected one of {', '.join(COLLECTIVES)}, got {args.collective!r}")
    if args.plot is not None:
        check_plot_path(args.plot, "--plot")
    rows = collective_rows(
        algorithm=args.algorithm, collective=args.collective, ranks=parse_ranks(args.ranks),
        sizes=parse_sizes(args.sizes), topology=args.topology, bandwidth=args.bandwidth,
        latency=args.latency, params=args.param, gamma=args.gamma, network=args.network)
    if args.plot is not None:             # written only where asked
        plot_rows(rows, args.plot)
    if args.json:
        emit_json(rows[0] if len(rows) == 1 else {"results": rows})
    else:
        note = "  (* chosen by auto)" if args.algorithm == "auto" else ""
        print_rows(f"{args.collective} on {args.topology} ({args.network} network){note}", [_compact(r) for r in rows])
    if args.plot is not None:
        say(f"wrote {args.plot}", dim=True)
    return 0


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" or n == int(n) else f"{n:.3g} {unit}"
        n /= 1024
    return str(n)


def _human_seconds(t: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.4g} {unit}"
    return f"{t * 1e9:.4g} ns"


def _compact(row: dict[str, Any]) -> dict[str, Any]:
    """A table row that fits a terminal: human units, no repeated columns."""
    out = {"algorithm": row["algorithm"] + ("*" if row.get("chosen_by") == "auto" else "")
           + (f" ({row['options']})" if row.get("options") else ""),
           "ranks": row["ranks"], "size": _human_bytes(row["size_bytes"]),
           "simulated": _human_seconds(row["simulated_s"]), "analytic": _human_seconds(row["analytic_s"]),
           "algbw GB/s": f"{row['algbw_GBps']:.4g}", "busbw GB/s": f"{row['busbw_GBps']:.4g}"}
    return out


# --- trainsim sweep -------------------------------------------------------------------


def _configure_sweep(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", type=Path, help="sweep YAML: base config + grid/zip of dotted keys + seeds")
    p.add_argument("--out", type=Path, help="output folder (default: runs/<sweep name>)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    p.add_argument("--workers", type=bounded(int, 1, 1024), help="embedded LocalCluster size (default: one per CPU)")
    p.add_argument("--dry-run", action="store_true", help="list the points (and which are cached); run nothing")
    p.add_argument("--no-plots", action="store_true", help="skip plots/*.png (report.html is still written)")
    p.add_argument("--json", action="store_true", help="print counts and paths as one JSON object on stdout")
    p.epilog = "example: trainsim sweep examples/sweeps/scaling.yaml --out runs/scaling --workers 4"


@command("sweep", _configure_sweep)
def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import POINTS, load_sweep, run_sweep

    sweep = load_sweep(args.sweep)
    out = args.out or Path("runs") / sweep.name
    if args.dry_run:
        rows = [{"point": p.index, **{k: p.values[k] for k in sweep.varied}, "seed": p.seed, "hash": p.hash,
                 "cached": any((out / POINTS / p.hash / f).is_file() for f in ("summary.json", "error.json"))}
                for p in sweep.points]
        if args.json:
            emit_json({"sweep": sweep.name, "points": rows})
        else:
            print_rows(f"{sweep.name}: {len(rows)} points (nothing run)", rows)
        return 0
    with progress_bar(f"sweep {sweep.name}") as bar:
        result = run_sweep(sweep, out, scheduler=args.scheduler, workers=args.workers, plots=not args.no_plots,
                           progress=lambda done, total: bar(done, total))
    info = {"out": str(out), "points": len(sweep.points), "computed": result.computed, "cached": result.cached,
            "failed": result.failed, "files": [str(f) for f in result.files], "wall_s": round(result.wall_s, 3)}
    if args.json:
        emit_json(info)
    else:
        print_mapping(f"sweep {sweep.name}  →  {out}/", {k: v for k, v in info.items() if k != "files"})
        for f in result.files:
            say(f"wrote {f}", dim=True)
    return 0


# --- trainsim topology ----------------------------------------------------------------


def _configure_topology(p: argparse.ArgumentParser) -> None:
    named(p.add_argument("kind", help="a topology kind, or a topology file"), "topologies")
    p.add_argument("params", nargs="*", metavar="KEY=VALUE", help="builder parameters, e.g. k=4")
    p.add_argument("--draw", type=Path, help="write a drawing of the graph as PNG")
    p.add_argument("--save", type=Path, help="write the graph as a topology YAML file")
    p.add_argument("--json", action="store_true")
    p.epilog = "example: trainsim topology fat_tree k=4 bandwidth=100Gbps latency=1us --draw ft.png"


@command("topology", _configure_topology)
def cmd_topology(args: argparse.Namespace) -> int:
    from .topology_report import describe_topology, draw, make_topology

    if args.draw:
        check_plot_path(args.draw, "--draw")
    if args.save:
        check_file_path(args.save, "--save", (".yaml", ".yml", ".graphml"), "graph.yaml")
        refuse_to_replace(args.save, "--save", "a topology file", _is_topology_file)
    graph = make_topology(args.kind, args.params)
    info = describe_topology(graph)
    if args.draw:
        draw(graph, args.draw)
    if args.save:
        import topologies

        topologies.save(graph, args.save)
    if args.json:
        emit_json(info)
    else:
        print_mapping(f"topology {graph.graph.get('kind', args.kind)}", info)
    return 0


# --- trainsim validate / calibrate / compare -------------------------------------------


def _configure_validate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the kernels run")
    named(p.add_argument("--algorithms", default="ring,recursive_doubling",
                         help="comma-separated allreduce algorithms"), "algorithms:allreduce")
    p.add_argument("--ranks", default="2,4", help="e.g. 2,4 or 2..8:x2")
    p.add_argument("--sizes", default="4KiB..64MiB:x4", help="bytes per rank, e.g. 4KiB..64MiB:x4")
    p.add_argument("--dtype", default="float32", help="element type of the buffers")
    p.add_argument("--repeats", type=bounded(int, 1, 100_000), default=10, help="timed repetitions per point")
    p.add_argument("--warmup", type=bounded(int, 0, 100_000), default=3,
                   help="untimed repetitions per point (JIT, page faults)")
    p.add_argument("--rounds", type=bounded(int, 1, 1_000), default=1,
                   help="spread the repetitions over this many passes, each in its own shuffled order")
    p.add_argument("--seed", type=bounded(int, 0, 2**32 - 1), default=20240605,
                   help="seed of the shuffled order in which points are visited")
    p.add_argument("--cache", choices=["warm", "flush"], default="warm",
                   help="warm: each repetition starts with its inputs just copied into place; flush: each rank first "
                        "sweeps a private buffer larger than its caches (CPU)")
    p.add_argument("--no-pin", action="store_true", help="do not pin each rank to its own CPU")
    p.add_argument("--no-sentinel", action="store_true",
                   help="do not time a small sentinel allreduce next to every point (which waits for a quiet machine, "
                        "measures disturbed points again and leaves disturbed repetitions out of the fit)")
    p.add_argument("--allow-oversubscribed", action="store_true",
                   help="fit rank counts that run with more ranks than CPUs (refused otherwise)")
    p.add_argument("--repeat", type=bounded(int, 1, 2), default=1,
                   help="2: run the whole validation twice and report run 1's profile on run 2's measurements")
    p.add_argument("--holdout", choices=["sizes", "ranks", "algorithms", "none"], default="sizes",
                   help="kept out of the fit: every other size (default), the largest rank count, or every "
                        "algorithm but ring and recursive_doubling")
    _fit_options(p)
    p.add_argument("--reference", choices=["mpi"], help="also time MPI_Allreduce (needs mpi4py and mpiexec)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/validate-<device>)")
    p.add_argument("--no-plots", action="store_true", help="skip predicted_vs_measured.png")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.epilog = ("example: trainsim validate --device cpu --algorithms ring,recursive_doubling --ranks 2,4 "
                "--sizes 4KiB..64MiB:x4 --out runs/val (on fewer than 4 CPUs: --ranks 2; on a shared machine add "
                "--rounds 5 --statistic p10 --repeat 2)")


@command("validate", _configure_validate)
def cmd_validate(args: argparse.Namespace) -> int:
    from validation.pipeline import validate

    from .sizes import parse_ranks, parse_sizes

    out = args.out or Path("runs") / f"validate-{args.device}"
    with progress_bar("measuring") as bar:
        run = validate(
            out=out, device=args.device, algorithms=[a.strip() for a in args.algorithms.split(",") if a.strip()],
            ranks=parse_ranks(args.ranks), sizes=parse_sizes(args.sizes), dtype=args.dtype, repeats=args.repeats,
            warmup=args.warmup, rounds=args.rounds, holdout=args.holdout, max_regimes=args.regimes, by=args.by,
            reference=args.reference, seed=args.seed, cache=args.cache, pin=not args.no_pin,
            sentinel=not args.no_sentinel,
            allow_oversubscribed=args.allow_oversubscribed, repeat=args.repeat, statistic=args.statistic,
            cache_sizes=_cache_sizes(args),
            plot=not args.no_plots, command=["trainsim", *args.argv],
            progress=lambda done, total, label: bar(done, total, label))
    _report_comparison(run.comparison, args.json, out, run.files)
    return 0


def _report_comparison(comparison: Any, as_json: bool, out: Path | None, files: Sequence[Path]) -> None:
    from validation.report import comparison_rows, mape_rows

    if as_json:
        emit_json({"out": str(out) if out else None, "files": [str(f) for f in files], **comparison.summary,
                   "regimes": [r.model_dump(mode="json", exclude_none=True) for r in comparison.profile.regimes]})
        return
    print_rows(f"predicted vs measured ({comparison.profile.name}, {comparison.profile.device})",
               comparison_rows(comparison))
    _print_profile("profile", comparison.profile)
    print_rows("error on held-out points only (MAPE; never on fitted points)", mape_rows(comparison.summary))
    for f in files:
        say(f"wrote {f}", dim=True)


def _print_profile(title: str, profile: Any) -> None:
    """The profile's regimes, then each coefficient fixed at 0 with its whole reason (a table of its own)."""
    from validation.report import fixed_rows, regime_rows

    print_rows(title, [{k: v for k, v in r.items() if k != "fixed"} for r in regime_rows(profile)])
    if profile.regimes and any(r.fixed for r in profile.regimes):
        print_rows("coefficients fixed at 0, and why", fixed_rows(profile))


def _fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--regimes", type=bounded(int, 1, 64), default=None,
                   help="at most this many message-size regimes per group found by BIC (default: 1 for the kernels "
                        "when the measurements record the machine's caches, whose sizes place the bends; else 2)")
    p.add_argument("--by", choices=["auto", "joint", "ranks", "algorithm", "algorithm+ranks"], default="auto",
                   help="which points share alpha, beta, gamma (default: chosen from the data by BIC)")
    p.add_argument("--cache-size", action="append", default=[], metavar="LEVEL=SIZE",
                   help="use this size for a cache level instead of the one the provenance records (e.g. "
                        "L3=16MiB for a VM's share of a host cache); repeatable; recorded in the profile")
    p.add_argument("--statistic", choices=["median", "p10", "min"], default="median",
                   help="what a point's repetitions are summarised by before fitting (p10 or min on a shared "
                        "machine: background load only adds time)")


def _cache_sizes(args: argparse.Namespace) -> dict[str, int]:
    from .sizes import parse_cache_size

    return dict(parse_cache_size(text) for text in args.cache_size)


def _log_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ranks", type=bounded(int, 2, 2**20),
                   help="rank count of an OSU log (OSU does not record it; the -np of the run)")
    p.add_argument("--collective", choices=["allreduce", "allgather", "reduce_scatter", "broadcast", "reduce",
                                            "alltoall"],
                   help="the collective of an nccl-tests log that does not name its test")


def _read_log(args: argparse.Namespace) -> Any:
    from validation.foreign import read_any

    return read_any(args.measurements, ranks=args.ranks, collective=args.collective)


def _configure_calibrate(p: argparse.ArgumentParser) -> None:
    p.add_argument("measurements", type=Path,
                   help="measurements.csv from `trainsim validate`, or an nccl-tests or OSU micro-benchmark log")
    p.add_argument("--out", type=Path, required=True, help="profile YAML to write")
    p.add_argument("--holdout", choices=["sizes", "ranks", "algorithms", "none"], default="sizes",
                   help="kept out of the fit: every other size (default), the largest rank count, every algorithm "
                        "but ring and recursive_doubling; none = fit everything")
    _log_options(p)
    _fit_options(p)
    p.add_argument("--allow-oversubscribed", action="store_true",
                   help="fit rank counts the provenance says ran with more ranks than CPUs (refused otherwise)")
    p.add_argument("--name", help="profile name (default: <device>-<collective>)")
    p.add_argument("--link-class", help="write a link profile: the fit as this link class's efficiency and "
                                        "software latency (cluster.profile then applies them on the topology)")
    p.add_argument("--line-rate", help="with --link-class: the measured links' rate per direction, e.g. 450GB/s")
    p.add_argument("--hops", type=bounded(int, 1, 64), default=2,
                   help="with --link-class: links a message crossed (default 2: device, switch, device)")
    p.add_argument("--hop-latency", default="0", help="with --link-class: latency per hop (default 0)")
    p.add_argument("--json", action="store_true", help="print the profile as one JSON object on stdout")
    p.epilog = ("example: trainsim calibrate runs/val/measurements.csv --out profile.yaml "
                "(or an nccl-tests log: trainsim calibrate all_reduce.log --out profile.yaml; "
                "trainsim calibrate all_reduce.log --link-class nvlink --line-rate 450GB/s --out nvlink.yaml)")


def _link_class_args(args: argparse.Namespace) -> tuple[float, float] | None:
    """``(line rate B/s, hop latency s)`` with ``--link-class``; None without; each misuse one line."""
    from topologies.units import UnitError, parse

    if args.link_class is None:
        for flag, value, default in (("--line-rate", args.line_rate, None), ("--hops", args.hops, 2),
                                     ("--hop-latency", args.hop_latency, "0")):
            if value != default:
                raise TrainsimInputError(f"{flag}: applies with --link-class only")
        return None
    if args.line_rate is None:
        raise TrainsimInputError("--link-class: needs --line-rate (the measured links' rate, e.g. 450GB/s)")
    parsed = []
    for flag, value, kind in (("--line-rate", args.line_rate, "bandwidth"), ("--hop-latency", args.hop_latency,
                                                                              "duration")):
        try:
            parsed.append(parse(value, kind))
        except UnitError as e:
            raise TrainsimInputError(f"{flag}: {getattr(e, 'expected', e)}") from None
    return parsed[0], parsed[1]


@command("calibrate", _configure_calibrate)
def cmd_calibrate(args: argparse.Namespace) -> int:
    from validation.calibrate import calibrate

    check_file_path(args.out, "--out", (".yaml", ".yml"), "profile.yaml")
    refuse_to_replace(args.out, "--out", "a hardware profile", _is_profile_file)
    link = _link_class_args(args)
    profile = calibrate(_read_log(args), holdout=args.holdout, max_regimes=args.regimes, by=args.by,
                        name=args.name, command=["trainsim", *args.argv],
                        allow_oversubscribed=args.allow_oversubscribed, statistic=args.statistic,
                        cache_sizes=_cache_sizes(args))
    if link is not None:
        from validation.calibrate import as_link_profile

        profile = as_link_profile(profile, args.link_class, link[0], hops=args.hops, hop_latency=link[1])
    profile.save(args.out)
    if args.json:
        emit_json(profile.model_dump(mode="json", exclude_none=True))
    elif link is not None:
        (name, figures), = profile.link_classes.items()
        print_rows(f"link profile {profile.name} ({profile.device})",
                   [{"class": name, "efficiency": figures.efficiency, "software_latency_s": figures.software_latency_s,
                     "gamma_s_per_byte": profile.gamma_s_per_byte}])
    else:
        _print_profile(f"profile {profile.name} ({profile.device}, {profile.fit['points_fitted']} points fitted, "
                       f"{profile.fit['points_held_out']} held out)", profile)
    say(f"wrote {args.out}", dim=True)
    return 0


def _configure_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument("profile", type=Path, help="profile YAML (from `trainsim calibrate` or validation/profiles/)")
    p.add_argument("measurements", type=Path, help="measurements.csv, or an nccl-tests or OSU micro-benchmark log")
    _log_options(p)
    p.add_argument("--reference", type=Path, help="MPI reference measurements (reference_mpi.csv)")
    p.add_argument("--out", type=Path, help="write comparison.csv and predicted_vs_measured.png here")
    p.add_argument("--no-plots", action="store_true", help="skip predicted_vs_measured.png")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    p.epilog = "example: trainsim compare runs/val/profile.yaml runs/val/measurements.csv --out runs/val-compare"


@command("compare", _configure_compare)
def cmd_compare(args: argparse.Namespace) -> int:
    from validation.compare import compare
    from validation.records import atomic_folder, check_out_folder

    if args.out:
        check_out_folder(args.out)
    comparison = compare(args.profile, _read_log(args), reference=args.reference)
    files: list[Path] = []
    if args.out:
        with atomic_folder(args.out) as tmp:
            files = [args.out / f.name for f in comparison.write(tmp, plot=not args.no_plots)]
    _report_comparison(comparison, args.json, args.out, files)
    return 0


# --- trainsim kernels -----------------------------------------------------------------


def _configure_kernels(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["bench"], help="bench: time an algorithm on real kernels over sizes")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    named(p.add_argument("--algorithm", default="ring", help="an algorithm registered for --collective"),
          "algorithms:allreduce")
    named(p.add_argument("--collective", default="allreduce", help="the collective to run"), "collectives")
    p.add_argument("--ranks", default="2", help="e.g. 4 or 2,4 or 2..8:x2")
    p.add_argument("--sizes", "--size", dest="sizes", default="1KiB..64MiB:x4",
                   help="bytes per rank, e.g. 1KiB..64MiB:x4")
    p.add_argument("--dtype", default="float32", help="float32, float64 or int32")
    p.add_argument("--repeats", type=bounded(int, 1, 100_000), default=5,
                   help="timed repetitions per size (the median is reported)")
    p.add_argument("--warmup", type=bounded(int, 0, 100_000), default=2, help="untimed repetitions before them")
    p.add_argument("--mode", default="process", help="cpu only: process (one OS process per rank) or thread")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="schedule option, e.g. --param devices_per_node=2 (hierarchical)")
    p.add_argument("--json", action="store_true", help="print results as one JSON object on stdout")
    p.epilog = "example: trainsim kernels bench --device cpu --algorithm ring --ranks 2,4 --sizes 1KiB..64MiB:x4"


def _int_params(params: list[str]) -> dict[str, int]:
    out = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep or not value.strip().lstrip("-").isdigit():
            raise TrainsimInputError(f"--param: expected KEY=INTEGER, e.g. devices_per_node=2, got {item!r}")
        out[key.strip()] = int(value)
    return out


@command("kernels", _configure_kernels)
def cmd_kernels(args: argparse.Namespace) -> int:
    from kernels import KernelError
    from kernels.bench import BenchInputError, bench

    from .sizes import parse_ranks, parse_sizes

    sizes, ranks, options = parse_sizes(args.sizes), parse_ranks(args.ranks), _int_params(args.param)
    def progress(row: dict[str, Any]) -> None:
        size, took = _human_bytes(row["size_bytes"]), _human_seconds(row["time_s"])
        say(f"{row['ranks']} ranks, {size}: {took}", dim=True)

    try:
        rows = bench(device=args.device, algorithm=args.algorithm, ranks=ranks, sizes=sizes,
                     collective=args.collective, dtype=args.dtype, repeats=args.repeats, warmup=args.warmup,
                     mode=args.mode, progress=progress, **options)
    except (BenchInputError, KernelError) as e:  # bad arguments, or a rank that died, hung or miscomputed
        raise TrainsimInputError(str(e)) from None
    if args.json:
        emit_json({"results": rows})
        return 0
    table = [{"ranks": r["ranks"], "size": _human_bytes(r["size_bytes"]), "time": _human_seconds(r["time_s"]),
              "algbw GB/s": f"{r['algbw_GBps']:.4g}",
              "busbw GB/s": "-" if r["busbw_GBps"] is None else f"{r['busbw_GBps']:.4g}"} for r in rows]
    first = rows[0]
    print_rows(f"{first['algorithm']} {first['collective']} on {first['device']} ({first['mode']}, {first['dtype']}, "
               f"median of {first['repeats']})", table)
    return 0


# --- trainsim list --------------------------------------------------------------------


def _configure_list(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=LISTS, help="which names to list")
    p.add_argument("--json", action="store_true", help="print {name: description} as one JSON object on stdout")
    p.epilog = "example: trainsim list models"


@command("list", _configure_list)
def cmd_list(args: argparse.Namespace) -> int:
    found = names(args.what)
    if args.json:
        emit_json(found)
    else:
        from rich.table import Table

        table = Table(title=f"{args.what} ({len(found)})", title_justify="left")
        table.add_column("name", style="bold", no_wrap=True)
        table.add_column("collectives" if args.what == "algorithms" else "description")
        for key, text in found.items():
            table.add_row(key, text)
        stdout().print(table)
    return 0


# --- trainsim lesson ------------------------------------------------------------------


def _configure_lesson(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["list", "show", "run"], help="list the lessons, show one's page, or run it")
    p.add_argument("number", nargs="?", help="the lesson's number (show, run)")
    p.add_argument("--out", type=Path, help="output folder (default: runs/lesson-<N>)")
    p.add_argument("--workers", type=bounded(int, 1, 1024),
                   help="Dask worker processes for the lesson's sweeps (default: 2)")
    p.add_argument("--json", action="store_true", help="print the claims (or the list) as one JSON object on stdout")
    p.epilog = "example: trainsim lesson run 4 --out runs/lesson-4"


@command("lesson", _configure_lesson)
def cmd_lesson(args: argparse.Namespace) -> int:
    from . import lessons

    if args.action == "list":
        rows = lessons.listing()
        if args.json:
            emit_json({"lessons": rows})
        else:
            print_rows("lessons (docs/lessons/)", rows)
        return 0
    if args.number is None:
        raise TrainsimInputError(f"lesson {args.action}: expected a lesson number, e.g. "
                                 f"trainsim lesson {args.action} 1")
    les = lessons.lesson(args.number)
    if args.action == "show":
        from rich.markdown import Markdown

        if not les.page.is_file():
            raise TrainsimInputError(f"lesson {les.number}: {les.page} is missing (lessons need a checkout)")
        stdout().print(Markdown(les.page.read_text(encoding="utf-8")))
        return 0
    out = args.out or Path("runs") / f"lesson-{les.number}"
    with progress_bar(f"lesson {les.number}") as bar:
        run = lessons.run_lesson(les.number, out, workers=args.workers, progress=lambda label: bar(0, None, label))
    if args.json:
        emit_json({"lesson": les.number, "title": les.title, "out": str(out), "holds": run.holds,
                   "claims": run.results, "plots": [str(out / p) for p in les.plots]})
    else:
        from rich.table import Table

        table = Table(title=f"lesson {les.number}: {les.title}  →  {out}/", title_justify="left")
        table.add_column("", no_wrap=True)
        table.add_column("claim")
        table.add_column("what the run gave")
        for r in run.results:
            table.add_row("[green]✓[/green]" if r["holds"] else "[red]✗[/red]", r["claim"], r["detail"])
        stdout().print(table)
        for plot in les.plots:
            say(f"look at {out / plot}", dim=True)
    if not run.holds:
        failed = next(r for r in run.results if not r["holds"])
        say(f"trainsim lesson: claim does not hold: {failed['claim']} ({failed['detail']})")
        return 1
    return 0


# --- main -------------------------------------------------------------------------------


class _Version(argparse.Action):
    """``--version``: the installed distribution's version, looked up only when asked (importlib.metadata is
    a fifth of ``--help``'s imports)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit", **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from .provenance import version

        sys.stdout.write(f"trainsim {version()}\n")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trainsim", description="Simulate distributed deep-learning training on a cluster you describe in YAML.")
    parser.add_argument("--version", action=_Version)
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (configure, fn) in COMMANDS.items():
        sub = subs.add_parser(name, help=(fn.__doc__ or configure.__doc__ or name).strip().splitlines()[0],
                              formatter_class=_Help)
        configure(sub)
        sub.set_defaults(handler=fn)
    return parser


@contextlib.contextmanager
def importing():
    """No garbage collection while a command imports its libraries.

    Importing numpy, networkx, pydantic and the models allocates a few hundred thousand objects that live
    until the process ends; the collector, triggered every 700 allocations, walked them ~160 times for
    nothing (~15 % of ``trainsim run``'s imports, measured). They are then frozen: left in the youngest
    generation, the first collection after the pause walked all ~84,000 of them at once (~35 ms, measured).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; ``argv`` None: the program itself (``sys.argv``), which exits afterwards."""
    if argv is None:
        # the simulator's arrays are small: BLAS threads would only spin (~0.1 s of CPU while numpy is
        # imported, measured) and oversubscribe a sweep's worker processes; a value the user set is kept
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        return _main(argv)
    finally:
        if argv is None:
            # the interpreter's last collection would walk every object still alive (~0.1 s after a run,
            # measured) only to free memory the exit frees anyway; frozen objects are left to the exit
            gc.freeze()


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # provenance records the command line
    try:
        return args.handler(args)
    except TrainsimInputError as e:
        say(f"trainsim {args.command}: error: {e}")
        return 2
    except OSError as e:  # a path the user gave that the system refuses (too long, no permission, ...)
        if e.filename is None:
            raise
        say(f"trainsim {args.command}: error: {e.filename}: {e.strerror or e}")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130


cmd_run.__doc__ = "simulate a training run from a YAML config"
cmd_collective.__doc__ = "time one collective: simulated, analytic, algbw/busbw"
cmd_topology.__doc__ = "build a topology and describe or draw it"
cmd_kernels.__doc__ = "run collectives on real Numba kernels (CPU processes or a GPU): bench"
cmd_sweep.__doc__ = "run a sweep of configs (grid/zip/seeds) on Dask; write results.csv"
cmd_validate.__doc__ = "measure real collectives, calibrate the simulator, compare predicted with measured"
cmd_calibrate.__doc__ = "fit a hardware profile (alpha, beta, gamma) to measurements.csv"
cmd_compare.__doc__ = "compare a profile's predictions with measurements (held-out MAPE)"
cmd_lesson.__doc__ = "the classroom course: list, show or run a numbered lesson and check its answers"
cmd_list.__doc__ = "list the names configs and flags accept: models, devices, algorithms, collectives, topologies"

if __name__ == "__main__":
    sys.exit(main())
