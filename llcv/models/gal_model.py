"""GAL's mask training (Lin et al., CVPR 2019) as a training step, for ``prune: {type: GALPruner}``.

Over the ``prune.mask_iters`` iterations before each point of ``prune.schedule`` (a *mask
phase*) the step owns a frozen copy of the network as it was when the phase began (the
baseline; the unpruned network before the first point), soft masks on the network's channel
groups (``llcv.pruners.soft_masks``, attached to the live network, so validation and the prune
event see the masked network) and their proximal optimizer. Each phase iteration, on the LQ
batch only (GAL is label-free):

1. **discriminator** — baseline and network fixed: ``train.gan_opt`` on ``network_d(baseline
   output)`` as real (``l_d_real``) and on the masked network's detached output as fake
   (``l_d_fake``), plus the regulariser ``train.gal.d_reg_weight * sum(theta^2)``
   (``l_d_reg``), one ``train.optim_d`` step;
2. **network and masks** — discriminator fixed: ``train.gan_opt`` on the output judged real
   (``l_g_gan``) plus ``train.gal.data_weight * MSE(output, baseline output)`` (``l_data``);
   one ``optim_g`` step of the weights and one FISTA step of the masks under the L1 term
   ``prune.sparsity`` x the memory weights (``l_sparse``), re-estimated every
   ``prune.reweight_every`` iterations. ``mask_mean`` (mean |mask|) and ``mask_zero`` (the
   fraction of masks at exactly 0) are logged.

At the point, ``GALPruner`` thresholds the masks into a plan; the new network gets the kept
masks folded into its weights (:meth:`after_model_replaced`), the masks are dropped, and the
iterations outside mask phases train as :class:`ImageRestorationModel` does (the
``train.*_opt`` losses against ``gt``: ordinary fine-tuning). Training states hold the
discriminator and, mid-phase, the masks, their optimizer and the baseline, so a resumed run
continues bit-exactly on CPU. An EMA of the weights would average unmasked weights, so
``train.ema_decay`` must be 0.
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llcv.errors import LLCVError, OptionError
from llcv.models.base import TrainStep
from llcv.models.distributed import average_gradients
from llcv.models.gan_model import Discriminator, build_gan_loss, check_float32
from llcv.models.restoration_model import ImageRestorationModel, check_finite
from llcv.network import Plan, Spec
from llcv.pruners.gal_pruner import GALPruner
from llcv.pruners.soft_masks import ProximalL1, SoftMasks
from llcv.registry import MODELS, PRUNERS, build
from llcv.schema import FLOAT, Component, Key

GAL_KEYS = {"data_weight": Key(FLOAT, 1.0, low=0.0), "d_reg_weight": Key(FLOAT, 1e-4, low=0.0)}
SCHEDULE_KEYS = ("schedule", "split")  # keys of ``prune:`` that are not the pruner's


def mask_windows(schedule: Sequence[int], mask_iters: int) -> list[tuple[int, int]]:
    """(first, last) iteration of the mask phase before each point: ``mask_iters`` long, or
    shorter when the previous point (or the run start) is closer."""
    windows, previous = [], 0
    for point in schedule:
        windows.append((max(previous, point - mask_iters) + 1, point))
        previous = point
    return windows


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with no parameter requiring gradients."""
    return copy.deepcopy(model).eval().requires_grad_(False)


