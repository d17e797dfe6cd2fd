"""GAN training of a restoration network: BasicSR's SRGANModel and ESRGANModel.

Every iteration (with BasicSR's option names):

1. **generator** — when ``it % train.net_d_iters == 0`` and ``it > train.net_d_init_iters``:
   ``output = network_g(lq)``; the weighted sum of the ``train.*_opt`` restoration losses against
   ``gt`` (logged ``l_g_pix``, ``l_g_percep``, ...) plus ``train.gan_opt`` on the discriminator's
   view of ``output`` (``l_g_gan``; the discriminator frozen), one ``optim_g`` step; otherwise
   the output is computed without gradients;
2. **discriminator** — ``train.gan_opt`` on ``network_d(gt)`` as real (``l_d_real``) and on the
   detached output as fake (``l_d_fake``), one ``train.optim_d`` step; ``out_d_real`` /
   ``out_d_fake`` log the mean logits.

``ESRGANModel`` uses the relativistic average GAN of ESRGAN: the generator's term is the mean
of ``gan(real - mean(fake), False)`` and ``gan(fake - mean(real), True)``, the discriminator's
halves are ``gan(real - mean(fake), True) / 2`` and ``gan(fake - mean(real), False) / 2`` (one
forward of each batch; BasicSR runs the fake batch through ``network_d`` twice).

The discriminator (:class:`Discriminator`) is initialised from its own seed (the run's RNG
stream is not shifted), trained through a DistributedDataParallel wrapper when several
processes run, follows the run's LR schedule (``optimizers``), counts in the memory figures
(``held``) and is saved with its optimizer in training states (``state_dict``), so a resumed
run continues bit-exactly on CPU. It lives in training states only, not in ``models/net_g_*``.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from llcv.errors import LLCVError, OptionError
from llcv.losses.gan_loss import GANLoss
from llcv.models.base import TrainStep
from llcv.models.distributed import ddp_wrap
from llcv.models.restoration_model import build_losses, check_finite
from llcv.optim.optimizers import build_optimizer
from llcv.registry import ARCHS, LOSSES, MODELS, build, lookup
from llcv.schema import INT, Component, Key
from llcv.utils import module_modes

#: restoration losses of the generator -> their names in the logs (BasicSR's)
GENERATOR_LOSSES = {"pixel_opt": "l_g_pix", "perceptual_opt": "l_g_percep",
                    "ssim_opt": "l_g_ssim", "frequency_opt": "l_g_freq"}
GAN_KEYS = {"optim_d": Component("optimizer"), "gan_opt": Component("loss"),
            "net_d_iters": Key(INT, 1, low=1), "net_d_init_iters": Key(INT, 0, low=0)}
D_SEED_OFFSET = 7919  # the discriminator's initialisation seed: manual_seed + this


def build_gan_loss(train: Mapping[str, Any], device: torch.device) -> GANLoss:
    """``train.gan_opt``, which must be a GANLoss (it is called on logits, not images)."""
    loss = build(LOSSES, train["gan_opt"], "train.gan_opt")
    if not isinstance(loss, GANLoss):
        raise OptionError(f"train.gan_opt: expected {{type: GANLoss, gan_type: ...}}, got "
                          f"{train['gan_opt']['type']}")
    return loss.to(device)


def check_float32(opt: Mapping[str, Any]) -> None:
    """Refuse ``train.amp``: the adversarial steps run in float32."""
    if opt["train"]["amp"] is not None:
        raise OptionError(f"train.amp: {opt['model_type']} trains in float32 (no mixed "
                          f"precision for the adversarial steps); remove train.amp")


class Discriminator:
    """``network_d`` with its optimizer and (several processes) its DDP wrapper."""

    def __init__(self, opt: Mapping[str, Any], device: torch.device) -> None:
        cfg = opt["network_d"]
        if getattr(lookup(ARCHS, cfg["type"], "network_d.type"), "role", None) != \
                "discriminator":
            raise OptionError(f"network_d.type: {cfg['type']} is not a discriminator; use "
                              f"VGGStyleDiscriminator or UNetDiscriminatorSN")
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the run's RNG stream stays as it was
            torch.manual_seed(opt["manual_seed"] + D_SEED_OFFSET)
            self.net = build(ARCHS, cfg, "network_d", device=device).train()
        self.optimizer = build_optimizer(self.net.parameters(), opt["train"]["optim_d"],
                                         "train.optim_d")
        self.device = device
        self._wrapper: nn.Module | None = None

    def train_model(self) -> nn.Module:
        """The module to run for a discriminator update (its DDP wrapper with peers)."""
        if self._wrapper is None:
            self._wrapper = ddp_wrap(self.net, self.device)
        return self._wrapper

    @contextlib.contextmanager
    def frozen(self) -> Iterator[nn.Module]:
        """The bare discriminator with no parameter requiring gradients (a generator step)."""
        flags = [p.requires_grad for p in self.net.parameters()]
        self.net.requires_grad_(False)
        try:
            yield self.net
        finally:
            for p, flag in zip(self.net.parameters(), flags):
                p.requires_grad_(flag)

    def update(self, terms: Mapping[str, torch.Tensor], it: int) -> dict[str, float]:
        """One optimizer step on the sum of ``terms``; returns their values."""
        values = {name: term.item() for name, term in terms.items()}
        check_finite(values, it)
        self.optimizer.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        self.optimizer.step()
        return values

    def state_dict(self) -> dict[str, Any]:
        """The discriminator's weights and its optimizer's state (plain tensors)."""
        return {"net_d": self.net.state_dict(), "optimizer_d": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        if "net_d" not in state:
            raise LLCVError("path.resume_state: the state holds no discriminator; resume with "
                            "the model_type of the original run")
        self.net.load_state_dict(state["net_d"])
        self.optimizer.load_state_dict(state["optimizer_d"])


@MODELS.register_module()
class SRGANModel(TrainStep):
    """Alternating generator / discriminator updates with a standard GAN loss (BasicSR)."""

    loss_keys = GENERATOR_LOSSES
    train_keys = GAN_KEYS
    top_keys = {"network_d": Component("arch")}

    def __init__(self, opt: Mapping[str, Any], device: torch.device) -> None:
        super().__init__(opt, device)
        check_float32(opt)
        train = opt["train"]
        self.losses = build_losses(train, self.loss_keys, device)
        self.gan = build_gan_loss(train, device)
        self.net_d_iters, self.net_d_init_iters = train["net_d_iters"], train["net_d_init_iters"]
        self.grad_clip_norm = train["grad_clip_norm"]
        self.d = Discriminator(opt, device)

    def __call__(self, state: Any, batch: Mapping[str, Any], it: int) -> dict[str, float]:
        """A generator step when due, then a discriminator step."""
        lq = batch["lq"].to(self.device, non_blocking=True)
        gt = batch["gt"].to(self.device, non_blocking=True)
        values: dict[str, float] = {}
        if it % self.net_d_iters == 0 and it > self.net_d_init_iters:
            output, values = self.generator_step(state, lq, gt, it)
        else:
            with torch.no_grad():
                output = state.model(lq)
        values.update(self.discriminator_step(gt, output.detach(), it))
        return {f"train/{name}": value for name, value in values.items()}

    def generator_step(self, state: Any, lq: torch.Tensor, gt: torch.Tensor, it: int) \
            -> tuple[torch.Tensor, dict[str, float]]:
        """One update of the network: restoration losses plus the adversarial term."""
        state.optimizer.zero_grad(set_to_none=True)
        output = state.train_model(lq)
        terms = {name: loss(output, gt) for name, loss in self.losses.items()}
        terms["l_g_gan"] = self.adversarial(output, gt)
        values = {name: term.item() for name, term in terms.items()}
        check_finite(values, it)
        sum(terms.values()).backward()
        if self.grad_clip_norm is not None:
            nn.utils.clip_grad_norm_(state.model.parameters(), self.grad_clip_norm)
        state.optimizer.step()
        return output, values

    def adversarial(self, output: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """The generator's adversarial term: ``output`` judged real by the frozen discriminator."""
        with self.d.frozen() as net:
            return self.gan(net(output), True, is_disc=False)

    def discriminator_step(self, real: torch.Tensor, fake: torch.Tensor, it: int) \
            -> dict[str, float]:
        """One update of the discriminator on a real and a (detached) fake batch."""
        net = self.d.train_model()
        real_pred, fake_pred = net(real), net(fake)
        values = self.d.update(self.discriminator_terms(real_pred, fake_pred), it)
        values.update(out_d_real=real_pred.detach().mean().item(),
                      out_d_fake=fake_pred.detach().mean().item())
        return values

    def discriminator_terms(self, real_pred: torch.Tensor, fake_pred: torch.Tensor) \
            -> dict[str, torch.Tensor]:
        """The discriminator's loss terms on its logits of the real and the fake batch."""
        return {"l_d_real": self.gan(real_pred, True, is_disc=True),
                "l_d_fake": self.gan(fake_pred, False, is_disc=True)}

    def memory_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The generator's loss, with the discriminator run in eval mode (so estimating memory
        touches none of its running statistics or spectral-norm vectors)."""
        losses = list(self.losses.values())

        def loss(out: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
            with module_modes(self.d.net, False):
                return sum((l(out, gt) for l in losses), self.adversarial(out, gt))
        return loss

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"d": self.d.optimizer}

    def held(self) -> list[Any]:
        return [self.d.net, self.d.optimizer]

    def state_dict(self) -> dict[str, Any]:
        return self.d.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.d.load_state_dict(state)


@MODELS.register_module()
class ESRGANModel(SRGANModel):
    """SRGAN with ESRGAN's relativistic average discriminator."""

    def adversarial(self, output: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """Relativistic average term: each batch judged against the other's mean logit."""
        with self.d.frozen() as net:
            with torch.no_grad():
                real_pred = net(gt)
            fake_pred = net(output)
            return (self.gan(real_pred - fake_pred.mean(), False, is_disc=False)
                    + self.gan(fake_pred - real_pred.mean(), True, is_disc=False)) / 2

    def discriminator_terms(self, real_pred: torch.Tensor, fake_pred: torch.Tensor) \
            -> dict[str, torch.Tensor]:
        """Relativistic average halves of the discriminator's loss."""
        return {"l_d_real": self.gan(real_pred - fake_pred.detach().mean(), True,
                                     is_disc=True) * 0.5,
                "l_d_fake": self.gan(fake_pred - real_pred.detach().mean(), False,
                                     is_disc=True) * 0.5}
