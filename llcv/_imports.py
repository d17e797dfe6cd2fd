"""Import every module of a component package whose file name ends with a suffix.

This is what lets a user add a component by adding one file (e.g. ``llcv/archs/my_arch.py``).
"""
from __future__ import annotations

import importlib
import pkgutil


def import_modules(package: str, path: list[str], suffix: str) -> None:
    """Import ``package.<name>`` for each module ``<name>`` in ``path`` ending with ``suffix``."""
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name.endswith(suffix):
            importlib.import_module(f"{package}.{info.name}")
