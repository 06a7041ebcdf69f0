"""How learned optimizers are trained: unrolls, gradient estimators, the outer trainer."""
