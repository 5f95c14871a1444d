"""The benchmarks `make benchmark` runs, each side by side against its baseline in one run on a
throwaway local platform, each writing its own block of docs/benchmarks.md:

    serving         the model API against `mlflow models serve` (serving_report: its tables)
    scoring         the scoring job against `mlflow.pyfunc` on a whole month
    tracking        the tracking server with its auth app against the open server
    measure         what they measure by (/proc, wrk) and how they write their figures

Their command lines are scripts/benchmark.py, scripts/benchmark_scoring.py and
scripts/benchmark_tracking.py.
"""
