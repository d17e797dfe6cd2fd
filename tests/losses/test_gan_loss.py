"""GANLoss: every gan_type's value against its formula, the generator/discriminator split of
hinge, label values, and loss_weight applying to the generator's term only (as in BasicSR)."""
import math

import pytest
import torch
import torch.nn.functional as F

from llcv.errors import ArgumentError
from llcv.registry import LOSSES, build

LOGITS = torch.tensor([[-2.0, -0.5], [0.3, 1.7]])


def gan(gan_type, **kwargs):
    return build(LOSSES, {"type": "GANLoss", "gan_type": gan_type, **kwargs}, "train.gan_opt")


def bce(x, label):
    return float(torch.mean(-(label * F.logsigmoid(x) + (1 - label) * F.logsigmoid(-x))))


@pytest.mark.parametrize("real", [True, False])
def test_each_type_matches_its_formula(real):
    x = LOGITS
    expected = {
        "vanilla": bce(x, 1.0 if real else 0.0),
        "lsgan": float(((x - (1.0 if real else 0.0)) ** 2).mean()),
        "wgan": float(-x.mean() if real else x.mean()),
        "wgan_softplus": float(torch.log1p(torch.exp(-x if real else x)).mean()),
    }
    for gan_type, value in expected.items():
        for is_disc in (True, False):
            assert float(gan(gan_type)(x, real, is_disc=is_disc)) == pytest.approx(value), \
                gan_type


# By hand on LOGITS (mean -0.125): relu(1 - x) = 3, 1.5, 0.7, 0; relu(1 + x) = 0, 0.5, 1.3, 2.7;
# (x - 1)^2 = 9, 2.25, 0.49, 0.49; x^2 = 4, 0.25, 0.09, 2.89; softplus(-x) = 2.126928, 0.974077,
# 0.554355, 0.167763, and softplus(x) = softplus(-x) + x.
HAND = {  # gan_type -> (real, fake) for the discriminator, and the generator's term
    "vanilla": ((0.955787, 0.830787), 0.955787),
    "lsgan": ((12.23 / 4, 7.23 / 4), 12.23 / 4),
    "wgan_softplus": ((0.955787, 0.830787), 0.955787),
    "hinge": ((5.2 / 4, 4.5 / 4), 0.125),
}


@pytest.mark.parametrize("gan_type", sorted(HAND))
def test_values_computed_by_hand(gan_type):
    (real, fake), generator = HAND[gan_type]
    loss = gan(gan_type, loss_weight=0.5)
    assert float(loss(LOGITS, True, is_disc=True)) == pytest.approx(real, abs=1e-6)
    assert float(loss(LOGITS, False, is_disc=True)) == pytest.approx(fake, abs=1e-6)
    assert float(loss(LOGITS, True)) == pytest.approx(0.5 * generator, abs=1e-6)

def test_hinge_differs_for_discriminator_and_generator():
    x, loss = LOGITS, gan("hinge")
    assert float(loss(x, True, is_disc=True)) == pytest.approx(float(torch.relu(1 - x).mean()))
    assert float(loss(x, False, is_disc=True)) == pytest.approx(float(torch.relu(1 + x).mean()))
    assert float(loss(x, True, is_disc=False)) == pytest.approx(float(-x.mean()))


def test_label_values_and_weight_of_the_generator_term_only():
    smooth = gan("vanilla", real_label_val=0.9, fake_label_val=0.1, loss_weight=5e-3)
    assert float(smooth(LOGITS, True, is_disc=True)) == pytest.approx(bce(LOGITS, 0.9))
    assert float(smooth(LOGITS, False, is_disc=True)) == pytest.approx(bce(LOGITS, 0.1))
    assert float(smooth(LOGITS, True)) == pytest.approx(5e-3 * bce(LOGITS, 0.9))
    zero = torch.zeros(3, 1)
    assert float(gan("vanilla")(zero, True, is_disc=True)) == pytest.approx(math.log(2))


def test_gradient_pushes_fake_logits_up_for_the_generator():
    x = LOGITS.clone().requires_grad_(True)
    gan("wgan_softplus")(x, True).backward()
    assert (x.grad < 0).all()  # descending raises every logit toward "real"


def test_unknown_type_and_missing_type_are_named():
    with pytest.raises(ArgumentError, match="gan_type: unknown value 'wgan-gp'.*hinge"):
        gan("wgan-gp")
    with pytest.raises(Exception, match="gan_type"):
        build(LOSSES, {"type": "GANLoss"}, "train.gan_opt")
