"""The contract every registered architecture keeps, checked on a tiny configuration of each.

A new arch must add its tiny configuration here (the first test fails until it does). An
upscaling arch says so with an ``upscale`` attribute: its output is the input times it. A
discriminator (``role = "discriminator"``: images to logits, not images to images) keeps its
own contract below, on a tiny configuration in ``DISCRIMINATORS``.
"""
import io

import pytest
import torch

from llcv.registry import ARCHS, build, registered_names

TINY = {  # name -> (options, input channels, expected size_multiple, upscale)
    "UNet": ({"widths": [4, 8, 16], "blocks": [1, 2, 1]}, 3, 4, 1),
    "NAFNet": ({"width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]},
               3, 4, 1),
    "NAFNetLocal": ({"width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1],
                     "dec_blk_nums": [1, 1], "train_size": [1, 3, 8, 8]}, 3, 4, 1),
    "Restormer": ({"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1,
                   "heads": [1, 2, 2, 4]}, 3, 8, 1),
    "DnCNN": ({"in_ch": 3, "depth": 4, "features": 8}, 3, 1, 1),
    "RepPlainNet": ({"features": 8, "num_blocks": 2}, 3, 1, 1),
    "EDSR": ({"num_feat": 8, "num_block": 1, "upscale": 2}, 3, 1, 2),
    "RCAN": ({"num_feat": 8, "num_group": 1, "num_block": 1, "squeeze_factor": 2, "upscale": 3},
             3, 1, 3),
    "MSRResNet": ({"num_feat": 8, "num_block": 1, "upscale": 4}, 3, 1, 4),
    "RRDBNet": ({"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 2}, 3, 2, 2),
    "SRVGGNetCompact": ({"num_in_ch": 1, "num_out_ch": 1, "num_feat": 8, "num_conv": 2,
                         "upscale": 4}, 1, 1, 4),
    "SwinIR": ({"img_size": 8, "embed_dim": 8, "depths": [2], "num_heads": [2], "window_size": 4,
                "mlp_ratio": 2, "upsampler": "pixelshuffle", "upscale": 2}, 3, 4, 2),
}
SIZES = [(13, 7), (17, 23), (1, 1), (16, 8)]
DISCRIMINATORS = {  # name -> (options, input channels, input H and W, logits per pixel)
    "VGGStyleDiscriminator": ({"num_in_ch": 3, "num_feat": 2, "input_size": 128}, 3, (128, 128),
                              False),
    "UNetDiscriminatorSN": ({"num_in_ch": 1, "num_feat": 4}, 1, (16, 24), True),
}


def role(name: str) -> str:
    """What a registered arch is: ``discriminator`` when it declares so, else ``image``."""
    return getattr(ARCHS.get(name), "role", "image")


def image_archs() -> list[str]:
    """The registered image-to-image archs (every one but the discriminators)."""
    return [n for n in registered_names(ARCHS) if role(n) == "image"]


def tiny(name: str, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    options = (TINY.get(name) or DISCRIMINATORS[name])[0]
    return build(ARCHS, {"type": name, **options}, "network_g", **kwargs)


def test_every_registered_arch_has_a_tiny_configuration():
    assert set(image_archs()) == set(TINY)
    assert {n for n in registered_names(ARCHS) if role(n) == "discriminator"} == \
        set(DISCRIMINATORS)
    assert set(registered_names(ARCHS)) == set(TINY) | set(DISCRIMINATORS)


def expected_shape(name: str, x: torch.Tensor) -> tuple[int, ...]:
    n, c, h, w = x.shape
    scale = TINY[name][3]
    return n, c, h * scale, w * scale


@pytest.mark.parametrize("name", sorted(TINY))
def test_any_input_size_gives_input_size_times_upscale(name):
    model = tiny(name).eval()
    channels, multiple, scale = TINY[name][1:]
    assert model.size_multiple == multiple
    assert getattr(model, "upscale", 1) == scale
    with torch.no_grad():
        for h, w in SIZES:
            x = torch.rand(2, channels, h, w)
            assert model(x).shape == expected_shape(name, x)


@pytest.mark.parametrize("name", sorted(TINY))
def test_backward_reaches_every_parameter(name):
    model = tiny(name).train()
    with torch.no_grad():  # zero-initialised scales (NAFNet's beta/gamma) would stop gradients
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.1)
    model(torch.rand(2, TINY[name][1], 9, 10)).square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", sorted(TINY))
def test_state_dict_round_trip_gives_identical_outputs(name):
    a, b = tiny(name, 0).eval(), tiny(name, 1).eval()
    for module in a.modules():  # non-trivial running statistics, where there are any
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.rand(1, TINY[name][1], 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(TINY))
def test_builds_on_meta_device(name):
    model = tiny(name, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    x = torch.empty(1, TINY[name][1], 16, 12, device="meta")
    assert model(x).shape == expected_shape(name, x)


def logits_shape(name: str, x: torch.Tensor) -> tuple[int, ...]:
    """One logit per image, or per pixel."""
    return (x.shape[0], 1, *x.shape[-2:]) if DISCRIMINATORS[name][3] else (x.shape[0], 1)


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminator_gives_logits_and_backward_reaches_every_parameter(name):
    model = tiny(name).train()
    channels, (h, w) = DISCRIMINATORS[name][1:3]
    x = torch.rand(2, channels, h, w)
    out = model(x)
    assert out.shape == logits_shape(name, x)
    out.square().mean().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminator_state_dict_round_trip_and_meta_build(name):
    a, b = tiny(name, 0).train(), tiny(name, 1)
    channels, (h, w) = DISCRIMINATORS[name][1:3]
    x = torch.rand(2, channels, h, w)
    a(x)  # a training forward moves running statistics and spectral-norm vectors
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=0)
    meta = tiny(name, device="meta")
    assert meta(torch.empty(1, channels, h, w, device="meta")).shape == \
        logits_shape(name, x[:1])
