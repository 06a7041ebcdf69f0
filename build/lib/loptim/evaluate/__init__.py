"""How any optimizer is judged: harness, tuning, speedup metric, results and plots."""
