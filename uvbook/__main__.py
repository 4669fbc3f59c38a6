"""``python -m uvbook <command>``: the package's command line.

Commands:

* ``results [--mode quick|full]``: print the results record (:mod:`uvbook.results`)
  beside the published numbers.

The training-speed benchmark is not part of the package: ``python -m benchmarks`` from the
repository's root.
"""

from __future__ import annotations

import argparse
import sys

from uvbook.results import main as results_main


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command; returns the process's exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m uvbook", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["results"], help="results: print the results record")
    args, rest = parser.parse_known_args(argv[:1])
    if args.command == "results":
        return results_main(argv[1:] + rest)
    return 2  # unreachable: argparse rejects other commands


if __name__ == "__main__":
    raise SystemExit(main())
