"""``python -m benchmarks [--quick] ...``: time uvbook's training against tutorial-style references."""

from benchmarks.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