class MaskPhase:
    """One mask phase: the baseline, the masks on the live network, their optimizer."""

    def __init__(self, window: tuple[int, int], model: nn.Module, spec: Spec,
                 pruner: GALPruner, device: torch.device) -> None:
        self.first, self.point = window
        self.problem = pruner.problem(model, spec)
        self.baseline = frozen_copy(model)
        self.masks = SoftMasks(model, self.problem.graph,
                               pruner.trainable(model, self.problem)).to(device)
        self.order = list(self.masks.groups)
        self.optimizer = ProximalL1([{"params": [self.masks.mask(g)]} for g in self.order],
                                    lr=pruner.mask_lr, sparsity=pruner.sparsity)

    def reweight(self, pruner: GALPruner) -> None:
        """Refresh each group's sparsity weight from the peak at the widths kept now."""
        weights = pruner.mask_weights(self.problem, self.masks.values())
        for group, g in zip(self.optimizer.param_groups, self.order):
            group["weight"] = weights[g]
        self.optimizer.restart()

    def stats(self) -> dict[str, float]:
        """Mean |mask|, the fraction of masks at exactly 0, and the L1 penalty."""
        values = torch.cat(list(self.masks.values().values()))
        return {"mask_mean": values.abs().mean().item(),
                "mask_zero": (values == 0).float().mean().item(),
                "l_sparse": self.optimizer.penalty()}

    def state_dict(self) -> dict[str, Any]:
        """The point, masks, baseline weights and the masks' optimizer state."""
        return {"point": self.point, "masks": self.masks.state_dict(),
                "baseline": self.baseline.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved, for the same prune point."""
        if state["point"] != self.point:
            raise LLCVError(f"path.resume_state: the saved masks belong to the prune point "
                            f"{state['point']}, the run is before {self.point}; resume with the "
                            f"original prune.schedule")
        self.masks.load_state_dict(state["masks"])
        self.baseline.load_state_dict(state["baseline"])
        self.optimizer.load_state_dict(state["optimizer"])


@MODELS.register_module()
class GALModel(TrainStep):
    """Mask phases before each prune point (GAL), plain restoration training elsewhere."""

    loss_keys = ImageRestorationModel.loss_keys
    train_keys = {"optim_d": Component("optimizer"), "gan_opt": Component("loss"),
                  "gal": GAL_KEYS}
    top_keys = {"network_d": Component("arch")}

    def __init__(self, opt: Mapping[str, Any], device: torch.device) -> None:
        super().__init__(opt, device)
        train, prune = opt["train"], opt.get("prune")
        if not isinstance(prune, Mapping) or prune.get("type") != "GALPruner":
            raise OptionError("model_type: GALModel trains the soft masks of a prune: section "
                              "with type: GALPruner (and its schedule); add one")
        check_float32(opt)
        if train["ema_decay"] > 0:
            raise OptionError("train.ema_decay: GALModel trains masked weights, which an EMA "
                              "of the bare weights would not follow; set it to 0")
        self.restoration = ImageRestorationModel(opt, device)
        self.losses = self.restoration.losses
        self.pruner: GALPruner = build(PRUNERS, {k: v for k, v in prune.items()
                                                 if k not in SCHEDULE_KEYS}, "prune")
        self.windows = mask_windows(prune["schedule"], self.pruner.mask_iters)
        self.gan = build_gan_loss(train, device)
        self.data_weight = train["gal"]["data_weight"]
        self.d_reg_weight = train["gal"]["d_reg_weight"]
        self.grad_clip_norm = train["grad_clip_norm"]
        self.d = Discriminator(opt, device)
        self.phase: Optional[MaskPhase] = None
        self._pending: Optional[Mapping[str, Any]] = None  # a resumed phase, set up when used

    def window(self, it: int) -> Optional[tuple[int, int]]:
        """The mask phase ``it`` belongs to (None: a plain training iteration)."""
        return next((w for w in self.windows if w[0] <= it <= w[1]), None)

    def __call__(self, state: Any, batch: Mapping[str, Any], it: int) -> dict[str, float]:
        """A mask iteration inside a mask phase, else a restoration iteration."""
        window = self.window(it)
        if window is None:
            return self.restoration(state, batch, it)
        phase = self._phase(state, window)
        values = self.mask_iteration(state, phase, batch["lq"].to(self.device), it)
        return {f"train/{name}": value for name, value in values.items()}

    def _phase(self, state: Any, window: tuple[int, int]) -> MaskPhase:
        """The phase of ``window``: the current one, or a new one (from a resumed state)."""
        if self.phase is not None and self.phase.point == window[1]:
            return self.phase
        if self.phase is not None:
            self.phase.masks.detach()
        phase = MaskPhase(window, state.model, state.spec, self.pruner, self.device)
        if self._pending is not None:
            phase.load_state_dict(self._pending)
            self._pending = None
        phase.masks.attach(state.model)
        self.phase = phase
        return phase

    def mask_iteration(self, state: Any, phase: MaskPhase, lq: torch.Tensor,
                       it: int) -> dict[str, float]:
        """GAL's two stages on one batch: the discriminator, then the network and masks."""
        if (it - phase.first) % self.pruner.reweight_every == 0:
            phase.reweight(self.pruner)
        state.lr_schedule.apply(phase.optimizer, it)
        with torch.no_grad():
            target = phase.baseline(lq)
        state.optimizer.zero_grad(set_to_none=True)
        phase.optimizer.zero_grad(set_to_none=True)
        output = state.train_model(lq)
        values = self.discriminator_step(target, output.detach(), it)
        with self.d.frozen() as net:
            terms = {"l_g_gan": self.gan(net(output), True, is_disc=False),
                     "l_data": self.data_weight * F.mse_loss(output, target)}
        g_values = {name: term.item() for name, term in terms.items()}
        check_finite(g_values, it)
        sum(terms.values()).backward()
        average_gradients(list(phase.masks.parameters()))
        if self.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(state.model.parameters(), self.grad_clip_norm)
        state.optimizer.step()
        phase.optimizer.step()
        return {**values, **g_values, **phase.stats()}

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor,
                           it: int) -> dict[str, float]:
        """Stage 1: baseline outputs are real, the masked network's are fake; L2 regulariser."""
        net = self.d.train_model()
        terms = {"l_d_real": self.gan(net(real), True, is_disc=True),
                 "l_d_fake": self.gan(net(fake), False, is_disc=True),
                 "l_d_reg": self.d_reg_weight * sum(p.square().sum()
                                                    for p in self.d.net.parameters())}
        return self.d.update(terms, it)

    def after_model_replaced(self, state: Any, plan: Plan) -> None:
        """Fold the kept masks into the pruned network's weights and end the phase."""
        if self.phase is None:
            return
        self.phase.masks.detach()
        self.phase.masks.fold(state.model, plan)
        self.phase = None

    def memory_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        return self.restoration.memory_loss()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"d": self.d.optimizer}

    def held(self) -> list[Any]:
        phase = [] if self.phase is None else [self.phase.baseline, self.phase.masks,
                                               self.phase.optimizer]
        return [self.d.net, self.d.optimizer, *phase]

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"d": self.d.state_dict()}
        phase = self.phase.state_dict() if self.phase is not None else self._pending
        if phase is not None:
            state["phase"] = phase
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "d" not in state:
            raise LLCVError("path.resume_state: the state holds no GAL discriminator; resume "
                            "with the model_type of the original run")
        self.d.load_state_dict(state["d"])
        if self.phase is not None:
            self.phase.masks.detach()
        self.phase, self._pending = None, state.get("phase")
