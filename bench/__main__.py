"""``python -m bench [--quick] [--only NAME ...] [--out PATH]``: run the figures, write the results
file, print the table. See bench/README.md."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import figures  # noqa: F401  (registers every figure)
from .harness import FIGURES, Context, run, table

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny counts: proves the harness works, measures nothing")
    p.add_argument("--only", action="append", choices=list(FIGURES), metavar="NAME",
                   help=f"run only this figure (repeatable): {', '.join(FIGURES)}")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results file (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    names = [n for n in FIGURES if not args.only or n in args.only]
    results = run(names, Context(quick=args.quick, log=lambda s: print(s, file=sys.stderr, flush=True)), args.out)
    print(table(results))
    print(f"\n{results['machine']['note']} ({results['machine']['cpus']} cores).")
    print(f"written to {args.out}")
    failed = [k for k, e in results["figures"].items() if str(e.get("skipped", "")).startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
