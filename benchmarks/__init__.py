"""Benchmarks: not installed, not imported by the library. Run each from the repository root as
`python -m benchmarks.NAME --help` (scoring, load, gpu, training, batching, precision, quality,
recipes, soup).
"""
