"""Experiments over many runs: grids of configs, method comparison, sweeps (local or Ray),
the paper reproduction, benchmarks, and regenerating figures/ from the notebooks."""
