"""Helper programs: the local platform, deploy/destroy helpers, smoke test, benchmarks."""
