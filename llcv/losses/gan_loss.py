"""The adversarial loss of GAN training (``train.gan_opt``), with BasicSR's options and meaning.

``GANLoss(gan_type, real_label_val=1.0, fake_label_val=0.0, loss_weight=1.0)`` is called as
``loss(logits, target_is_real, is_disc=False)`` on a discriminator's raw logits:

- ``vanilla``: binary cross-entropy with logits against the real / fake label value;
- ``lsgan``: mean squared error against the label value;
- ``wgan``: ``-mean(logits)`` for real, ``mean(logits)`` for fake;
- ``wgan_softplus``: ``mean(softplus(-logits))`` for real, ``mean(softplus(logits))`` for fake
  (the non-saturating logistic loss);
- ``hinge``: for the discriminator ``mean(relu(1 - logits))`` on real and
  ``mean(relu(1 + logits))`` on fake; for the generator ``-mean(logits)``.

``loss_weight`` scales the generator's term only (``is_disc=False``); the discriminator's loss
is never weighted, as in BasicSR. The label values matter to ``vanilla`` and ``lsgan`` only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llcv.errors import ArgumentError
from llcv.registry import LOSSES

GAN_TYPES = ("vanilla", "lsgan", "wgan", "wgan_softplus", "hinge")


@LOSSES.register_module()
class GANLoss(nn.Module):
    """Adversarial loss of ``gan_type`` on discriminator logits."""

    def __init__(self, gan_type: str, real_label_val: float = 1.0,
                 fake_label_val: float = 0.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        if gan_type not in GAN_TYPES:
            raise ArgumentError(f"gan_type: unknown value {gan_type!r}; allowed: "
                                f"{', '.join(GAN_TYPES)}")
        self.gan_type = gan_type
        self.real_label_val, self.fake_label_val = float(real_label_val), float(fake_label_val)
        self.loss_weight = float(loss_weight)

    def _labelled(self, logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        """The loss of ``vanilla``/``lsgan`` against a constant label map."""
        value = self.real_label_val if target_is_real else self.fake_label_val
        label = torch.full_like(logits, value)
        if self.gan_type == "vanilla":
            return F.binary_cross_entropy_with_logits(logits, label)
        return F.mse_loss(logits, label)

    def _unweighted(self, logits: torch.Tensor, target_is_real: bool, is_disc: bool) \
            -> torch.Tensor:
        """The loss of ``gan_type`` before ``loss_weight``."""
        if self.gan_type in ("vanilla", "lsgan"):
            return self._labelled(logits, target_is_real)
        if self.gan_type == "wgan":
            return -logits.mean() if target_is_real else logits.mean()
        if self.gan_type == "wgan_softplus":
            return F.softplus(-logits).mean() if target_is_real else F.softplus(logits).mean()
        if not is_disc:  # hinge, generator
            return -logits.mean()
        return F.relu(1.0 - logits).mean() if target_is_real else F.relu(1.0 + logits).mean()

    def forward(self, logits: torch.Tensor, target_is_real: bool,
                is_disc: bool = False) -> torch.Tensor:
        """The loss of ``logits`` meant to be judged real (or fake); weighted for the generator."""
        loss = self._unweighted(logits, target_is_real, is_disc)
        return loss if is_disc else self.loss_weight * loss
