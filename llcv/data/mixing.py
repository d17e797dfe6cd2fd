"""Batch-level mixing augmentation (Restormer's ``train.mixing_augs``): mixup of image pairs.

A mixed pair is ``lam * pair + (1 - lam) * pair[perm]`` for LQ and GT alike, with
``lam ~ Beta(mixup_beta, mixup_beta)`` and a random permutation of the batch. With
``use_identity`` the batch is left as it is half of the time. Draws come from torch's global
RNG, which every training state saves, so a resumed run mixes the same batches.
"""
from __future__ import annotations

import torch

from llcv.errors import OptionError
from llcv.utils import check_number


class MixingAugment:
    """``(lq, gt) -> (lq, gt)`` mixed as the options say."""

    def __init__(self, mixup: bool = True, mixup_beta: float = 1.2,
                 use_identity: bool = False) -> None:
        if not mixup:
            raise OptionError("train.mixing_augs.mixup: mixup is the only mixing llcv has; "
                              "remove train.mixing_augs to train without mixing")
        beta = check_number("train.mixing_augs.mixup_beta", mixup_beta, error=OptionError)
        if beta <= 0:
            raise OptionError(f"train.mixing_augs.mixup_beta: must be > 0, got {mixup_beta!r}")
        self.beta = torch.distributions.Beta(torch.tensor([beta]), torch.tensor([beta]))
        self.use_identity = bool(use_identity)

    def __call__(self, lq: torch.Tensor, gt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.use_identity and torch.randint(0, 2, ()).item() == 0:
            return lq, gt
        lam = self.beta.sample().item()
        perm = torch.randperm(lq.shape[0]).to(lq.device)
        return lam * lq + (1 - lam) * lq[perm], lam * gt + (1 - lam) * gt[perm]
