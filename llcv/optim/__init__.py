"""Optimizers and closed-form learning-rate schedules, registered in OPTIMIZERS / SCHEDULERS."""
from llcv.optim import optimizers, schedulers  # noqa: F401 (registers the components)
