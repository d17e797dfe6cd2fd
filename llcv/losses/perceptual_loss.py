"""Perceptual (and style) loss on VGG19 features, with the VGG19 feature stack written in llcv.

The weights come from a local file (``vgg_weights_path``) keyed like torchvision's VGG19
(``features.<idx>.weight`` / ``.bias``), e.g. the standard ``vgg19-dcbb9e9d.pth``; llcv never
downloads. Layers are named by stage and position, ``conv<s>_<i>``, ``relu<s>_<i>``, ``pool<s>``.
Option names follow BasicSR's ``PerceptualLoss`` so its option files carry over.
"""
from __future__ import annotations

import os
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from llcv.errors import OptionError
from llcv.registry import LOSSES

_VGG19_STAGES: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_FETCH_HINT = ("download torchvision's VGG19 ImageNet weights "
               "(https://download.pytorch.org/models/vgg19-dcbb9e9d.pth) and set "
               "vgg_weights_path to the local file")
CRITERIA: tuple[str, ...] = ("l1", "l2", "fro")


def vgg19_layer_names() -> list[str]:
    """Names of VGG19's feature layers in torchvision order (index = position in the list)."""
    names = []
    for stage, (num_convs, _) in enumerate(_VGG19_STAGES, start=1):
        for i in range(1, num_convs + 1):
            names += [f"conv{stage}_{i}", f"relu{stage}_{i}"]
        names.append(f"pool{stage}")
    return names


def build_vgg19_features(num_layers: int, device=None, dtype=None) -> nn.Sequential:
    """The first ``num_layers`` layers of VGG19's feature stack (3x3 convs, ReLU, 2x2 max-pool)."""
    layers: list[nn.Module] = []
    in_ch = 3
    for num_convs, width in _VGG19_STAGES:
        for _ in range(num_convs):
            layers += [nn.Conv2d(in_ch, width, 3, padding=1, device=device, dtype=dtype),
                       nn.ReLU()]
            in_ch = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers[:num_layers])


def load_vgg19_weights(features: nn.Sequential, path: str | None) -> None:
    """Load torchvision-layout weights from ``path`` into ``features``; fail naming the fix."""
    if not path:
        raise OptionError(f"vgg_weights_path: PerceptualLoss needs pretrained VGG19 weights; "
                          f"{_FETCH_HINT}")
    if not os.path.isfile(path):
        raise OptionError(f"vgg_weights_path: file '{path}' does not exist; {_FETCH_HINT}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same advice
        raise OptionError(f"vgg_weights_path: cannot read '{path}' as a torch state_dict "
                          f"({exc}); {_FETCH_HINT}") from exc
    wanted = features.state_dict()
    for key, tensor in wanted.items():
        found = state.get(f"features.{key}") if isinstance(state, Mapping) else None
        if not isinstance(found, torch.Tensor) or found.shape != tensor.shape:
            got = "missing" if found is None else f"shape {tuple(getattr(found, 'shape', ()))}"
            raise OptionError(
                f"vgg_weights_path: '{path}' has no VGG19 tensor 'features.{key}' of shape "
                f"{tuple(tensor.shape)} ({got}); expected torchvision's layout; {_FETCH_HINT}")
    features.load_state_dict({k: state[f"features.{k}"] for k in wanted})


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """Channel Gram matrix per image, normalised by C*H*W."""
    n, c, h, w = x.shape
    f = x.reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def _check_options(layer_weights: Mapping[str, float], vgg_type: str, criterion: str,
                   perceptual_weight: float, style_weight: float) -> None:
    """Validate PerceptualLoss options with messages starting with the option name."""
    if vgg_type != "vgg19":
        raise OptionError(f"vgg_type: only 'vgg19' is provided, got {vgg_type!r}")
    names = vgg19_layer_names()
    if not isinstance(layer_weights, Mapping) or not layer_weights:
        raise OptionError(f"layer_weights: expected a mapping of VGG19 layer names to weights, "
                          f"e.g. {{conv5_4: 1.0}}; got {layer_weights!r}")
    for name in layer_weights:
        if name not in names:
            raise OptionError(f"layer_weights: unknown VGG19 layer {name!r}; valid names: "
                              f"{', '.join(names)}")
    if criterion not in CRITERIA:
        raise OptionError(f"criterion: unknown value {criterion!r}; allowed: {', '.join(CRITERIA)}")
    if perceptual_weight <= 0 and style_weight <= 0:
        raise OptionError("perceptual_weight: both perceptual_weight and style_weight are 0; "
                          "set at least one of them > 0 or remove the loss")


@LOSSES.register_module()
class PerceptualLoss(nn.Module):
    """Weighted distances between frozen VGG19 features (and their Gram matrices) of pred/target.

    ``loss = sum_l w_l * (perceptual_weight * d(F_l(pred), F_l(target))
    + style_weight * d(G(F_l(pred)), G(F_l(target))))`` with ``d`` the mean absolute (``l1``) or
    squared (``l2``) error or the Frobenius norm (``fro``). Inputs are RGB in [0, 1] (in [-1, 1]
    with ``range_norm``); ``use_input_norm`` applies the ImageNet mean/std VGG was trained with.
    Gradients reach ``pred`` only; the VGG weights are frozen.
    """

    def __init__(self, layer_weights: Mapping[str, float] | None = None,
                 vgg_weights_path: str | None = None, vgg_type: str = "vgg19",
                 use_input_norm: bool = True, range_norm: bool = False,
                 perceptual_weight: float = 1.0, style_weight: float = 0.0,
                 criterion: str = "l1") -> None:
        super().__init__()
        self.layer_weights = dict(layer_weights) if layer_weights is not None else {"conv5_4": 1.0}
        _check_options(self.layer_weights, vgg_type, criterion, perceptual_weight, style_weight)
        names = vgg19_layer_names()
        self.layer_at = {names.index(name): name for name in self.layer_weights}
        self.features = build_vgg19_features(max(self.layer_at) + 1)
        load_vgg19_weights(self.features, vgg_weights_path)
        self.features.requires_grad_(False)
        self.use_input_norm, self.range_norm = use_input_norm, range_norm
        self.perceptual_weight, self.style_weight = perceptual_weight, style_weight
        self.criterion = criterion
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The selected VGG19 feature maps of an RGB batch, by layer name."""
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.layer_at:
                out[self.layer_at[index]] = x
        return out

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The configured criterion between two feature tensors."""
        if self.criterion == "fro":
            return torch.linalg.vector_norm(a - b)
        return F.l1_loss(a, b) if self.criterion == "l1" else F.mse_loss(a, b)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"target: shape {tuple(target.shape)} differs from pred's "
                             f"{tuple(pred.shape)}")
        pred_feats = self.extract(pred)
        with torch.no_grad():
            target_feats = self.extract(target)
        loss = pred.new_zeros(())
        for name, weight in self.layer_weights.items():
            p, t = pred_feats[name], target_feats[name]
            if self.perceptual_weight > 0:
                loss = loss + self.perceptual_weight * weight * self.distance(p, t)
            if self.style_weight > 0:
                loss = loss + self.style_weight * weight * self.distance(gram_matrix(p),
                                                                         gram_matrix(t))
        return loss
