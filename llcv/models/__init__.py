"""Registered training steps: every `*_model.py` file here is imported when the registry is first used."""
from llcv._imports import import_modules

import_modules(__name__, __path__, "_model")
