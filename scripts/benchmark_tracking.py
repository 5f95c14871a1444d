"""`python -m scripts.benchmark_tracking` (part of `make benchmark`): benchmarks.tracking's command line."""

import sys

from benchmarks.tracking import main

if __name__ == "__main__":
    sys.exit(main())
