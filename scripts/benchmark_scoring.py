"""`python -m scripts.benchmark_scoring` (part of `make benchmark`): benchmarks.scoring's command line."""

import sys

from benchmarks.scoring import main

if __name__ == "__main__":
    sys.exit(main())
