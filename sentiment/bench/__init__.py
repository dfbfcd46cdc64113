"""Benchmark tools: the hardware limit, the scoring methods compared, real-review samples and
process-tree memory. Only jobs/benchmark_*.py and tests import this; the product never does."""
