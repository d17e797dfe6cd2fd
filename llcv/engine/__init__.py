"""Training engine: runner, hooks, checkpoints, logging, optimisation."""
