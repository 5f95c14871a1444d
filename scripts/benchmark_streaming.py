"""`python -m scripts.benchmark_streaming` (part of `make benchmark`): benchmarks.streaming's command line."""

import sys

from benchmarks.streaming import main

if __name__ == "__main__":
    sys.exit(main())
