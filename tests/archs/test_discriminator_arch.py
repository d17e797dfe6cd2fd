"""Discriminators: BasicSR's state_dict keys and shapes (so released weights load), spectral
normalisation that holds the largest singular value at 1, and clear errors for input sizes."""
import pytest
import torch

from llcv.errors import ArgumentError, LLCVError
from llcv.registry import ARCHS, build


def disc(name, **options):
    torch.manual_seed(0)
    return build(ARCHS, {"type": name, **options}, "network_d")


def vgg_keys(stages: int) -> list[str]:
    """BasicSR's VGGStyleDiscriminator keys: conv0_0 (with bias), conv0_1 + bn0_1, then per
    stage conv{i}_0 + bn{i}_0 and conv{i}_1 + bn{i}_1 (no conv bias), linear1, linear2."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv0_0.weight", "conv0_0.bias", "conv0_1.weight", *(f"bn0_1.{k}" for k in bn)]
    for i in range(1, stages):
        for j in (0, 1):
            keys += [f"conv{i}_{j}.weight", *(f"bn{i}_{j}.{k}" for k in bn)]
    return keys + ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"]


@pytest.mark.parametrize("input_size, stages", [(128, 5), (256, 6)])
def test_vgg_style_keys_and_one_logit_per_image(input_size, stages):
    model = disc("VGGStyleDiscriminator", num_in_ch=3, num_feat=4, input_size=input_size)
    state = model.state_dict()
    assert list(state) == vgg_keys(stages)
    assert state["conv0_1.weight"].shape == (4, 4, 4, 4)
    assert state["linear1.weight"].shape == (100, 4 * 8 * 4 * 4)
    assert model(torch.rand(2, 3, input_size, input_size)).shape == (2, 1)


def test_vgg_style_refuses_other_sizes():
    with pytest.raises(ArgumentError, match="input_size: must be 128 or 256"):
        disc("VGGStyleDiscriminator", input_size=96)
    model = disc("VGGStyleDiscriminator", num_feat=2)
    with pytest.raises(LLCVError, match="takes 128x128 images, got \\(64, 64\\)"):
        model(torch.rand(1, 3, 64, 64))


def test_unet_sn_keys_of_real_esrgan_and_its_size():
    model = disc("UNetDiscriminatorSN", num_in_ch=3, num_feat=64)
    state = model.state_dict()
    sn = [f"conv{i}.{k}" for i in range(1, 9) for k in ("weight_orig", "weight_u", "weight_v")]
    assert set(state) == {"conv0.weight", "conv0.bias", *sn, "conv9.weight", "conv9.bias"}
    assert state["conv3.weight_orig"].shape == (512, 256, 4, 4)
    assert state["conv3.weight_u"].shape == (512,) and state["conv3.weight_v"].shape == (4096,)
    # 3*64*9+64 + 64*128*16 + 128*256*16 + 256*512*16 + 512*256*9 + 256*128*9 + 128*64*9
    # + 2*64*64*9 + 64*9+1 (Real-ESRGAN's x4plus discriminator)
    assert sum(p.numel() for p in model.parameters()) == 4_376_897


def test_spectral_norm_holds_the_largest_singular_value_at_one():
    model = disc("UNetDiscriminatorSN", num_in_ch=3, num_feat=4).train()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        for _ in range(50):  # power iterations, one per training forward
            model(x)
    for i in range(1, 9):
        weight = getattr(model, f"conv{i}").weight.detach().flatten(1)
        assert float(torch.linalg.matrix_norm(weight, ord=2)) == pytest.approx(1.0, abs=1e-2), i
    plain = float(torch.linalg.matrix_norm(model.conv9.weight.detach().flatten(1), ord=2))
    assert plain != pytest.approx(1.0, abs=1e-2)  # the last conv is not normalised


def test_unet_sn_skips_and_size_multiple():
    with_skips = disc("UNetDiscriminatorSN", num_in_ch=3, num_feat=4)
    without = disc("UNetDiscriminatorSN", num_in_ch=3, num_feat=4, skip_connection=False)
    x = torch.rand(1, 3, 24, 16)
    with torch.no_grad():
        assert not torch.allclose(with_skips.eval()(x), without.eval()(x))
    with pytest.raises(LLCVError, match="multiples of 8, got \\(20, 16\\)"):
        with_skips(torch.rand(1, 3, 20, 16))
    with pytest.raises(ArgumentError, match="skip_connection"):
        disc("UNetDiscriminatorSN", skip_connection="yes")
