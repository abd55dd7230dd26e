"""Benchmarks of mile against reference implementations; see benchmarks/README.md."""
