"""Option files shaped like the field's published ones (NAFNet's SIDD width32, Restormer's real
denoising, BasicSR's EDSR / SwinIR / MSRResNet SR files: their keys and value styles) run one
training iteration with only the data paths changed; foreign keys are translated or named."""
import copy
import os

import cv2
import numpy as np
import pytest
import torch
import yaml
from skimage import data as skdata

from llcv.data.lmdb_io import folder_to_lmdb
from llcv.degradations.bicubic_degradation import imresize
from llcv.engine.runner import Runner
from llcv.errors import OptionError
from llcv.options import load_options, validate_options

LOGGER = {"print_freq": 200, "save_checkpoint_freq": 5e3, "use_tb_logger": True,
          "wandb": {"project": None, "resume_id": None}}
DIST = {"backend": "nccl", "port": 29500}
METRIC = {"type": "calculate_psnr", "crop_border": 0, "test_y_channel": False}

NAFNET_SIDD = {  # megvii-research/NAFNet options/train/SIDD/NAFNet-width32.yml
    "name": "NAFNet-SIDD-width32", "model_type": "ImageRestorationModel", "scale": 1,
    "num_gpu": 8, "manual_seed": 10,
    "datasets": {
        "train": {"name": "SIDD", "type": "PairedImageDataset", "dataroot_gt": "GT_LMDB",
                  "dataroot_lq": "LQ_LMDB", "filename_tmpl": "{}", "io_backend": {"type": "lmdb"},
                  "gt_size": 256, "use_flip": False, "use_rot": False, "use_shuffle": True,
                  "num_worker_per_gpu": 4, "batch_size_per_gpu": 4, "dataset_enlarge_ratio": 1,
                  "prefetch_mode": None},
        "val": {"name": "SIDD_val", "type": "PairedImageDataset", "dataroot_gt": "VAL_GT_LMDB",
                "dataroot_lq": "VAL_LQ_LMDB", "io_backend": {"type": "lmdb"}}},
    "network_g": {"type": "NAFNet", "width": 32, "enc_blk_nums": [2, 2, 4, 8],
                  "middle_blk_num": 12, "dec_blk_nums": [2, 2, 2, 2]},
    "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
    "train": {"optim_g": {"type": "AdamW", "lr": 1e-3, "weight_decay": 0.0, "betas": [0.9, 0.9]},
              "scheduler": {"type": "TrueCosineAnnealingLR", "T_max": 200000, "eta_min": 1e-7},
              "total_iter": 200000, "warmup_iter": -1,
              "pixel_opt": {"type": "PSNRLoss", "loss_weight": 1, "reduction": "mean"}},
    "val": {"val_freq": 2e4, "save_img": False, "use_image": False,
            "metrics": {"psnr": METRIC, "ssim": {**METRIC, "type": "calculate_ssim"}}},
    "logger": LOGGER, "dist_params": DIST,
}

RESTORMER_REAL = {  # swz30/Restormer Denoising/Options/RealDenoising_Restormer.yml
    "name": "RealDenoising_Restormer", "model_type": "ImageCleanModel", "scale": 1,
    "num_gpu": 8, "manual_seed": 100,
    "datasets": {
        "train": {"name": "TrainSet", "type": "Dataset_PairedImage", "dataroot_gt": "GT_DIR",
                  "dataroot_lq": "LQ_DIR", "geometric_augs": True, "filename_tmpl": "{}",
                  "io_backend": {"type": "disk"}, "use_shuffle": True, "num_worker_per_gpu": 8,
                  "batch_size_per_gpu": 8, "mini_batch_sizes": [8, 5, 4, 2, 1, 1],
                  "iters": [92000, 64000, 48000, 36000, 36000, 24000], "gt_size": 384,
                  "gt_sizes": [128, 160, 192, 256, 320, 384], "dataset_enlarge_ratio": 1,
                  "prefetch_mode": None},
        "val": {"name": "ValSet", "type": "Dataset_PairedImage", "dataroot_gt": "VAL_GT_DIR",
                "dataroot_lq": "VAL_LQ_DIR", "io_backend": {"type": "disk"}}},
    "network_g": {"type": "Restormer", "inp_channels": 3, "out_channels": 3, "dim": 48,
                  "num_blocks": [4, 6, 6, 8], "num_refinement_blocks": 4, "heads": [1, 2, 4, 8],
                  "ffn_expansion_factor": 2.66, "bias": False, "LayerNorm_type": "BiasFree",
                  "dual_pixel_task": False},
    "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
    "train": {"total_iter": 300000, "warmup_iter": -1, "use_grad_clip": True,
              "scheduler": {"type": "CosineAnnealingRestartCyclicLR", "periods": [92000, 208000],
                            "restart_weights": [1, 1], "eta_mins": [0.0003, 0.000001]},
              "mixing_augs": {"mixup": True, "mixup_beta": 1.2, "use_identity": True},
              "optim_g": {"type": "AdamW", "lr": 3e-4, "weight_decay": 1e-4,
                          "betas": [0.9, 0.999]},
              "pixel_opt": {"type": "L1Loss", "loss_weight": 1, "reduction": "mean"}},
    "val": {"window_size": 8, "val_freq": 4e3, "save_img": False, "rgb2bgr": True,
            "use_image": False, "max_minibatch": 8, "metrics": {"psnr": METRIC}},
    "logger": {**LOGGER, "print_freq": 1000, "save_checkpoint_freq": 4e3}, "dist_params": DIST,
}


