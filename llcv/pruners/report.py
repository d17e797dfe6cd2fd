"""What a prune event did: figures before and after, per-layer widths, time taken."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from llcv.analysis.profile import count_parameters, profile_model, si
from llcv.network import kept_widths
from llcv.pruners.targets import Target, estimate_model
from llcv.utils import MB


@dataclass
class Figures:
    """Params, MACs and estimated peaks (bytes, the target's memory kind) of one network at the
    report's input shape."""

    params: int
    macs: int
    est_infer_peak_bytes: int
    est_train_peak_bytes: int


def figures(model: nn.Module, shape: tuple, target: Target, device: Any) -> Figures:
    """The :class:`Figures` of ``model`` (a meta-device network is fine)."""
    return Figures(count_parameters(model), profile_model(model, shape).macs,
                   estimate_model(model, shape, "inference", target, device)
                   .peak(target.memory_kind),
                   estimate_model(model, shape, "train", target, device)
                   .peak(target.memory_kind))


@dataclass
class PruneReport:
    """One prune event, as a dict for logs (:meth:`to_dict`) and a short table (:meth:`format`)."""

    pruner: str
    target: str
    input_shape: list
    before: Figures
    after: Figures
    widths: dict = field(default_factory=dict)  # layer -> [before (None: new), after], changed
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self, layers: int = 12) -> str:
        """The figures before -> after, and the first ``layers`` changed widths."""
        shape = "x".join(map(str, self.input_shape))
        rows = [("params", si(self.before.params), si(self.after.params),
                 self.after.params / max(self.before.params, 1)),
                ("MACs", si(self.before.macs), si(self.after.macs),
                 self.after.macs / max(self.before.macs, 1))]
        for label, key in (("est. inference peak", "est_infer_peak_bytes"),
                           ("est. train peak", "est_train_peak_bytes")):
            b, a = getattr(self.before, key), getattr(self.after, key)
            rows.append((label, f"{b / MB:.2f} MiB", f"{a / MB:.2f} MiB", a / max(b, 1)))
        lines = [f"{self.pruner} to {self.target} ({self.seconds:.1f} s; figures at {shape})"]
        lines += [f"  {name:<20} {b:>12} -> {a:>12}  ({r:.1%})" for name, b, a, r in rows]
        changed = list(self.widths.items())
        for name, (b, a) in changed[:layers]:
            lines.append(f"    {name:<40} {'new' if b is None else b:>5} -> {a}")
        if len(changed) > layers:
            lines.append(f"    ... {len(changed) - layers} more layers changed width")
        return "\n".join(lines)


def width_changes(before: nn.Module, after: nn.Module) -> dict[str, list]:
    """Output widths of conv/linear layers that changed or are new: ``[before, after]``."""
    old, new = kept_widths(before), kept_widths(after)
    return {name: [old.get(name), w] for name, w in new.items() if old.get(name) != w}
