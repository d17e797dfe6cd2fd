"""AllInOneDataset: labelled tasks, balanced deterministic validation, per-task sets that
average to the all-task set, and one-line option errors."""
import json
import os

import pytest
import torch

from llcv.data.allinone_dataset import ALL_IN_ONE_TASKS
from llcv.data.sampler import SampleKey
from llcv.errors import OptionError
from llcv.registry import DATASETS, build

IMAGES = ["astronaut", "coffee"]
CLASSES = {"haze": "Haze", "rain": "RainStreaks", "noise": "RandomChoice", "blur": "MotionBlur",
           "lowlight": "LowLight"}


def dataset(phase="val", **kwargs):
    cfg = {"type": "AllInOneDataset", "builtin_images": IMAGES,
           **({"crop_val": 32} if phase == "val" else {"gt_size": 32}), **kwargs}
    return build(DATASETS, cfg, f"datasets.{phase}", phase=phase)


def test_validation_holds_every_image_under_every_task_task_major():
    ds = dataset()
    assert ds.tasks == list(ALL_IN_ONE_TASKS) == ["haze", "rain", "noise", "blur", "lowlight"]
    assert len(ds) == 2 * 5
    for i in range(len(ds)):
        s = ds[i]
        task = ds.tasks[i // 2]
        assert s["label"] == i // 2 and s["task"] == task
        assert s["lq_path"] == f"skimage:{IMAGES[i % 2]}_{task}"
        assert s["gt_path"] == f"skimage:{IMAGES[i % 2]}"
        assert json.loads(s["degradation"])["type"] == CLASSES[task]
        assert s["lq"].shape == s["gt"].shape == (3, 32, 32)
        assert not torch.equal(s["lq"], s["gt"])  # every task degrades
    assert torch.equal(dataset()[7]["lq"], ds[7]["lq"])  # fixed per index in every run


def test_a_single_task_set_gives_the_same_samples_as_the_all_task_set():
    full = dataset()
    for task, name in enumerate(full.tasks):
        alone = dataset(tasks=[name])
        assert len(alone) == 2
        for image in range(2):
            a, b = alone[image], full[task * 2 + image]
            assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
            assert a["label"] == 0 and a["task"] == name  # labels are positions in ``tasks``


def test_training_draws_the_task_from_the_key_and_labels_it():
    ds = dataset("train", use_hflip=True)
    assert len(ds) == 2
    first, again = ds[SampleKey(1, 5)], ds[SampleKey(1, 5)]
    assert torch.equal(first["lq"], again["lq"]) and first["label"] == again["label"]
    labels = [ds[SampleKey(i % 2, i)]["label"] for i in range(100)]
    assert set(labels) == set(range(5))
    for i in range(10):
        s = ds[SampleKey(0, i)]
        drawn = json.loads(s["degradation"])
        assert drawn["choice"] == s["label"] and ds.tasks[s["label"]] == s["task"]
        assert drawn["type"] == CLASSES[s["task"]]
    only_rain = dataset("train", probs=[0, 1, 0, 0, 0])
    assert {only_rain[SampleKey(0, i)]["label"] for i in range(20)} == {1}


def test_noise_task_uses_the_three_benchmark_sigmas():
    ds = dataset("train")
    sigmas = set()
    for i in range(200):
        params = json.loads(ds[SampleKey(0, i)]["degradation"])
        if params["type"] == "RandomChoice":  # the noise branch: one of three fixed sigmas
            sigmas.add(params["params"]["params"]["sigma"])
    assert sigmas == {15.0, 25.0, 50.0}


def test_task_opts_replace_or_add_a_task():
    ds = dataset(tasks=["noise", "jpeg"], task_opts={
        "noise": {"type": "GaussianNoise", "sigma": 25},
        "jpeg": {"type": "JPEGCompression", "quality": [10, 20]}})
    assert len(ds) == 4 and [ds[i]["task"] for i in range(4)] == ["noise", "noise", "jpeg", "jpeg"]
    noise = ds[0]["lq"] - ds[0]["gt"]
    assert noise.std().item() == pytest.approx(25 / 255, rel=0.15)


@pytest.mark.parametrize("kwargs, message", [
    ({"tasks": ["haze", "smog"]}, r"^datasets\.val\.tasks\.1: unknown task 'smog'; built in: haze"),
    ({"tasks": ["rain", "rain"]}, r"^datasets\.val\.tasks\.1: 'rain' is listed twice"),
    ({"tasks": "haze"}, r"^datasets\.val\.tasks: expected a non-empty list"),
    ({"task_opts": {"fog": {"type": "Haze"}}}, r"^datasets\.val\.task_opts\.fog: not one of tasks"),
    ({"tasks": ["haze"], "task_opts": {"haze": {"type": "Haze", "beta": -1}}},
     r"^datasets\.val\.task_opts\.haze\.beta: expected"),
    ({"probs": [1, 2]}, r"^datasets\.val\.probs: expected 5 non-negative weights"),
])
def test_bad_options_name_the_key(kwargs, message):
    with pytest.raises(OptionError, match=message):
        dataset(**kwargs)


def test_demo_option_file_validates_every_set_as_the_paper_table():
    from conftest import ROOT
    from llcv.options import load_options

    opt = load_options(f"{ROOT}/options/train_allinone_demo.yml")
    sets = {k: v for k, v in opt["datasets"].items() if k != "train"}
    assert [v["tasks"] for v in sets.values()] == [[t] for t in ALL_IN_ONE_TASKS] + \
        [list(ALL_IN_ONE_TASKS)]
    train = opt["datasets"]["train"]["builtin_images"]
    assert not set(sets["val"]["builtin_images"]) & set(train)  # held-out photos


def test_a_folder_of_clean_images_names_each_degraded_copy(photo_pairs):
    gt_dir, _ = photo_pairs
    ds = build(DATASETS, {"type": "AllInOneDataset", "dataroot_gt": str(gt_dir),
                          "tasks": ["rain", "blur"]}, "datasets.val", phase="val")
    assert len(ds) == 6
    assert [os.path.basename(ds[i]["lq_path"]) for i in (0, 5)] == ["astro_rain.png",
                                                                     "rocket_blur.png"]
    assert ds[5]["gt_path"] == str(gt_dir / "rocket.png") and ds[5]["gt"].shape == (3, 40, 48)


def test_the_log_and_the_test_tool_report_every_degradation_and_their_average(tmp_path, capsys):
    from conftest import load_tool, tiny_options
    from llcv.engine.runner import Runner
    from llcv.options import validate_options

    opt = tiny_options(tmp_path, total_iter=1)
    opt["datasets"] = {"train": {"type": "AllInOneDataset", "builtin_images": IMAGES,
                                 "gt_size": 32, "batch_size_per_gpu": 2, "num_worker_per_gpu": 0}}
    one = {"type": "AllInOneDataset", "builtin_images": ["chelsea", "camera"], "crop_val": 16}
    for task in ALL_IN_ONE_TASKS:
        opt["datasets"][f"val_{task}"] = {**one, "name": task, "tasks": [task]}
    opt["datasets"]["val"] = {**one, "name": "average"}
    opt["val"]["val_freq"] = 1
    opt["logger"]["use_tb_logger"] = False
    runner = Runner(validate_options(opt))
    runner.train()
    with open(os.path.join(runner.exp_dir, "metrics.jsonl")) as f:
        logged = next(r for r in map(json.loads, f) if "val/psnr" in r)
    for metric in ("psnr", "ssim"):
        per_task = [logged[f"val_{task}/{metric}"] for task in ALL_IN_ONE_TASKS]
        assert len(set(per_task)) == 5  # the tasks differ ...
        assert logged[f"val/{metric}"] == pytest.approx(sum(per_task) / 5, abs=1e-9)  # ... mean
    result = load_tool("test").main(["-opt", os.path.join(runner.exp_dir, "options.yml"),
                                     "--results-root", str(tmp_path / "results"),
                                     "--no-progress", "--runs", "1", "--warmup", "0"])
    assert list(result["datasets"]) == [*ALL_IN_ONE_TASKS, "average"]
    for name, phase in [(t, f"val_{t}") for t in ALL_IN_ONE_TASKS] + [("average", "val")]:
        figures = result["datasets"][name]["metrics"]
        assert figures["psnr"] == pytest.approx(logged[f"{phase}/psnr"], abs=1e-6)
        assert figures["ssim"] == pytest.approx(logged[f"{phase}/ssim"], abs=1e-6)
    table = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in table if line.split() and line.split()[0] in
            result["datasets"]] == [*ALL_IN_ONE_TASKS, "average"]
