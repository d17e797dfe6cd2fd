"""PerceptualLoss: torchvision-layout weights from a file, layer selection, gradients, refusal."""
import pytest
import torch
import torch.nn.functional as F

from llcv.errors import OptionError
from llcv.registry import LOSSES, build

# torchvision VGG19 'features' indices of the convs and their (in, out) channels.
CONVS = {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256), 12: (256, 256),
         14: (256, 256), 16: (256, 256), 19: (256, 512), 21: (512, 512), 23: (512, 512),
         25: (512, 512), 28: (512, 512), 30: (512, 512), 32: (512, 512), 34: (512, 512)}
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """A random VGG19 state_dict in torchvision's layout (with a classifier key to be ignored)."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for idx, (cin, cout) in CONVS.items():
        state[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=gen) * 0.05
        state[f"features.{idx}.bias"] = torch.randn(cout, generator=gen) * 0.05
    state["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path_factory.mktemp("vgg") / "vgg19.pth"
    torch.save(state, path)
    return str(path), state


def make(path, **options):
    return build(LOSSES, {"type": "PerceptualLoss", "vgg_weights_path": path, **options},
                 "train.perceptual_opt")


def reference_features(x, state):
    """conv1_1, relu1_1, conv2_1 by hand with F.conv2d on ImageNet-normalised input."""
    x = (x - MEAN) / STD
    conv1_1 = F.conv2d(x, state["features.0.weight"], state["features.0.bias"], padding=1)
    relu1_2 = F.relu(F.conv2d(F.relu(conv1_1), state["features.2.weight"],
                              state["features.2.bias"], padding=1))
    conv2_1 = F.conv2d(F.max_pool2d(relu1_2, 2), state["features.5.weight"],
                       state["features.5.bias"], padding=1)
    return {"conv1_1": conv1_1, "relu1_1": F.relu(conv1_1), "conv2_1": conv2_1}


def test_selected_layers_match_hand_computed_features(vgg_file):
    path, state = vgg_file
    loss = make(path, layer_weights={"relu1_1": 0.3, "conv2_1": 2.0})
    assert len(loss.features) == 6  # built up to conv2_1 only
    pred, target = torch.rand(2, 3, 12, 10), torch.rand(2, 3, 12, 10)
    rp, rt = reference_features(pred, state), reference_features(target, state)
    expected = 0.3 * F.l1_loss(rp["relu1_1"], rt["relu1_1"]) \
        + 2.0 * F.l1_loss(rp["conv2_1"], rt["conv2_1"])
    torch.testing.assert_close(loss(pred, target), expected)


def test_style_term_and_l2_criterion(vgg_file):
    path, state = vgg_file
    loss = make(path, layer_weights={"conv1_1": 1.0}, perceptual_weight=0.5, style_weight=10.0,
                criterion="l2")
    pred, target = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    p, t = reference_features(pred, state)["conv1_1"], reference_features(target, state)["conv1_1"]

    def gram(f):
        f = f.reshape(64, -1)
        return f @ f.T / f.numel()
    expected = 0.5 * F.mse_loss(p, t) + 10.0 * F.mse_loss(gram(p[0]), gram(t[0]))
    torch.testing.assert_close(loss(pred, target), expected)


def test_gradient_reaches_pred_only(vgg_file):
    loss = make(vgg_file[0], layer_weights={"relu2_2": 1.0})
    pred = torch.rand(1, 3, 8, 8, requires_grad=True)
    target = torch.rand(1, 3, 8, 8, requires_grad=True)
    loss(pred, target).backward()
    assert pred.grad.abs().sum() > 0
    assert target.grad is None
    assert all(not p.requires_grad for p in loss.parameters())


def test_refuses_without_weights():
    with pytest.raises(OptionError, match=r"vgg_weights_path: .*needs pretrained VGG19 weights"):
        build(LOSSES, {"type": "PerceptualLoss"}, "train.perceptual_opt")


def test_refuses_missing_file_and_wrong_layout(tmp_path, vgg_file):
    with pytest.raises(OptionError, match=r"vgg_weights_path: file .* does not exist"):
        make(str(tmp_path / "nope.pth"))
    partial = {k: v for k, v in vgg_file[1].items() if not k.startswith("features.34.")}
    torch.save(partial, tmp_path / "partial.pth")
    make(str(tmp_path / "partial.pth"), layer_weights={"conv5_3": 1.0})  # conv5_4 not needed
    with pytest.raises(OptionError, match=r"no VGG19 tensor 'features\.34\.weight'"):
        make(str(tmp_path / "partial.pth"), layer_weights={"relu5_4": 1.0})


def test_unknown_layer_name_lists_valid_ones(vgg_file):
    with pytest.raises(OptionError, match=r"layer_weights: unknown VGG19 layer 'conv6_1'.*conv5_4"):
        make(vgg_file[0], layer_weights={"conv6_1": 1.0})
