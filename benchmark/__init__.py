"""SAE benchmark suite: train sparse-autoencoder variants on shared data and score them on shared tasks."""

__version__ = "0.6.1"
# Bump when a metric's definition or the training loop changes: it is part of every config hash,
# so older results stop counting as "finished" for resume.
SUITE_VERSION = __version__
SCHEMA_VERSION = 4  # 2 added setting, l0, converged, steps; 3 step_cap; 4 eval_seed (SPEC section 7)
