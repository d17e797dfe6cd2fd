"""Compose, RandomChoice, RandomApply and the real-world chain: order, choices, labels, sizes."""
import json

import numpy as np
import pytest
import skimage.data

from llcv.degradations.pipeline_degradation import Compose, RandomApply, RandomChoice, RealWorldChain
from llcv.errors import OptionError
from llcv.registry import DEGRADATIONS, build


def photo(h=64, w=64):
    return (skimage.data.astronaut()[96:96 + h, 176:176 + w] / 255.0).astype(np.float32)


def test_compose_applies_in_order_and_records_each_step():
    img = photo()
    deg = Compose([{"type": "Resize", "scale": 0.5, "modes": ["area"]},
                   {"type": "GaussianNoise", "sigma": 10.0, "clip": False}])
    out, params = deg.degrade(img, np.random.default_rng(0))
    assert out.shape == (32, 32, 3)
    assert [s["type"] for s in params["steps"]] == ["Resize", "GaussianNoise"]
    clean = img.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))      # area halving, then noise
    assert abs((out - clean).std() * 255 / 10.0 - 1) < 0.05


def test_random_choice_follows_probs_and_reveals_its_choice():
    deg = RandomChoice([{"type": "GaussianBlur", "sigma": 2.0}, {"type": "JPEGCompression", "quality": 20}],
                       probs=[0.8, 0.2])
    rng = np.random.default_rng(1)
    params = [deg.sample_params(rng) for _ in range(2000)]
    assert abs(np.mean([p["choice"] == 0 for p in params]) - 0.8) < 0.03
    assert {p["type"] for p in params} == {"GaussianBlur", "JPEGCompression"}
    img = photo()
    out, p = deg.degrade(img, np.random.default_rng(2))
    branch = deg.degradations[p["choice"]]
    assert np.array_equal(out, branch.apply(img, p["params"], np.random.default_rng(99)))


def test_random_apply_probability_and_identity_when_skipped():
    img = photo()
    never = RandomApply({"type": "GaussianNoise", "sigma": 30.0}, prob=0.0)
    always = RandomApply({"type": "GaussianNoise", "sigma": 30.0}, prob=1.0)
    out, params = never.degrade(img, np.random.default_rng(3))
    assert np.array_equal(out, img) and params == {"applied": False, "params": {}}
    out, params = always.degrade(img, np.random.default_rng(3))
    assert params["applied"] and params["params"]["sigma"] == 30.0 and not np.array_equal(out, img)
    rng = np.random.default_rng(4)
    some = RandomApply({"type": "Identity"}, prob=0.3)
    assert abs(np.mean([some.sample_params(rng)["applied"] for _ in range(2000)]) - 0.3) < 0.03


@pytest.mark.parametrize("scale, shape, size",
                         [(4, (64, 64), (16, 16)), (2, (64, 48), (32, 24)), (1, (40, 40), (40, 40))])
def test_real_world_chain_returns_input_size_over_scale(scale, shape, size):
    img = photo(*shape)
    deg = build(DEGRADATIONS, {"type": "RealWorldChain", "scale": scale}, "deg")
    for seed in range(5):
        out, params = deg.degrade(img, np.random.default_rng(seed))
        assert out.shape == (*size, 3) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 1
        json.dumps(params)                               # labels are plain values


def test_real_world_chain_labels_describe_both_stages():
    deg = RealWorldChain()
    params = deg.sample_params(np.random.default_rng(5))
    for stage in ("first", "second"):
        kinds = [s["type"] for s in params[stage]["steps"]]
        assert kinds == ["RandomApply", "RandomChoice", "RandomChoice", "JPEGCompression"]
        noise = params[stage]["steps"][2]["params"]
        assert noise["type"] in ("GaussianNoise", "PoissonNoise") and "gray" in noise["params"]
    assert params["final_mode"] in ("bicubic", "bilinear", "area") and 30 <= params["final_quality"] <= 95


def test_real_world_chain_stages_can_be_replaced():
    img = photo()
    deg = RealWorldChain(scale=2, first={"type": "Identity"}, second={"type": "Identity"},
                         final_modes=["area"], final_quality=100)
    out = deg(img, np.random.default_rng(6))
    ref = img.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    assert np.abs(out - ref).mean() < 2.5 / 255        # only 8-bit JPEG at quality 100 left


def test_real_world_chain_degrades_strongly_on_average():
    img = photo()
    deg = RealWorldChain(scale=1)
    errors = [np.abs(deg(img, np.random.default_rng(s)) - img).mean() for s in range(8)]
    assert np.mean(errors) > 0.02 and len(set(errors)) == 8


class Recorder:
    """A degradation with only ``sample_params`` and ``__call__`` (like third-party ones)."""

    def sample_params(self, rng):
        return {"offset": float(rng.uniform(0.0, 0.1))}

    def __call__(self, img, rng):
        return img + np.float32(self.sample_params(rng)["offset"])


def test_callable_children_are_replayed_with_their_recorded_params():
    img = photo()
    out, params = Compose([Recorder()]).degrade(img, np.random.default_rng(7))
    offset = params["steps"][0]["params"]["offset"]
    assert params["steps"][0]["type"] == "Recorder"
    assert np.allclose(out - img, offset, atol=1e-6)


@pytest.mark.parametrize("cfg, message", [
    ({"type": "Compose", "degradations": []}, "^deg.degradations: "),
    ({"type": "Compose", "degradations": [{"type": "Resize"}, {"type": "Blur"}]}, "degradations.1.type: "),
    ({"type": "Compose", "degradations": [{"type": "Resize", "scale": -1}]}, "degradations.0.scale: "),
    ({"type": "RandomChoice", "degradations": [{"type": "Identity"}], "probs": [0.5, 0.5]}, "^deg.probs: "),
    ({"type": "RandomApply", "degradation": {"type": "Identity"}, "prob": 1.5}, "^deg.prob: "),
    ({"type": "RandomApply", "degradation": 3}, "^deg.degradation: "),
    ({"type": "RealWorldChain", "scale": 0.5}, "^deg.scale: "),
    ({"type": "RealWorldChain", "scale": [2, 4]}, "^deg.scale: "),
    ({"type": "RealWorldChain", "final_modes": ["cubic"]}, "^deg.final_modes: "),
])
def test_bad_options_name_the_key(cfg, message):
    with pytest.raises(OptionError, match=message):
        build(DEGRADATIONS, cfg, "deg")
