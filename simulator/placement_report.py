"""``trainsim run --explain-placement``: the rank → device mapping, groups and stages as tables or JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from simulator.config import Config
from simulator.parallel.plan import explain

__all__ = ["explain_placement"]


def _ranks_table(info: dict[str, Any]) -> Table:
    table = Table(title=(f"placement: data {info['data']} × tensor {info['tensor']} × pipeline {info['pipeline']} "
                         f"= {info['devices']} devices"), title_justify="left")
    for col in ("rank", "device", "node", "replica", "stage", "tensor", "tensor group", "data group"):
        table.add_column(col, justify="right", no_wrap=True)
    for row in info["ranks"]:
        table.add_row(*(str(row[k]) for k in ("rank", "device", "node", "replica", "stage", "tensor",
                                               "tensor_group", "data_group")))
    return table


def _stages_table(info: dict[str, Any]) -> Table:
    cap = info["memory_capacity_bytes"] / 1e9
    table = Table(title=f"stages of {info['model']} on {info['device']} ({cap:.0f} GB each); replica 0's devices",
                  title_justify="left")
    for i, col in enumerate(("stage", "chunk", "layers", "n", "devices", "fwd ms/mb", "bwd ms/mb", "params/dev",
                             "memory GB", "in flight")):
        table.add_column(col, justify="left" if i in (2, 4) else "right", no_wrap=i != 4)
    for r in info["stages"]:
        table.add_row(str(r["stage"]), str(r["chunk"]), r["layers"], str(r["n_layers"]),
                      " ".join(map(str, r["devices"])), f"{r['forward_s'] * 1e3:.4g}", f"{r['backward_s'] * 1e3:.4g}",
                      f"{r['params_per_device'] / 1e6:.1f} M", f"{r['memory_bytes'] / 1e9:.1f}", f"{r['in_flight']:g}")
    return table


def explain_placement(config: Config, *, as_json: bool, console: Console) -> None:
    """Print the placement of ``config`` (JSON on stdout with ``as_json``); nothing is simulated."""
    info = explain(config)
    if as_json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    console.print(_ranks_table(info))
    console.print(_stages_table(info))
    where = "inside one node each" if info["tensor_groups_in_one_node"] else "NOT all inside one node"
    console.print(f"order (fastest-varying first): {', '.join(info['order'])}; "
                  f"tensor groups: {len(info['tensor_groups'])} of {info['tensor']} ({where}); "
                  f"data-parallel groups: {len(info['data_groups'])} of {info['data']}; "
                  f"pipelines: {len(info['pipeline_groups'])} of {info['pipeline']}")
