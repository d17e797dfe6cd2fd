"""Degradation-classification pre-training (DCPT, Hu et al., ICLR 2025), then restoration.

The first ``train.dcpt.iters`` iterations of the run pre-train; each does two updates:

1. **classification** — the LQ batch through the network; the deep features of
   ``train.dcpt.feature_layers`` (a default per architecture) go to a small classifier head owned
   by this step; cross-entropy against the batch's degradation ``label`` times
   ``train.dcpt.cls_weight`` updates the layers up to the features and the head;
2. **generation** — the network auto-encodes the clean image (``network(gt)`` against ``gt``)
   with ``train.gen_opt`` (default: the restoration losses), so it keeps producing images.

The remaining iterations train restoration as :class:`ImageRestorationModel` does (the network
optimizer's state is cleared at the switch unless ``train.dcpt.reset_optimizer: false``;
``train.mixing_augs`` apply to this phase only). ``train.amp`` and ``channels_last`` apply to
both phases; with several processes the generation forward goes through the DDP wrapper and
the classification step averages its gradients itself. The
head lives in training states only, never in ``models/net_g_*.pth``; to fine-tune in a separate
run instead, pre-train with ``dcpt.iters`` equal to ``total_iter`` and start the restoration run
from that weights file with ``path.pretrain_network_g``.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llcv.errors import LLCVError, OptionError
from llcv.models.deep_features import (capture_features, image_channels, ordered,
                                       probe_shapes, resolve_feature_layers)
from llcv.models.distributed import average_gradients
from llcv.models.restoration_model import ImageRestorationModel, check_finite
from llcv.network import build_network, network_spec
from llcv.optim.optimizers import build_optimizer
from llcv.registry import MODELS
from llcv.schema import BOOL, FLOAT, INT, Component, Key
from llcv.utils import module_modes

DCPT_KEYS = {
    "iters": Key(INT, low=0),  # pre-training iterations, counted in train.total_iter
    "num_classes": Key(INT, 5, low=2),
    "feature_layers": Key((list, type(None)), None),
    "cls_weight": Key(FLOAT, 1.0, low=0.0),
    "head_width": Key(INT, 64, low=1),
    "optim_head": Component("optimizer", required=False),  # default: train.optim_g
    "reset_optimizer": Key(BOOL, True),
}


class DegradationHead(nn.Module):
    """A light classifier of deep features: per feature map two 3x3 convs (the first strided)
    with GroupNorm and GELU, global average pooling, then a two-layer MLP over the maps."""

    def __init__(self, in_channels: Sequence[int], num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.branches = nn.ModuleList(nn.Sequential(
            nn.Conv2d(c, width, 3, stride=2, padding=1), nn.GroupNorm(1, width), nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1), nn.GELU()) for c in in_channels)
        self.fc = nn.Sequential(nn.Linear(width * len(in_channels), width), nn.GELU(),
                                nn.Linear(width, num_classes))

    def forward(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Class logits (N, num_classes) of a list of NCHW feature maps."""
        pooled = [branch(f).mean(dim=(-2, -1)) for branch, f in zip(self.branches, features)]
        return self.fc(torch.cat(pooled, dim=1))


