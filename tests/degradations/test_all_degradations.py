"""Contract of every registered degradation, built from its defaults: seeds, dtype, range, labels."""
import json

import numpy as np
import pytest
import skimage.data

from llcv.degradations.base import Degradation
from llcv.registry import DEGRADATIONS, build, registered_names

NAMES = registered_names(DEGRADATIONS)
RESIZING = {"Resize", "RealWorldChain", "BicubicDownsample"}
DETERMINISTIC = {"Identity", "BicubicDownsample"}
REQUIRED = {   # combinators need children; everything else builds from its defaults
    "Compose": {"degradations": [{"type": "GaussianBlur"}, {"type": "GaussianNoise"}]},
    "RandomChoice": {"degradations": [{"type": "MotionBlur"}, {"type": "PoissonNoise"}]},
    "RandomApply": {"degradation": {"type": "JPEGCompression"}, "prob": 0.7},
}


def photo():
    return (skimage.data.astronaut()[96:144, 176:224] / 255.0).astype(np.float32)


def make(name):
    return build(DEGRADATIONS, {"type": name, **REQUIRED.get(name, {})}, f"degradations.{name}")


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output_other_seed_other_output(name):
    img, deg = photo(), make(name)
    a = deg(img, np.random.default_rng(123))
    b = make(name)(img, np.random.default_rng(123))
    assert np.array_equal(a, b)
    if name not in DETERMINISTIC:
        others = [deg(img, np.random.default_rng(s)) for s in (1, 2, 3)]
        assert any(o.shape != a.shape or not np.array_equal(o, a) for o in others)


@pytest.mark.parametrize("name", NAMES)
def test_keeps_dtype_range_and_size_and_leaves_input_alone(name):
    img = photo()
    before = img.copy()
    for seed in range(3):
        out = make(name)(img, np.random.default_rng(seed))
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.ndim == 3
        assert out.min() >= 0 and out.max() <= 1
        if name not in RESIZING:
            assert out.shape == img.shape
    assert np.array_equal(img, before)


@pytest.mark.parametrize("name", NAMES)
def test_sample_params_are_reproducible_plain_labels(name):
    deg = make(name)
    a, b = deg.sample_params(np.random.default_rng(7)), deg.sample_params(np.random.default_rng(7))
    assert a == b and json.loads(json.dumps(a)) == a
    if isinstance(deg, Degradation):
        _, used = deg.degrade(photo(), np.random.default_rng(7))
        assert used == a


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32), [[0.5]]])
def test_wrong_image_type_is_a_data_error_naming_img(bad):
    from llcv.errors import DataError

    with pytest.raises(DataError, match="^img: "):
        make("GaussianNoise")(bad, np.random.default_rng(0))
