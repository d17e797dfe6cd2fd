"""Imports only go down the layers: options/CLI > engine > components > memory > registry > base.

Every import statement of every module under ``llcv/`` counts, also those inside functions.
A new module must be placed in a layer here, so the rule keeps holding as the package grows.
"""
import ast
import os

from conftest import ROOT

# Longest matching prefix wins (the bare package name matches only itself); higher sits higher.
LAYERS = {
    "llcv.cli": 5, "llcv.options": 5, "llcv.sweep": 5,
    "llcv.engine": 4, "llcv.evaluation": 4,
    **{f"llcv.{name}": 3 for name in (
        "data", "losses", "archs", "metrics", "degradations", "inference", "analysis",
        "pruners", "network", "optim", "models")},
    "llcv.memory": 2,
    "llcv.registry": 1, "llcv.schema": 1, "llcv.serialization": 1,
    "llcv": 0, "llcv.errors": 0, "llcv.utils": 0, "llcv._imports": 0,
}


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        prefix = ".".join(parts[:n])
        if prefix in LAYERS:
            return LAYERS[prefix]
    return LAYERS.get(module)  # the package itself


def modules():
    """(module name, file path) of every Python file of the package."""
    base = os.path.join(ROOT, "llcv")
    for folder, _, files in os.walk(base):
        for name in sorted(files):
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].replace(os.sep, ".")
                yield (rel[: -len(".__init__")] if rel.endswith(".__init__") else rel,
                       os.path.join(folder, name))


def imported(module: str, path: str):
    """Names of the llcv modules ``path`` imports (relative imports resolved)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read(), path)):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "llcv")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] == "llcv":
                yield base


def test_every_module_has_a_layer():
    unplaced = [m for m, _ in modules() if layer_of(m) is None]
    assert not unplaced, f"place these modules in LAYERS: {unplaced}"


def test_no_import_goes_up():
    upward = []
    for module, path in modules():
        mine = layer_of(module)
        for target in imported(module, path):
            theirs = layer_of(target)
            if theirs is None or theirs > mine:
                upward.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    """The parser finds imports inside functions and relative ones."""
    path = tmp_path / "probe.py"
    path.write_text("def f():\n    from llcv.engine.runner import Runner\nfrom . import schema\n")
    found = list(imported("llcv.memory.probe", str(path)))
    assert sorted(found) == ["llcv.engine.runner", "llcv.memory"]
