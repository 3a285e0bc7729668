"""resetd benchmarks: ``python -m bench`` prints figures beside same-run baselines."""