def basicsr_sr(name, network, scale, gt_size, batch, scheduler, ema=None, meta_info=False,
               old_path_keys=False):
    """BasicSR's SR train files (EDSR, SwinIR, MSRResNet): same skeleton, these differences."""
    train_set = {"name": "DIV2K", "type": "PairedImageDataset", "dataroot_gt": "GT_DIR",
                 "dataroot_lq": "LQ_DIR", "filename_tmpl": "{}", "io_backend": {"type": "disk"},
                 "gt_size": gt_size, "use_flip": True, "use_rot": True, "use_shuffle": True,
                 "num_worker_per_gpu": 6, "batch_size_per_gpu": batch,
                 "dataset_enlarge_ratio": 100, "prefetch_mode": None}
    if meta_info:
        train_set["meta_info_file"] = "META_INFO"
    path = ({"pretrain_model_g": None, "strict_load": True, "resume_state": None}
            if old_path_keys else
            {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None})
    train = {"optim_g": {"type": "Adam", "lr": 2e-4, "weight_decay": 0, "betas": [0.9, 0.99]},
             "scheduler": scheduler, "total_iter": 500000, "warmup_iter": -1,
             "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}}
    if ema:
        train["ema_decay"] = ema
    return {"name": name, "model_type": "SwinIRModel" if ema else "SRModel", "scale": scale,
            "num_gpu": "auto" if ema else 1, "manual_seed": 0,
            "datasets": {"train": train_set, "val": {
                "name": "Set5", "type": "PairedImageDataset", "dataroot_gt": "VAL_GT_DIR",
                "dataroot_lq": "VAL_LQ_DIR", "io_backend": {"type": "disk"}}},
            "network_g": network, "path": path, "train": train,
            "val": {"val_freq": 5e3, "save_img": False,
                    "metrics": {"psnr": {**METRIC, "crop_border": scale}}},
            "logger": {**LOGGER, "print_freq": 100}, "dist_params": DIST}


EDSR_M_X2 = basicsr_sr(  # XPixelGroup/BasicSR options/train/EDSR/train_EDSR_Mx2.yml
    "201_EDSR_Mx2_f64b16_DIV2K_300k_B16G1_wandb",
    {"type": "EDSR", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_block": 16,
     "upscale": 2, "res_scale": 1, "img_range": 255.0, "rgb_mean": [0.4488, 0.4371, 0.4040]},
    2, 96, 16, {"type": "MultiStepLR", "milestones": [200000], "gamma": 0.5},
    old_path_keys=True)
SWINIR_X2 = basicsr_sr(  # XPixelGroup/BasicSR options/train/SwinIR/train_SwinIR_SRx2_scratch.yml
    "train_SwinIR_SRx2_scratch_P48W8_DIV2K_500k_B4G8",
    {"type": "SwinIR", "upscale": 2, "in_chans": 3, "img_size": 48, "window_size": 8,
     "img_range": 1.0, "depths": [6, 6, 6, 6, 6, 6], "embed_dim": 180,
     "num_heads": [6, 6, 6, 6, 6, 6], "mlp_ratio": 2, "upsampler": "pixelshuffle",
     "resi_connection": "1conv"},
    2, 96, 4, {"type": "MultiStepLR", "milestones": [250000, 400000, 450000, 475000],
               "gamma": 0.5}, ema=0.999, meta_info=True)
# XPixelGroup/BasicSR options/train/SRResNet_SRGAN/train_MSRResNet_x4.yml, current revision:
# use_hflip, meta_info_file, a second validation set, EMA, param_key_g and a NIQE metric
MSRRESNET_X4 = {
    "name": "001_MSRResNet_x4_f64b16_DIV2K_1000k_B16G1_wandb", "model_type": "SRModel",
    "scale": 4, "num_gpu": 1, "manual_seed": 0,
    "datasets": {
        "train": {"name": "DIV2K", "type": "PairedImageDataset", "dataroot_gt": "GT_DIR",
                  "dataroot_lq": "LQ_DIR", "meta_info_file": "META_INFO", "filename_tmpl": "{}",
                  "io_backend": {"type": "disk"}, "gt_size": 128, "use_hflip": True,
                  "use_rot": True, "num_worker_per_gpu": 6, "batch_size_per_gpu": 16,
                  "dataset_enlarge_ratio": 100, "prefetch_mode": None},
        "val": {"name": "Set5", "type": "PairedImageDataset", "dataroot_gt": "VAL_GT_DIR",
                "dataroot_lq": "VAL_LQ_DIR", "io_backend": {"type": "disk"}},
        "val_2": {"name": "Set14", "type": "PairedImageDataset", "dataroot_gt": "VAL_GT_DIR",
                  "dataroot_lq": "VAL_LQ_DIR", "io_backend": {"type": "disk"}}},
    "network_g": {"type": "MSRResNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64,
                  "num_block": 16, "upscale": 4},
    "path": {"pretrain_network_g": None, "param_key_g": "params", "strict_load_g": True,
             "resume_state": None},
    "train": {"ema_decay": 0.999,
              "optim_g": {"type": "Adam", "lr": 2e-4, "weight_decay": 0, "betas": [0.9, 0.99]},
              "scheduler": {"type": "CosineAnnealingRestartLR", "periods": [250000] * 4,
                            "restart_weights": [1, 1, 1, 1], "eta_min": 1e-7},
              "total_iter": 1000000, "warmup_iter": -1,
              "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"}},
    "val": {"val_freq": 5e3, "save_img": False, "metrics": {
        "psnr": {"type": "calculate_psnr", "crop_border": 4, "test_y_channel": False,
                 "better": "higher"},
        "niqe": {"type": "calculate_niqe", "crop_border": 4, "better": "lower"}}},
    "logger": {**LOGGER, "print_freq": 100}, "dist_params": DIST}

