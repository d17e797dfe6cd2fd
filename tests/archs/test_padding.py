"""pad_to_multiple's modes against numpy's np.pad, and every padding arch's padding_mode option."""
import numpy as np
import pytest
import torch

from llcv.archs.layers import pad_to_multiple
from llcv.errors import OptionError
from llcv.registry import ARCHS, build

NUMPY_MODE = {"zeros": "constant", "replicate": "edge", "reflect": "reflect"}


def numpy_pad(x: torch.Tensor, multiple: int, mode: str) -> torch.Tensor:
    """Bottom/right padding to a multiple, done by numpy (reflect repeats for long pads)."""
    h, w = x.shape[-2:]
    pads = ((0, 0), (0, 0), (0, -h % multiple), (0, -w % multiple))
    return torch.from_numpy(np.pad(x.numpy(), pads, mode=NUMPY_MODE[mode]))


@pytest.mark.parametrize("mode", sorted(NUMPY_MODE))
@pytest.mark.parametrize("h, w, multiple", [(5, 7, 4), (3, 2, 8), (1, 6, 8), (1, 1, 4), (8, 4, 4),
                                            (2, 9, 16)])
def test_pad_to_multiple_matches_numpy(mode, h, w, multiple):
    # Pads longer than the side (numpy reflects back and forth) and 1-pixel sides (numpy
    # repeats the pixel) included: torch's own reflect refuses both.
    x = torch.rand(2, 3, h, w, dtype=torch.float64)
    torch.testing.assert_close(pad_to_multiple(x, multiple, mode), numpy_pad(x, multiple, mode),
                               rtol=0, atol=0)


PADDING_ARCHS = {  # name -> (tiny options, default mode)
    "UNet": ({"widths": [4, 8, 16], "blocks": [1, 1, 1]}, "replicate"),
    "NAFNet": ({"width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1],
                "dec_blk_nums": [1, 1]}, "replicate"),
    "Restormer": ({"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1,
                   "heads": [1, 2, 2, 4]}, "replicate"),
    "NAFNetLocal": ({"width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1],
                     "dec_blk_nums": [1, 1], "train_size": [1, 3, 8, 8]}, "zeros"),
    "RRDBNet": ({"num_feat": 8, "num_block": 1, "num_grow_ch": 4, "scale": 1}, "reflect"),
    "SwinIR": ({"img_size": 8, "embed_dim": 8, "depths": [2], "num_heads": [2], "window_size": 4,
                "mlp_ratio": 2, "upsampler": "pixelshuffledirect", "upscale": 2}, "reflect"),
}


def make(name: str, **overrides):
    torch.manual_seed(0)
    return build(ARCHS, {"type": name, **PADDING_ARCHS[name][0], **overrides}, "network_g").eval()


@pytest.mark.parametrize("name", sorted(PADDING_ARCHS))
@pytest.mark.parametrize("mode", [None, "zeros", "replicate", "reflect"])
def test_output_at_odd_size_is_the_padded_input_output_cropped(name, mode):
    model = make(name, **({} if mode is None else {"padding_mode": mode}))
    used = PADDING_ARCHS[name][1] if mode is None else mode
    assert model.padding_mode == used
    x = torch.rand(1, 3, 13, 10)
    scale = getattr(model, "upscale", 1)
    with torch.no_grad():
        padded = model(numpy_pad(x, model.size_multiple, used))
        torch.testing.assert_close(model(x), padded[..., :13 * scale, :10 * scale])


def test_nafnet_zeros_padding_differs_from_the_replicate_default():
    x = torch.rand(1, 3, 13, 10)
    default, zeros = make("NAFNet"), make("NAFNet", padding_mode="zeros")
    with torch.no_grad():
        for p in default.parameters():  # zero-initialised scales hide the padding's effect
            p.add_(torch.randn_like(p) * 0.1)
        zeros.load_state_dict(default.state_dict())
        assert (default(x) - zeros(x)).abs().max() > 1e-4


@pytest.mark.parametrize("name", sorted(PADDING_ARCHS))
def test_unknown_padding_mode_names_the_option(name):
    with pytest.raises(OptionError, match=r"^network_g\.padding_mode: unknown padding mode "
                                          r"'circular'; allowed: replicate, zeros, reflect"):
        make(name, padding_mode="circular")
