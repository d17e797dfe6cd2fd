"""Deep features of a restoration network: which layers, and capturing them during a forward.

A layer is named by its module path (``bottleneck``, ``encoders.1``); a path component may be
``*`` (every child at that level, in order) or a negative integer (a child counted from the
end, e.g. ``body.-2`` for the last activation of a plain conv stack). Every registered
architecture has a default: the deepest feature map before the decoder or the reconstruction,
as DCPT (ICLR 2025) classifies degradations from the encoder's features.
"""
from __future__ import annotations

import contextlib
import difflib
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch
from torch import nn

from llcv.errors import OptionError
from llcv.network import build_network, network_spec, normalized_options
from llcv.registry import ARCHS, lookup

#: arch type -> default feature layers
DEFAULT_FEATURE_LAYERS: dict[str, list[str]] = {
    "UNet": ["bottleneck"],
    "NAFNet": ["middle_blks"],
    "NAFNetLocal": ["middle_blks"],
    "Restormer": ["latent"],
    "DnCNN": ["body.-2"],
    "SwinIR": ["conv_after_body"],
    "EDSR": ["conv_after_body"],
    "RCAN": ["conv_after_body"],
    "MSRResNet": ["body"],
    "RRDBNet": ["conv_body"],
    "SRVGGNetCompact": ["body.-2"],
    "RepPlainNet": ["body.-2"],
}


def _expand(model: nn.Module, pattern: str) -> list[str]:
    """Module paths matching one pattern (``*`` and negative indices resolved)."""
    found = [("", model)]
    for part in pattern.split("."):
        step = []
        for prefix, module in found:
            children = list(module.named_children())
            if part == "*":
                chosen = children
            elif part.lstrip("-").isdigit() and part.startswith("-"):
                chosen = children[int(part):][:1] if len(children) >= -int(part) else []
            else:
                chosen = [(n, c) for n, c in children if n == part]
            step += [(f"{prefix}.{n}" if prefix else n, c) for n, c in chosen]
        found = step
    return [name for name, _ in found]


def resolve_feature_layers(model: nn.Module, arch: str, patterns: Optional[Sequence[str]],
                           key: str) -> list[str]:
    """The module paths of ``patterns`` in ``model`` (default: the arch's), in order.

    ``key`` names the option in errors, which list close module names.
    """
    if patterns is None:
        if arch not in DEFAULT_FEATURE_LAYERS:
            raise OptionError(f"{key}: no default feature layer for network_g.type {arch}; "
                              f"name one of its modules, e.g. "
                              f"{[n for n, _ in model.named_children()][:4]}")
        patterns = DEFAULT_FEATURE_LAYERS[arch]
    if isinstance(patterns, (str, bytes)) or not patterns:
        raise OptionError(f"{key}: expected a non-empty list of module names, got {patterns!r}")
    names: list[str] = []
    for i, pattern in enumerate(patterns):
        matched = _expand(model, str(pattern))
        if not matched:
            known = [n for n, _ in model.named_modules() if n]
            close = difflib.get_close_matches(str(pattern), known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise OptionError(f"{key}[{i}]: no module '{pattern}' in {arch}{hint}")
        names += [n for n in matched if n not in names]
    return names


def _feature_map(output, name: str) -> torch.Tensor:
    """The NCHW tensor a layer produced (the last one of a tuple)."""
    if isinstance(output, (tuple, list)):
        output = output[-1]
    if not torch.is_tensor(output) or output.dim() != 4:
        got = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
        raise OptionError(f"feature_layers: '{name}' gives {got}, not an NCHW feature map; "
                          f"name a convolutional layer")
    return output


@contextlib.contextmanager
def capture_features(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Inside the block, every forward of ``model`` stores each named layer's output in the
    yielded dict (in the order of ``names`` once all have run)."""
    modules = dict(model.named_modules())
    store: dict[str, torch.Tensor] = {}

    def keeper(name: str):
        def hook(module: nn.Module, inputs, output) -> None:
            store[name] = _feature_map(output, name)
        return hook

    handles = [modules[n].register_forward_hook(keeper(n)) for n in names]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


def ordered(store: Mapping[str, torch.Tensor], names: Sequence[str]) -> list[torch.Tensor]:
    """The captured maps in the order of ``names``; a layer the forward skipped is an error."""
    missing = [n for n in names if n not in store]
    if missing:
        raise OptionError(f"feature_layers: {missing} did not run in the forward pass; name "
                          f"layers the network calls")
    return [store[n] for n in names]


def image_channels(network_g: Mapping[str, Any]) -> int:
    """Image channels the network of ``network_g`` takes (its arch's ``image_channels`` option,
    else those of its first convolution)."""
    options = normalized_options(network_g)
    name = getattr(lookup(ARCHS, network_g.get("type"), "network_g.type"), "pruning", {}) \
        .get("image_channels")
    if name in options:
        return int(options[name])
    model = build_network(network_spec(network_g), "meta")
    return next((m.in_channels for m in model.modules() if isinstance(m, nn.Conv2d)), 3)


def probe_shapes(model: nn.Module, names: Sequence[str], channels: int, size: int = 64
                 ) -> tuple[list[int], list[int], list[int]]:
    """Channels of each named layer, and the input and output shapes, from a forward of a
    ``channels`` x ``size`` x ``size`` data-less batch (``model`` lives on the meta device)."""
    x = torch.empty(1, channels, size, size, device="meta")
    with capture_features(model, names) as store, torch.no_grad():
        out = model(x)
    return [f.shape[1] for f in ordered(store, names)], list(x.shape), list(out.shape)
