"""The network spec: what builds a network, as plain data that checkpoints carry.

A spec is ``{"network_g": <the base network_g options>, "plan": <plan or None>}``. A dense
network's plan is None. A *plan* says which slices of the dense network's tensors are kept::

    {"keep": {"encoders.0.0.weight": {0: [0, 2, 5, ...]},      # tensor name -> dim -> indices
              "encoders.0.0.bias": {0: [0, 2, 5, ...]},
              "encoders.0.2.weight": {1: [0, 2, 5, ...]}, ...}}

Indices are strictly increasing positions in the tensor of the network *before* the plan. A
plan is made by a pruner (or by hand), applied to a live model with :func:`transfer`, composed
with earlier plans by :func:`compose_plans`, and replayed on a freshly built dense network by
:func:`build_network`. Tensors are addressed by their ``state_dict`` names, so the same plan
slices weights, EMA weights and optimizer moments alike. Module attributes that follow from
tensor shapes (``Conv2d.out_channels``, ``groups`` of depthwise convs, ``BatchNorm2d``'s
``num_features`` ...) are updated for torch's own layers; llcv's own layers read their sizes
from their tensors, never from cached counts.
"""
from __future__ import annotations

import copy
import inspect
from typing import Any, Mapping, Optional

import torch
from torch import nn

from llcv.errors import LLCVError, OptionError
from llcv.registry import ARCHS, build, lookup
from llcv.serialization import load_checkpoint
from llcv.utils import is_int, module_device

Plan = dict  # {"keep": {tensor name: {dim: [kept indices]}}}
Spec = dict  # {"network_g": options, "plan": Plan | None}


# ---------------------------------------------------------------------- specs
def network_spec(network_g: Mapping[str, Any], plan: Optional[Plan] = None) -> Spec:
    """The spec of ``network_g`` (options) with ``plan`` applied (None: dense)."""
    return {"network_g": copy.deepcopy(dict(network_g)),
            "plan": None if not plan or not plan.get("keep") else copy.deepcopy(plan)}


def spec_with(spec: Spec, plan: Plan) -> Spec:
    """``spec`` after ``plan`` (indices relative to the network ``spec`` builds)."""
    return network_spec(spec["network_g"], compose_plans(spec["plan"], plan))


def normalized_options(network_g: Mapping[str, Any]) -> dict:
    """``network_g`` with every argument the arch takes filled in (its defaults), so options
    that differ only by writing a default explicitly compare equal."""
    cls = lookup(ARCHS, network_g.get("type"), "network_g.type")
    out = {}
    for name, p in inspect.signature(cls).parameters.items():
        if name not in ("device", "dtype") and p.default is not inspect.Parameter.empty:
            out[name] = list(p.default) if isinstance(p.default, tuple) else p.default
    out.update(copy.deepcopy(dict(network_g)))
    return out


def is_spec(value: Any) -> bool:
    """True for a mapping shaped like a network spec."""
    return isinstance(value, Mapping) and isinstance(value.get("network_g"), Mapping) \
        and "plan" in value


def build_network(spec: Spec, device: Any = None, init: bool = True,
                  key: str = "network_g") -> nn.Module:
    """Build the network ``spec`` describes on ``device``.

    ``init=True`` builds the dense network with its own initialisation (the global RNG draws as
    in any run) and keeps the planned slices of it. ``init=False`` is for weights about to be
    loaded: the dense network is built on the meta device and only the kept shapes are
    allocated (no RNG draws, no dense-sized memory); what a ``state_dict`` does not hold
    (non-persistent buffers) is taken from an initialised build made under a forked RNG.
    """
    device = torch.device("cpu" if device is None else device)
    plan = spec["plan"]
    if init or device.type == "meta":
        model = build(ARCHS, spec["network_g"], key, device=device)
        return apply_plan(model, plan, key) if plan else model
    model = apply_plan(build(ARCHS, spec["network_g"], key, device="meta"), plan, key) \
        if plan else build(ARCHS, spec["network_g"], key, device="meta")
    model = model.to_empty(device=device)
    unsaved = _non_persistent(model)
    if unsaved:
        with _forked_rng(device):
            fresh = build_network(spec, device, init=True, key=key)
        buffers = dict(fresh.named_buffers())
        for name in unsaved:
            _set_tensor(model, name, buffers[name].detach().clone())
    return model


