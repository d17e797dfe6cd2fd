"""Structured pruning toward a channel, params, MACs or peak-memory target.

``graph`` traces a network's channel groups (``spaces``: how positions couple; ``op_rules``: one
rule per ATen op); ``importance`` scores channels; ``targets`` and ``problem`` say what a prune
event must reach and what each group may keep; ``base`` runs one event and returns a plain-data
plan with the new network spec and a ``report``; ``compactors`` and ``width`` are the MOSP skip
compactors and the width-multiplier baseline; ``arch_config`` reads each arch's declaration.

Registered pruners: every `*_pruner.py` file here is imported when the registry is first used.
"""
from llcv._imports import import_modules

import_modules(__name__, __path__, "_pruner")
