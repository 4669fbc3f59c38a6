"""``python -m uvbook <command>``: the package's command line.

Commands:

* ``results [--mode quick|full]``: print the results record (:mod:`uvbook.results`)
  beside the published numbers.
* ``bench [--quick] ...``: time uvbook's training against reference implementations in
  the style of the official tutorials (:mod:`uvbook.bench`; ``--help`` lists the options).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command; returns the process's exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m uvbook", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["results", "bench"],
                        help="results: print the results record; bench: run the benchmark")
    args, rest = parser.parse_known_args(argv[:1])
    if args.command == "results":
        from uvbook.results import main as results_main

        return results_main(argv[1:] + rest)
    if args.command == "bench":
        from uvbook.bench import main as bench_main

        return bench_main(argv[1:] + rest)
    return 2  # unreachable: argparse rejects other commands


if __name__ == "__main__":
    raise SystemExit(main())