def _forked_rng(device: torch.device):
    """Draws inside leave the global RNGs (CPU, and the CUDA device used) as they were."""
    device = torch.device(device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=cuda)


def _non_persistent(model: nn.Module) -> list[str]:
    saved = set(model.state_dict())
    return [name for name, _ in model.named_buffers() if name not in saved]


# ---------------------------------------------------------------------- plans
def check_plan(model: nn.Module, plan: Plan, key: str = "plan") -> None:
    """Fail naming the tensor when ``plan`` does not fit ``model`` (unknown name, bad indices)."""
    if not isinstance(plan, Mapping) or not isinstance(plan.get("keep"), Mapping):
        raise OptionError(f"{key}: expected {{'keep': {{tensor name: {{dim: [indices]}}}}}}, "
                          f"got {type(plan).__name__}")
    tensors = model.state_dict(keep_vars=True)
    for name, dims in plan["keep"].items():
        if name not in tensors:
            raise OptionError(f"{key}.keep.{name}: {type(model).__name__} has no such tensor")
        shape = tensors[name].shape
        for dim, indices in dims.items():
            if not is_int(dim) or not 0 <= dim < len(shape):
                raise OptionError(f"{key}.keep.{name}: dim {dim!r} is not a dim of shape "
                                  f"{tuple(shape)}")
            if not indices or any(not is_int(i) for i in indices) \
                    or any(b <= a for a, b in zip(indices, indices[1:])) \
                    or indices[0] < 0 or indices[-1] >= shape[dim]:
                raise OptionError(f"{key}.keep.{name}: dim {dim} needs strictly increasing "
                                  f"indices in [0, {shape[dim]}), got {_short(indices)}")


def _short(values: Any) -> str:
    values = list(values) if isinstance(values, (list, tuple)) else values
    return str(values if not isinstance(values, list) or len(values) <= 8
               else values[:8] + ["..."])


def compose_plans(first: Optional[Plan], then: Optional[Plan]) -> Optional[Plan]:
    """One plan equal to applying ``first`` and then ``then`` (whose indices refer to the
    network after ``first``)."""
    if not first:
        return copy.deepcopy(then) if then else None
    if not then:
        return copy.deepcopy(first)
    keep = {name: dict(dims) for name, dims in copy.deepcopy(first["keep"]).items()}
    for name, dims in then["keep"].items():
        mine = keep.setdefault(name, {})
        for dim, indices in dims.items():
            base = mine.get(dim)
            mine[dim] = list(indices) if base is None else [base[i] for i in indices]
    return {"keep": keep}


def slice_tensor(tensor: torch.Tensor, dims: Mapping[int, list]) -> torch.Tensor:
    """``tensor`` restricted to the kept ``indices`` of each ``dim`` (meta tensors: shape only)."""
    out = tensor.detach()
    for dim, indices in sorted(dims.items()):
        if out.is_meta:
            shape = list(out.shape)
            shape[dim] = len(indices)
            out = torch.empty(shape, dtype=out.dtype, device="meta")
        else:
            index = torch.as_tensor(indices, dtype=torch.long, device=out.device)
            out = out.index_select(dim, index)
    return out


def slice_state_dict(state: Mapping[str, torch.Tensor], plan: Optional[Plan]) \
        -> dict[str, torch.Tensor]:
    """A ``state_dict`` (weights, EMA weights) with ``plan`` applied to the tensors it names."""
    keep = plan["keep"] if plan else {}
    return {name: slice_tensor(t, keep[name]) if name in keep else t for name, t in state.items()}


def apply_plan(model: nn.Module, plan: Plan, key: str = "plan") -> nn.Module:
    """Slice ``model``'s tensors in place as ``plan`` says and update the layers' size
    attributes; returns ``model``. New ``nn.Parameter`` objects replace the sliced ones."""
    check_plan(model, plan, key)
    for name, dims in plan["keep"].items():
        _set_tensor(model, name, slice_tensor(_get_tensor(model, name), dims))
    for module in model.modules():
        _sync_sizes(module)
    return model


