"""``python -m validation.published``: run the accuracy table's rows, print it, check or rewrite the page.

    python -m validation.published            # run every row, print the table and any problem
    python -m validation.published --check    # also fail (exit 1) if docs/accuracy.md is stale
    python -m validation.published --write    # regenerate the table inside docs/accuracy.md
    python -m validation.published --only megatron-t1-1.7b

Exit status: 0 when every row is within its tolerance (and, with --check, the page is current);
1 when not; 2 for bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from simulator.errors import TrainsimInputError

from . import PAGE, ROWS, check, evaluate, load, render, stale, update_page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.published", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=str(ROWS), help="the rows file (default: validation/published/rows.yaml)")
    parser.add_argument("--page", default=str(PAGE), help="the page holding the table (default: docs/accuracy.md)")
    parser.add_argument("--only", action="append", metavar="ID", help="run only this row (repeatable)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="regenerate the table inside the page")
    mode.add_argument("--check", action="store_true", help="fail when the page's table is stale")
    args = parser.parse_args(argv)
    try:
        table = load(args.rows)
        known = {r.id for r in table.rows}
        for wanted in args.only or []:
            if wanted not in known:
                raise TrainsimInputError(f"--only {wanted}: expected one of {', '.join(sorted(known))}")
        outcomes = evaluate(table, only=args.only,
                            progress=lambda rid, s, cpu: print(f"{rid}: {s:.1f} s ({cpu:.1f} s CPU)", file=sys.stderr))
        text = render(table, outcomes)
        problems = check(table, outcomes)
        if args.write or args.check:
            if args.only:
                raise TrainsimInputError("--only: --write and --check need every row")
            with open(args.page, encoding="utf-8") as fh:
                page = fh.read()
            if args.write:
                from topologies.io import write_atomically

                write_atomically(Path(args.page), update_page(page, text))
            else:
                diff = stale(page, text)
                if diff:
                    problems.append(f"{args.page} is stale (python -m validation.published --write):\n{diff}")
    except (TrainsimInputError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