PHOTOS = ("astronaut", "coffee", "rocket")


def write_pairs(root, size, scale, noise, count=3):
    """``count`` GT crops of the bundled photos and their LQ partners (noisy, or bicubic LR)."""
    gt_dir, lq_dir = root / "gt", root / "lq"
    gt_dir.mkdir(parents=True)
    lq_dir.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        name, shift = f"{PHOTOS[i % 3]}{i}", 4 * (i // 3)
        photo = getattr(skdata, PHOTOS[i % 3])()
        gt = np.ascontiguousarray(photo[shift:shift + size, shift:shift + size, ::-1])
        lq = (np.clip(gt + rng.normal(0, 12, gt.shape), 0, 255).astype(np.uint8) if noise
              else imresize(gt, 1 / scale))
        cv2.imwrite(str(gt_dir / f"{name}.png"), gt)
        cv2.imwrite(str(lq_dir / f"{name}.png"), lq)
    return str(gt_dir), str(lq_dir)


def with_data(opt, tmp_path, train_size, val_size, lmdb=False):
    """``opt`` with only its data paths pointed at fixtures made for it (enough training
    images for one batch)."""
    scale, noise = opt["scale"], opt["scale"] == 1
    sets = opt["datasets"]
    for phase in sets:
        size = train_size if phase == "train" else val_size
        count = max(3, sets[phase].get("batch_size_per_gpu", 1)) if phase == "train" else 3
        gt, lq = write_pairs(tmp_path / phase, size, scale, noise, count)
        if lmdb:
            folder_to_lmdb(gt, gt + ".lmdb", "png", progress=False)
            folder_to_lmdb(lq, lq + ".lmdb", "png", progress=False)
            gt, lq = gt + ".lmdb", lq + ".lmdb"
        sets[phase]["dataroot_gt"], sets[phase]["dataroot_lq"] = gt, lq
    if "meta_info_file" in sets["train"]:
        meta = tmp_path / "meta_info.txt"
        meta.write_text("".join(f"{n}{i}.png ({train_size},{train_size},3)\n"
                                for i, n in enumerate(PHOTOS)))
        sets["train"]["meta_info_file"] = str(meta)
    return opt


def one_iteration(opt, tmp_path):
    """Load the file as tools/train.py does and train its first iteration (validated, saved)."""
    path = tmp_path / "options.yml"
    path.write_text(yaml.safe_dump({**opt, "path": {
        **opt["path"], "experiments_root": str(tmp_path / "experiments")}}, sort_keys=False))
    runner = Runner(load_options(str(path)))
    runner.total_iter = 1  # the test's only liberty: stop after one iteration
    runner.train()
    return runner


@pytest.mark.parametrize("opt, train_size, val_size, lmdb", [
    (NAFNET_SIDD, 256, 64, True),
    (EDSR_M_X2, 96, 48, False),
    (SWINIR_X2, 96, 48, False),
    (MSRRESNET_X4, 128, 48, False),
], ids=["nafnet_sidd_width32", "edsr_mx2", "swinir_srx2", "msrresnet_x4"])
def test_published_file_trains_one_iteration(tmp_path, capsys, opt, train_size, val_size, lmdb):
    runner = one_iteration(with_data(copy.deepcopy(opt), tmp_path, train_size, val_size, lmdb),
                           tmp_path)
    assert os.path.isfile(os.path.join(runner.exp_dir, "models", "net_g_1.pth"))
    notes = capsys.readouterr().err
    assert "note: logger.wandb is not used" in notes
    resolved = runner.opt
    if opt is MSRRESNET_X4:  # BasicSR's NIQE is named as not computed; PSNR on both sets
        assert "note: val.metrics.niqe is not used" in notes
        assert list(resolved["val"]["metrics"]) == ["psnr"] and len(runner.validators) == 2
    if opt["scale"] > 1:  # top-level scale reached the datasets
        assert all(s["scale"] == opt["scale"] for s in resolved["datasets"].values())
    if "meta_info_file" in opt["datasets"]["train"]:
        assert len(runner.train_loader.dataset) == 3  # of the 4 images there
    if opt is NAFNET_SIDD:
        assert resolved["val"]["protocol"] == "float"  # use_image: false
        assert resolved["val"]["val_freq"] == 20000 and resolved["train"]["total_iter"] == 200000


def test_restormer_file_validates_whole_and_trains_at_a_small_width(tmp_path, capsys):
    """Its first stage (8 x 128^2 crops) needs about 23 GiB to train at the published width (the
    estimator's figure), more than this machine has: the width is the one value changed."""
    opt = with_data(copy.deepcopy(RESTORMER_REAL), tmp_path, 400, 64)
    resolved = validate_options(opt)
    assert resolved["train"]["grad_clip_norm"] == 0.01  # use_grad_clip, Restormer's value
    assert resolved["val"]["protocol"] == "float"
    opt["network_g"].update(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1)
    runner = one_iteration(opt, tmp_path)
    assert runner.progressive.stage(1) == 0 and runner.progressive.stage(92001) == 1
    loaded = {"lq": torch.rand(8, 3, 384, 384), "gt": torch.rand(8, 3, 384, 384),
              "lq_path": [str(i) for i in range(8)]}
    first, second = runner.progressive(loaded, 1), runner.progressive(loaded, 92001)
    assert tuple(first["gt"].shape) == (8, 3, 128, 128) and len(first["lq_path"]) == 8
    assert tuple(second["gt"].shape) == (5, 3, 160, 160) and len(second["lq_path"]) == 5
    assert torch.equal(runner.progressive(loaded, 92001)["gt"], second["gt"])  # resume-exact
    crop = second["gt"][0]  # a window of one of the loaded samples (random values: unique)
    found = [(i, y, x) for i in range(8)
             for y, x in (loaded["gt"][i][0] == crop[0, 0, 0]).nonzero().tolist()]
    assert len(found) == 1
    i, y, x = found[0]
    assert torch.equal(loaded["gt"][i][:, y:y + 160, x:x + 160], crop)
    notes = capsys.readouterr().err
    for key in ("val.rgb2bgr", "val.max_minibatch", "val.window_size", "logger.wandb"):
        assert f"note: {key} is not used" in notes


def test_foreign_keys_that_cannot_be_honoured_are_named(tmp_path):
    opt = copy.deepcopy(NAFNET_SIDD)
    opt["val"]["grids"] = True
    with pytest.raises(OptionError, match=r"^val.grids: .*tools/infer.py"):
        validate_options(opt)
    opt = copy.deepcopy(NAFNET_SIDD)
    opt["datasets"]["train"]["mini_batch_sizes"] = [4]
    with pytest.raises(OptionError, match=r"progressive training needs mini_batch_sizes, iters"):
        validate_options(opt)
