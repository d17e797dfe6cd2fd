"""The per-architecture pruning declaration: one class attribute on each registered arch.

The channel groups themselves are traced from the model (``llcv.pruners.graph``); what an arch
declares is what a trace cannot know::

    class UNet(nn.Module):
        pruning = {"image_channels": "in_ch", "width_options": ["widths"],
                   "compactors": "skip_compactors"}

- ``image_channels`` (required): the option holding the input's channel count, or a number.
- ``width_options`` (required): the options the width multiplier scales (ints or int lists).
- ``keep_width``: layer names or globs whose output width never changes (on top of what the
  trace pins: layers tied to the input or output channels, e.g. by a global residual).
- ``compactors``: a boolean option that inserts identity-initialised 1x1 convs on the long
  skips (MOSP compactors), for ``MemoryAwarePruner(compactors=True)``.
- ``unprunable``: the reason, for an arch that cannot be pruned structurally.

Declaring it is the arch author's statement that ``forward`` reads every size from its tensors
(never from a cached count), so a pruned network runs; the arch tests prune every registered arch.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from llcv.errors import LLCVError
from llcv.registry import ARCHS, lookup

KEYS = ("image_channels", "width_options", "keep_width", "compactors", "unprunable")


@dataclass(frozen=True)
class ArchPruning:
    """An arch's checked pruning declaration."""

    arch: str
    image_channels: Any  # option name or int
    width_options: tuple
    keep_width: tuple = ()
    compactors: Optional[str] = None
    unprunable: Optional[str] = None

    def channels(self, network_g: Mapping[str, Any]) -> int:
        """Channels of the input images ``network_g`` takes."""
        if isinstance(self.image_channels, int):
            return self.image_channels
        return option_value(self.arch, network_g, self.image_channels)


def option_value(arch: str, network_g: Mapping[str, Any], name: str) -> Any:
    """``network_g[name]``, else the arch's default for it."""
    if name in network_g:
        return network_g[name]
    param = inspect.signature(lookup(ARCHS, arch, "network_g.type")).parameters.get(name)
    if param is None or param.default is inspect.Parameter.empty:
        raise LLCVError(f"{arch}.pruning: names option '{name}', which {arch} does not have")
    return param.default


def arch_pruning(arch: str) -> ArchPruning:
    """The declaration of ``arch``; a missing or malformed one fails naming the fix."""
    cls = lookup(ARCHS, arch, "network_g.type")
    decl = getattr(cls, "pruning", None)
    where = f"{arch} (class attribute 'pruning' in {inspect.getsourcefile(cls)})"
    if not isinstance(decl, Mapping):
        raise LLCVError(f"{arch}: no pruning declaration; add e.g. pruning = {{'image_channels': "
                        f"'in_ch', 'width_options': ['width']}} to the class "
                        f"(see llcv/pruners/arch_config.py)")
    unknown = [k for k in decl if k not in KEYS]
    if unknown:
        raise LLCVError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(KEYS)}")
    if decl.get("unprunable"):
        return ArchPruning(arch, 0, (), unprunable=str(decl["unprunable"]))
    missing = [k for k in ("image_channels", "width_options") if k not in decl]
    if missing:
        raise LLCVError(f"{where}: missing {', '.join(missing)}")
    return ArchPruning(arch, decl["image_channels"], tuple(decl["width_options"]),
                       tuple(decl.get("keep_width", ())), decl.get("compactors"))


def check_prunable(decl: ArchPruning) -> None:
    """Refuse an arch declared unprunable, with its reason."""
    if decl.unprunable:
        raise LLCVError(f"{decl.arch} cannot be pruned structurally: {decl.unprunable}")
