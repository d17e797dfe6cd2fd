"""Parameters, MACs/FLOPs and per-layer output sizes of a model for one forward pass.

Convention: FLOPs = 2 x MACs (one multiply-accumulate is two floating-point operations), as
counted by PyTorch's own ``torch.utils.flop_counter.FlopCounterMode``. That counter covers
convolutions (incl. transposed/grouped), matrix products and attention kernels; element-wise ops
(activations, norms, gating, additions) and pooling are not counted, as in the papers' tables.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from llcv.memory.naming import tensors_in
from llcv.utils import MB, module_device, module_modes

FLOPS_CONVENTION = ("FLOPs = 2 x MACs, counted by torch.utils.flop_counter.FlopCounterMode "
                    "(convolutions, matmuls, attention; element-wise ops not counted)")


@dataclass
class LayerStats:
    """One row of the per-layer table: a leaf module, or a container doing its own products."""

    name: str
    type: str
    output_shape: list  # [N, C, H, W], or a list of shapes for several outputs
    activation_bytes: int  # bytes of the output tensor(s), summed over calls
    macs: int  # MACs in this module itself (not in its submodules), summed over calls
    calls: int = 1


@dataclass
class ModelProfile:
    """Figures for one forward pass of a model at ``input_shape``."""

    input_shape: list[int]
    params: int
    macs: int
    layers: list[LayerStats] = field(default_factory=list)

    @property
    def flops(self) -> int:
        """2 x MACs (see ``FLOPS_CONVENTION``)."""
        return 2 * self.macs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures: ``params``, ``macs``, ``flops``, ``layers`` and the convention."""
        return {"input_shape": self.input_shape, "params": self.params, "macs": self.macs,
                "flops": self.flops, "flops_convention": FLOPS_CONVENTION,
                "layers": [asdict(layer) for layer in self.layers]}


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (shared ones counted once)."""
    return sum(p.numel() for p in model.parameters())


def _outputs(value: Any) -> tuple[list, int]:
    """Shape(s) and total bytes of the tensors in a module output."""
    tensors = tensors_in(value)
    shapes = [list(t.shape) for t in tensors]
    size = sum(t.numel() * t.element_size() for t in tensors)
    return (shapes[0] if len(shapes) == 1 else shapes), size


def _record_outputs(model: nn.Module) -> tuple[dict[str, LayerStats], list]:
    """Forward hooks filling name -> LayerStats (in call order); returns the stats and handles."""
    stats: dict[str, LayerStats] = {}
    handles = []
    for name, module in model.named_modules():
        def hook(mod: nn.Module, args: Any, out: Any, name: str = name) -> None:
            shape, size = _outputs(out)
            if name in stats:
                stats[name].activation_bytes += size
                stats[name].calls += 1
            else:
                stats[name] = LayerStats(name or "(model)", type(mod).__name__, shape, size, 0)
        handles.append(module.register_forward_hook(hook))
    return stats, handles


def _called_descendants(module: nn.Module, prefix: str, called: set[str]) -> list[str]:
    """Names of the nearest called modules below ``module`` (looking through ModuleLists etc.)."""
    names = []
    for child_name, child in module.named_children():
        name = prefix + child_name
        names += [name] if name in called else _called_descendants(child, name + ".", called)
    return names


def _own_macs(model: nn.Module, flop_counts: dict[str, dict[Any, int]],
              called: set[str]) -> dict[str, int]:
    """MACs done in each called module itself: its FLOPs minus its called submodules', halved."""
    root = type(model).__name__
    total = {name: sum(flop_counts.get(f"{root}.{name}" if name else root, {}).values())
             for name, _ in model.named_modules()}
    own = {}
    for name, module in model.named_modules():
        if name in called:
            below = _called_descendants(module, f"{name}." if name else "", called)
            own[name] = max(total[name] - sum(total[n] for n in below), 0) // 2
    return own


def profile_model(model: nn.Module, input_shape: Sequence[int],
                  dtype: torch.dtype = torch.float32) -> ModelProfile:
    """Run one eval-mode, no-grad forward on a random input on the model's device and measure it.

    On the meta device nothing is computed, so any resolution profiles instantly.
    The train/eval mode of every submodule is restored afterwards.
    """
    x = torch.randn(*input_shape, device=module_device(model), dtype=dtype)
    stats, handles = _record_outputs(model)
    try:
        with module_modes(model, False), torch.no_grad(), \
                FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    own = _own_macs(model, counter.get_flop_counts(), set(stats))
    leaves = {name for name, m in model.named_modules() if next(m.children(), None) is None}
    layers = []
    for name, row in stats.items():
        row.macs = own[name]
        if name in leaves or row.macs > 0:
            layers.append(row)
    return ModelProfile(list(input_shape), count_parameters(model),
                        counter.get_total_flops() // 2, layers)


def si(value: float, unit: str = "") -> str:
    """``value`` with a decimal SI prefix, e.g. ``16.05 G``."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value:g} {unit}".rstrip()


def format_profile(profile: ModelProfile, layers: bool = True) -> str:
    """The per-layer table (name, type, output shape, activation MiB, MACs) and the totals."""
    lines = []
    if layers:
        rows = [(r.name, r.type, "x".join(map(str, r.output_shape)) if r.output_shape
                 and isinstance(r.output_shape[0], int) else str(r.output_shape),
                 f"{r.activation_bytes / MB:.2f}", si(r.macs)) for r in profile.layers]
        header = ("layer", "type", "output shape", "act. MiB", "MACs")
        widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
        for row in [header, *rows]:
            lines.append("  ".join(str(c).ljust(w) if i < 3 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(row, widths))))
        lines.append("")
    shape = "x".join(map(str, profile.input_shape))
    lines += [f"input shape: {shape}",
              f"params: {profile.params:,} ({si(profile.params)})",
              f"MACs:   {profile.macs:,} ({si(profile.macs)})",
              f"FLOPs:  {profile.flops:,} ({si(profile.flops)}); {FLOPS_CONVENTION}"]
    return "\n".join(lines)
