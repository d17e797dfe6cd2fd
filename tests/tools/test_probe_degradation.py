"""tools/probe_degradation.py and its classifiers: kNN and linear probe on separable and random
data, stratified folds, random-init features above chance, one-line errors."""
import json

import numpy as np
import pytest
import torch

from conftest import load_tool
from llcv.analysis.degradation_probe import (cross_validate, knn_predict, stratified_folds,
                                             standardise)
from llcv.cli import run_cli

probe = load_tool("probe_degradation")
UNET = "{type: UNet, widths: [8, 16], blocks: [1, 1]}"


def clusters(n_per_class=20, classes=4, spread=0.1, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 6)) * 3
    labels = np.repeat(np.arange(classes), n_per_class)
    return centres[labels] + spread * rng.normal(size=(len(labels), 6)), labels


def test_folds_partition_the_set_and_spread_every_class():
    labels = np.repeat([0, 1, 2], [10, 7, 5])
    folds = stratified_folds(labels, 5, seed=1)
    assert sorted(np.concatenate(folds).tolist()) == list(range(22))
    for fold in folds:
        counts = np.bincount(labels[fold], minlength=3)
        assert all(abs(c - n / 5) < 1 for c, n in zip(counts, [10, 7, 5]))


@pytest.mark.parametrize("method", ["knn", "linear"])
def test_separable_classes_are_found_and_random_labels_are_not(method):
    x, y = clusters()
    assert cross_validate(x, y, method) == [1.0] * 5
    shuffled = np.random.default_rng(3).permutation(y)
    assert np.mean(cross_validate(x, shuffled, method)) < 0.5  # chance is 0.25


def test_knn_votes_and_breaks_ties_by_the_nearest():
    train = torch.tensor([[0.0], [1.0], [2.0], [10.0]], dtype=torch.float64)
    labels = np.array([0, 1, 1, 2])
    assert knn_predict(train, labels, torch.tensor([[0.1], [9.0]], dtype=torch.float64),
                       k=3).tolist() == [1, 1]
    assert knn_predict(train, labels, torch.tensor([[0.4]], dtype=torch.float64),
                       k=2).tolist() == [0]  # 1-1 tie: the nearest neighbour's class
    a, b = standardise(np.array([[1.0, 5.0], [3.0, 5.0]]), np.array([[2.0, 6.0]]))
    assert a.tolist() == [[-1.0, 0.0], [1.0, 0.0]] and b.tolist() == [[0.0, 1.0]]


def test_random_init_features_beat_chance_and_json_has_every_fold(tmp_path, capsys):
    out = tmp_path / "probe.json"
    result = probe.main(["--network", UNET, "--samples", "100", "--crop", "32", "--no-progress",
                         "--builtin-images", "astronaut", "coffee", "chelsea", "--json", str(out)])
    text = capsys.readouterr().out
    assert "chance 20.0%" in text and "UNet (random init)" in text and "LQ pixels" in text
    names = [r["name"] for r in result["rows"]]
    assert names == ["LQ pixels (no network)", "UNet (random init)"]
    unet = result["rows"][1]
    assert unet["layers"] == ["bottleneck"] and unet["dims"] == 32 and len(unet["folds"]) == 5
    assert unet["mean"] > result["chance"] + 0.15
    assert json.loads(out.read_text())["rows"][1]["folds"] == unet["folds"]


def test_checkpoints_are_probed_with_their_own_network(tmp_path, capsys):
    from llcv.network import build_network, network_spec
    from llcv.serialization import atomic_save

    spec = network_spec({"type": "UNet", "widths": [4, 8], "blocks": [1, 1]})
    path = tmp_path / "net_g_1.pth"
    atomic_save({"params": build_network(spec).state_dict(), "network": spec}, str(path))
    result = probe.main(["--checkpoint", str(path), "--samples", "20", "--crop", "16", "--folds",
                         "2", "--method", "linear", "--feature-layers", "encoders.*",
                         "--no-progress", "--builtin-images", "astronaut"])
    assert result["rows"][1]["layers"] == ["encoders.0"] and result["method"] == "linear"
    assert 0.0 <= result["rows"][1]["mean"] <= 1.0


@pytest.mark.parametrize("argv, message", [
    ([], "error: -opt: give an option file, --network or --checkpoint"),
    (["--network", UNET, "--network", "{type: UNt}"],
     "error: --network[1].type: unknown arch type 'UNt'; did you mean UNet?"),
    (["--network", "{type: UNet, width: 3}"], "error: --network[0].width: unknown option for UNet"),
    (["--network", "[1, 2]"], "error: --network[0]: expected a mapping with a 'type' key"),
    (["--network", UNET, "--samples", "0"], "error: --samples: must be a positive integer"),
    (["--network", UNET, "--samples", "4", "--folds", "9", "--builtin-images", "coffee"],
     "error: --folds: need 2 <= folds <= 4 samples"),
    (["--network", UNET, "--feature-layers", "botleneck", "--samples", "4", "--folds", "2",
      "--builtin-images", "coffee"], "error: --feature-layers[0]: no module 'botleneck' in UNet"),
])
def test_bad_arguments_fail_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: probe.main(["--no-progress", *argv]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().startswith(message)

