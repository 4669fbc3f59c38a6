"""Benchmarks of uvbook, kept outside the package: ``python -m benchmarks --help``."""