@MODELS.register_module()
class DCPTModel(ImageRestorationModel):
    """DCPT pre-training for ``train.dcpt.iters`` iterations, then plain restoration."""

    loss_keys = {**ImageRestorationModel.loss_keys, "gen_opt": "l_gen"}
    train_keys = {**ImageRestorationModel.train_keys, "dcpt": DCPT_KEYS}

    def __init__(self, opt: Mapping[str, Any], device: torch.device) -> None:
        super().__init__(opt, device)
        train, cfg = opt["train"], opt["train"]["dcpt"]
        if cfg["iters"] > train["total_iter"]:
            raise OptionError(f"train.dcpt.iters: {cfg['iters']} pre-training iterations exceed "
                              f"train.total_iter ({train['total_iter']}), which counts them; "
                              f"lower train.dcpt.iters or raise train.total_iter")
        self.iters, self.num_classes = cfg["iters"], cfg["num_classes"]
        self.cls_weight, self.reset_optimizer = cfg["cls_weight"], cfg["reset_optimizer"]
        # the parent built every loss section; generation's is not a restoration loss
        self.gen_losses = {"l_gen": self.losses.pop("l_gen")} if "l_gen" in self.losses \
            else dict(self.losses)
        if not self.losses and self.iters < train["total_iter"]:
            raise OptionError("train.pixel_opt: the fine-tuning phase (after train.dcpt.iters) "
                              "needs a restoration loss, e.g. train.pixel_opt: {type: L1Loss}")
        self.layers, self.channels = self._probe(opt["network_g"], cfg["feature_layers"])
        with torch.random.fork_rng(devices=[]):  # the head does not shift the run's RNG stream
            torch.manual_seed(opt["manual_seed"])
            self.head = DegradationHead(self.channels, self.num_classes,
                                        cfg["head_width"]).to(device)
        self.head_optimizer = build_optimizer(self.head.parameters(),
                                              cfg.get("optim_head") or train["optim_g"],
                                              "train.dcpt.optim_head")

    @staticmethod
    def _probe(network_g: Mapping[str, Any], patterns: Sequence[str] | None
               ) -> tuple[list[str], list[int]]:
        """Feature layer names and channels of ``network_g``, from a data-less forward."""
        model = build_network(network_spec(network_g), "meta")
        layers = resolve_feature_layers(model, network_g["type"], patterns,
                                        "train.dcpt.feature_layers")
        channels, in_shape, out_shape = probe_shapes(model, layers, image_channels(network_g))
        if in_shape != out_shape:
            raise OptionError(f"network_g: DCPT's generation step auto-encodes the clean image, "
                              f"so the network must keep the input size; {network_g['type']} maps "
                              f"{in_shape} to {out_shape}")
        return layers, channels

    # ------------------------------------------------------------------ iteration
    def __call__(self, state: Any, batch: Mapping[str, Any], it: int) -> dict[str, float]:
        if it > self.iters:
            if it == self.iters + 1:
                self._warn_if_identity(state, batch["lq"])
                if self.reset_optimizer:
                    state.optimizer.state.clear()  # fine-tuning starts with fresh moments
            return super().__call__(state, batch, it)
        lq = batch["lq"].to(self.device, non_blocking=True)
        gt = batch["gt"].to(self.device, non_blocking=True)
        labels = self._labels(batch)
        return {**self.classification_step(state, lq, labels, it),
                **self.generation_step(state, gt, it)}

    def _labels(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """The batch's degradation classes, checked against ``num_classes``."""
        if "label" not in batch:
            raise LLCVError("datasets.train: DCPTModel needs degradation labels; use "
                            "AllInOneDataset (or SyntheticPairedDataset with return_label: true "
                            "and a RandomChoice degradation)")
        labels = torch.as_tensor(batch["label"]).long()
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise OptionError(f"train.dcpt.num_classes: labels must be in [0, {self.num_classes}),"
                              f" got {sorted(set(labels.tolist()))}; set it to the number of "
                              f"degradations of datasets.train")
        return labels.to(self.device, non_blocking=True)

    def classification_step(self, state: Any, lq: torch.Tensor, labels: torch.Tensor,
                            it: int) -> dict[str, float]:
        """One update of the network (up to the feature layers) and the head by cross-entropy.

        The forward runs on the bare network: the layers after the features get no gradient
        (and no update), which DDP's wrapper would refuse; gradients are averaged here instead.
        """
        state.optimizer.zero_grad(set_to_none=True)
        self.head_optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast(), capture_features(state.model, self.layers) as store:
            state.model(lq.contiguous(memory_format=state.memory_format))
            features = ordered(store, self.layers)
            self._check_channels(features)
            logits = self.head(features)
        loss = self.cls_weight * F.cross_entropy(logits.float(), labels)
        values = {"l_cls": loss.item()}
        check_finite(values, it)
        self.precision.backward(loss)
        params = [*state.model.parameters(), *self.head.parameters()]
        average_gradients(params)
        self._step_both(state.optimizer, params)
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        return {"train/l_cls": values["l_cls"], "train/acc_cls": accuracy}

    def _step_both(self, optimizer: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
        """Unscale (fp16), clip the joint gradient norm, step the network's optimizer and the
        head's, then update the loss scale once."""
        scaler = self.precision.scaler
        optimizers = (optimizer, self.head_optimizer)
        if scaler is not None:
            for opt in optimizers:
                scaler.unscale_(opt)
        if self.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(params, self.grad_clip_norm)
        for opt in optimizers:
            if scaler is None:
                opt.step()
            else:
                scaler.step(opt)
        if scaler is not None:
            scaler.update()

    def generation_step(self, state: Any, gt: torch.Tensor, it: int) -> dict[str, float]:
        """One update of the network reconstructing the clean image from itself (the head is
        not involved)."""
        state.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            output = state.train_model(gt.contiguous(memory_format=state.memory_format))
            total = sum(loss(output.float(), gt) for loss in self.gen_losses.values())
        values = {"l_gen": total.item()}
        check_finite(values, it)
        self.precision.backward(total)
        self.precision.step(state.optimizer, state.model.parameters(), self.grad_clip_norm)
        return {"train/l_gen": values["l_gen"]}

    def _warn_if_identity(self, state: Any, lq: torch.Tensor) -> None:
        """Warn when pre-training left the network returning its input: auto-encoding can drive
        a residual network's branch to zero with every unit before its tail dead, and then
        restoration cannot move it (seen on the all-in-one demo's UNet)."""
        lq = lq.to(self.device).contiguous(memory_format=state.memory_format)
        with module_modes(state.model, False), torch.no_grad():
            out = state.model(lq)
        if out.shape == lq.shape and torch.allclose(out.float(), lq.float(), atol=1e-4):
            logging.getLogger("llcv").warning(
                "train.dcpt: after pre-training the network returns its input unchanged (within "
                "1e-4 on this batch); its residual branch collapsed in the generation step and "
                "fine-tuning may not revive it. Lower train.gen_opt.loss_weight or the learning "
                "rate, or shorten train.dcpt.iters")

    def _check_channels(self, features: Sequence[torch.Tensor]) -> None:
        """Fail clearly when the live network's features do not fit the head (e.g. pruned)."""
        got = [f.shape[1] for f in features]
        if got != self.channels:
            raise LLCVError(f"train.dcpt.feature_layers: the network's features have {got} "
                            f"channels, the classifier head was built for {self.channels} from "
                            f"network_g; prune only after pre-training (train.dcpt.iters)")

    # ------------------------------------------------------------------ plumbing
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"head": self.head_optimizer}

    def held(self) -> list[Any]:
        return [self.head, self.head_optimizer]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "head": self.head.state_dict(),
                "head_optimizer": self.head_optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "head" not in state:
            raise LLCVError("path.resume_state: the state holds no DCPT classifier head; resume "
                            "with the model_type of the original run")
        super().load_state_dict(state)
        self.head.load_state_dict(state["head"])
        self.head_optimizer.load_state_dict(state["head_optimizer"])

    def memory_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        losses = list(self.gen_losses.values())
        return lambda out, gt: sum(loss(out, gt) for loss in losses)