def transfer(model: nn.Module, plan: Plan, spec: Spec, device: Any = None) -> nn.Module:
    """A new network built from ``spec`` (the spec *after* ``plan``) holding ``model``'s
    weights with ``plan`` applied; ``model`` is left untouched. Tensors that only the new spec
    has get their initial values (drawn under a forked RNG). Train/eval modes and
    ``requires_grad`` flags follow ``model``'s, name by name (new ones keep their defaults).
    ``device`` defaults to ``model``'s."""
    device = module_device(model) if device is None else torch.device(device)
    new = build_network(spec, device, init=False)
    state = slice_state_dict(model.state_dict(), plan)
    missing = [name for name in new.state_dict() if name not in state]
    if missing:  # tensors the new spec adds (e.g. compactors): their own initialisation
        with _forked_rng(device):
            fresh = build_network(spec, device, init=True).state_dict()
        state.update({name: fresh[name] for name in missing})
    try:
        new.load_state_dict(state)
    except RuntimeError as err:
        raise LLCVError(f"plan: the network built from the new spec does not take the sliced "
                        f"weights ({str(err).strip().splitlines()[-1][:300]})") from None
    old_params = dict(model.named_parameters())
    for name, p in new.named_parameters():
        if name in old_params:
            p.requires_grad_(old_params[name].requires_grad)
    old_modules = dict(model.named_modules())
    for name, m in new.named_modules():
        m.training = old_modules[name].training if name in old_modules else model.training
    return new


def kept_widths(model: nn.Module) -> dict[str, int]:
    """Output width of every conv/linear layer (for reports of what a plan changed)."""
    widths = {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            widths[name] = m.out_channels
        elif isinstance(m, nn.Linear):
            widths[name] = m.out_features
    return widths


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    path, _, leaf = name.rpartition(".")
    return (model.get_submodule(path) if path else model), leaf


def _get_tensor(model: nn.Module, name: str) -> torch.Tensor:
    owner, leaf = _owner(model, name)
    return getattr(owner, leaf)


def _set_tensor(model: nn.Module, name: str, value: torch.Tensor) -> None:
    owner, leaf = _owner(model, name)
    old = getattr(owner, leaf)
    if isinstance(old, nn.Parameter):
        setattr(owner, leaf, nn.Parameter(value, requires_grad=old.requires_grad))
    else:
        owner.register_buffer(leaf, value, persistent=leaf not in owner._non_persistent_buffers_set)


def _sync_sizes(m: nn.Module) -> None:
    """Make a torch layer's size attributes agree with its (sliced) tensors."""
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        _sync_conv(m, out_dim=0, in_dim=1)
    elif isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)):
        _sync_conv(m, out_dim=1, in_dim=0)
    elif isinstance(m, nn.Linear):
        m.out_features, m.in_features = m.weight.shape
    elif isinstance(m, nn.modules.batchnorm._NormBase):
        ref = m.weight if m.weight is not None else m.running_mean
        if ref is not None:
            m.num_features = ref.shape[0]
    elif isinstance(m, nn.GroupNorm) and m.weight is not None:
        if m.num_groups == m.num_channels:
            m.num_groups = m.weight.shape[0]
        elif m.weight.shape[0] % m.num_groups:
            raise LLCVError(f"plan: GroupNorm with {m.num_groups} groups cannot keep "
                            f"{m.weight.shape[0]} channels; keep a multiple of {m.num_groups}")
        m.num_channels = m.weight.shape[0]
    elif isinstance(m, nn.LayerNorm) and m.weight is not None:
        m.normalized_shape = tuple(m.weight.shape)
    elif isinstance(m, nn.PReLU):
        m.num_parameters = m.weight.shape[0]


def _sync_conv(m: nn.Module, out_dim: int, in_dim: int) -> None:
    """Conv weights are (out, in/groups, ...) and transposed ones (in, out/groups, ...).
    A depthwise conv (groups == in_channels) stays depthwise: its groups follow its channels."""
    w = m.weight.shape
    if m.groups > 1 and m.groups == m.in_channels:
        multiplier = m.out_channels // m.groups
        channels = w[0] // multiplier if out_dim == 0 else w[0]
        m.groups = channels
    if out_dim == 0:
        m.out_channels, m.in_channels = w[0], w[1] * m.groups
    else:
        m.in_channels, m.out_channels = w[0], w[1] * m.groups


