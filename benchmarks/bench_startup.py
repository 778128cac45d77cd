"""Benchmark: start-up of the CLI, whole processes (issue 19).

Bars: ``trainsim --help`` <= 0.3 s; ``trainsim run`` on example 01 <= 2 x its simulation part
(``sim_wall_s`` in ``run_info.json``) + 0.3 s. Each variant is a command prefix that starts trainsim (an
installed ``trainsim`` script, or ``python -m simulator`` with ``PYTHONPATH`` set); the variants run
interleaved, one fresh process per repetition, and each row gives the median of the repetitions' wall
seconds, CPU seconds (user + sys of the child) and, for runs, ``sim_wall_s``.

    python benchmarks/bench_startup.py --variant base=/tmp/v-base/bin/trainsim \\
        --variant new=/tmp/v-new/bin/trainsim --repeats 7
    python benchmarks/bench_startup.py --variant "src=env PYTHONPATH=$PWD python -m simulator" --commands help

Commands timed: ``--help``; ``run`` with the README's first command (``--out DIR``: plots and report
written); ``run ... --no-plots --json`` (the summary only, plus report.html without plots).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "01_resnet50_128gpu_ring.yaml"
COMMANDS = {
    "help": ["--help"],
    "run": ["run", str(EXAMPLE), "--out", "{out}"],
    "run --no-plots --json": ["run", str(EXAMPLE), "--out", "{out}", "--no-plots", "--json"],
}


def one(prefix: list[str], args: list[str], scratch: Path) -> dict:
    out = scratch / f"r{time.perf_counter_ns()}"
    argv = prefix + [a.replace("{out}", str(out)) for a in args]
    t = time.perf_counter()
    # in a scratch folder: ``python -m`` puts the current folder first on sys.path, which would shadow a
    # variant's PYTHONPATH with whatever tree the benchmark was started in
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=scratch)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} exited {proc.returncode}: {err.strip()[-500:]}")
    row = {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}
    info = out / "run_info.json"
    if info.exists():
        row["sim_wall_s"] = json.loads(info.read_text())["sim_wall_s"]
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", action="append", required=True, metavar="LABEL=COMMAND",
                    help="a label and the command that starts trainsim, e.g. new='python -m simulator'")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--commands", default=",".join(COMMANDS), help="comma-separated, of: " + ", ".join(COMMANDS))
    ap.add_argument("--jsonl", type=Path, help="append one JSON row per process here")
    a = ap.parse_args(argv)
    variants = [(label, shlex.split(cmd)) for label, cmd in (v.split("=", 1) for v in a.variant)]
    commands = [c.strip() for c in a.commands.split(",")]
    rows: dict[tuple[str, str], list[dict]] = {}
    print(f"load before: {os.getloadavg()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        for rep in range(a.repeats):
            for command in commands:
                for label, prefix in variants:
                    row = one(prefix, COMMANDS[command], Path(tmp))
                    row.update(variant=label, command=command, repeat=rep, load=os.getloadavg()[0])
                    rows.setdefault((command, label), []).append(row)
                    if a.jsonl:
                        with a.jsonl.open("a") as f:
                            f.write(json.dumps(row) + "\n")
    print(f"load after: {os.getloadavg()}", file=sys.stderr)
    print("| command | variant | wall s, median (min-max) | CPU s, median | sim_wall_s, median | bar |")
    print("|---|---|---:|---:|---:|---|")
    for (command, label), rs in rows.items():
        wall = [r["wall_s"] for r in rs]
        cpu = statistics.median(r["cpu_s"] for r in rs)
        sim = [r["sim_wall_s"] for r in rs if "sim_wall_s" in r]
        sim_m = statistics.median(sim) if sim else None
        bar = 0.3 + (2 * sim_m if sim_m is not None else 0.0)
        met = "met" if statistics.median(wall) <= bar else "missed"
        print(f"| {command} | {label} | {statistics.median(wall):.3f} ({min(wall):.3f}-{max(wall):.3f}) | "
              f"{cpu:.3f} | {'' if sim_m is None else f'{sim_m:.3f}'} | <= {bar:.3f}: {met} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
