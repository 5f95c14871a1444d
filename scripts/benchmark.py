"""`python -m scripts.benchmark` (part of `make benchmark`): benchmarks.serving's command line."""

import sys

from benchmarks.serving import main

if __name__ == "__main__":
    sys.exit(main())