# ---------------------------------------------------------------------- weights files
def checkpoint_spec(ckpt: Mapping[str, Any]) -> Optional[Spec]:
    """The spec a weights file or training state carries (older files: only ``network_g``)."""
    if is_spec(ckpt.get("network")):
        return network_spec(ckpt["network"]["network_g"], ckpt["network"]["plan"])
    if isinstance(ckpt.get("network_g"), Mapping) and "type" in ckpt["network_g"]:
        return network_spec(ckpt["network_g"])
    return None


def pick_state_dict(ckpt: Mapping[str, Any], param_key: Optional[str], path: str,
                    key: str = "param_key") -> dict[str, torch.Tensor]:
    """The weights in a checkpoint, with DataParallel's ``module.`` prefix stripped.

    ``param_key="auto"``: ``params_ema``, else ``params``, else the file itself when it is a bare
    ``state_dict``; a name: that entry; None (BasicSR's ``param_key_g: ~``): the whole file.
    """
    if param_key == "auto":
        param_key = next((k for k in ("params_ema", "params") if isinstance(ckpt.get(k), Mapping)),
                         None)
    if param_key is None:
        state = ckpt
    elif param_key not in ckpt:
        held = ", ".join(str(k) for k, v in ckpt.items() if isinstance(v, Mapping)) or "no weights"
        raise OptionError(f"{key}: '{path}' has no '{param_key}'; it holds {held}")
    else:
        state = ckpt[param_key]
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise LLCVError(f"{key}: '{path}' holds no tensors under "
                        f"'{param_key or 'the top level'}'; name the weights with {key}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in tensors.items()}


def load_weights(model: nn.Module, state: Mapping[str, torch.Tensor], strict: bool, path: str,
                 key: str, fix: str = "check network_g") -> str:
    """Load ``state`` into ``model`` as BasicSR does; returns a one-line report.

    Strict: every name and shape must match (else an error ending with ``fix``). Non-strict:
    tensors whose name or shape differ are skipped and named in the report; loading nothing at
    all is an error either way.
    """
    own = model.state_dict()
    mismatched = [n for n, t in state.items() if n in own and own[n].shape != t.shape]
    missing = [n for n in own if n not in state]
    unexpected = [n for n in state if n not in own]
    if strict and (mismatched or missing or unexpected):
        detail = "; ".join(f"{what}: {_short(names)}" for what, names in (
            ("size mismatch", [f"{n} {tuple(state[n].shape)} vs {tuple(own[n].shape)}"
                               for n in mismatched]),
            ("missing", missing), ("unexpected", unexpected)) if names)
        raise LLCVError(f"{key}: '{path}' does not fit network_g ({detail}); {fix}")
    usable = {n: t for n, t in state.items() if n in own and n not in mismatched}
    if not usable:
        raise LLCVError(f"{key}: no tensor of '{path}' fits the network (its names: "
                        f"{_short(list(state))}; the network's: {_short(list(own))})")
    model.load_state_dict(usable, strict=False)
    report = f"loaded {len(usable)}/{len(own)} tensors from {path}"
    for what, names in (("skipped (size mismatch)", mismatched), ("missing", missing),
                        ("unexpected", unexpected)):
        if names:
            report += f"; {what}: {_short(names)}"
    return report


def load_network(path: str, key: str = "--checkpoint", param_key: Optional[str] = "auto",
                 network_g: Optional[Mapping[str, Any]] = None, device: Any = None,
                 strict: bool = True) -> tuple[nn.Module, Spec, str]:
    """Build the network a weights file describes (else ``network_g``) and load its weights.

    Returns the model (in eval mode), the spec it was built from, and a one-line load report.
    The file's own spec wins over ``network_g``: a pruned checkpoint rebuilds its pruned network.
    """
    ckpt = load_checkpoint(path, key)
    spec = checkpoint_spec(ckpt)
    if spec is None:
        if network_g is None:
            raise OptionError(f"{key}: '{path}' does not describe its network; give an option "
                              f"file with network_g (-opt)")
        spec = network_spec(network_g)
    model = build_network(spec, device, init=not strict)
    report = load_weights(model, pick_state_dict(ckpt, param_key, path, key), strict, path, key)
    return model.eval(), spec, report
