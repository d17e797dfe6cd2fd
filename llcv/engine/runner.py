"""The iteration-based training loop: builds every part from the options, then drives them.

Parts never reach back into the runner; hooks observe it (logging, memory, validation,
checkpoints, EMA). The model sits behind one handle (:meth:`Runner.set_model`) so a later step
can swap it mid-run (structured pruning rebuilds the optimizer, EMA copy and DDP wrapper).
"""
from __future__ import annotations

import os
import random
import signal
import time
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from llcv.data.loader import build_dataset, build_train_loader, build_val_loader
from llcv.data.prefetch import check_prefetch_mode, wrap_prefetch
from llcv.engine import checkpoint as ckpt
from llcv.engine.dist import (DistInfo, all_gather_objects, all_reduce_max, check_ranks_in_sync,
                              init_dist, is_peer_failure, select_device)
from llcv.engine.ema import ModelEMA
from llcv.engine.hooks import (CheckpointHook, EMAHook, Hook, LoggerHook, MemoryHook,
                               ValidationHook)
from llcv.engine.logger import MetricWriter, get_logger
from llcv.engine.optim import LRSchedule, build_optimizer
from llcv.engine.validation import Validator
from llcv.errors import LLCVError
from llcv.options import LOSS_KEYS, save_options
from llcv.registry import ARCHS, LOSSES, build


class RunInterrupted(LLCVError):
    """SIGINT/SIGTERM stopped the run after its state was saved."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Runner:
    """Trains ``network_g`` as the options say; ``train()`` runs to ``train.total_iter``."""

    def __init__(self, opt: Mapping[str, Any], auto_resume: bool = False,
                 launcher: str = "none", dist: DistInfo | None = None) -> None:
        self.opt = opt
        self.dist = dist or init_dist(launcher, opt["dist_params"]["timeout"],
                                      opt["dist_params"]["backend"])
        self.device = select_device(opt["device"], self.dist)
        self.name, self.total_iter = opt["name"], opt["train"]["total_iter"]
        self.exp_dir = os.path.join(opt["path"]["experiments_root"], self.name)
        state = self._resume_state(auto_resume)
        self.start_iter = state["iter"] if state else 0
        self._prepare_exp_dir(fresh=state is None)
        stamp = time.strftime("%Y%m%d_%H%M%S")
        self.logger = get_logger(os.path.join(self.exp_dir, f"train_{self.name}_{stamp}.log"),
                                 self.dist.is_main)
        self.writer = MetricWriter(self.exp_dir, opt["logger"]["use_tb_logger"], self.dist.is_main)
        seed_everything(opt["manual_seed"] + self.dist.rank)
        self._build_data()
        self.model: nn.Module = build(ARCHS, opt["network_g"], "network_g").to(self.device)
        self._load_pretrained()
        self.ema = ModelEMA(self.model, opt["train"]["ema_decay"]) if opt["train"]["ema_decay"] > 0 else None
        self.losses = {name: build(LOSSES, opt["train"][key], f"train.{key}").to(self.device)
                       for key, name in LOSS_KEYS.items() if key in opt["train"]}
        if not self.losses:
            raise LLCVError(f"train: no loss given; add e.g. train.pixel_opt: {{type: L1Loss}} "
                            f"(loss sections: {', '.join(LOSS_KEYS)})")
        self.lr_schedule = LRSchedule(opt["train"].get("scheduler"), self.total_iter,
                                      opt["train"]["warmup_iter"])
        self.set_model(self.model)
        self.hooks = self._build_hooks()
        if state:
            self.load_state(state)
        if self.dist.distributed:
            self.logger.info(check_ranks_in_sync(self.model, "after resume" if state else "at start-up"))
        self._stop_signal: int | None = None
        if self.dist.is_main:
            save_options(opt, os.path.join(self.exp_dir, "options.yml"))

    # ----------------------------------------------------------------- building
    def _resume_state(self, auto_resume: bool) -> dict | None:
        path, key = self.opt["path"]["resume_state"], "path.resume_state"
        if path is None and auto_resume:
            path, key = ckpt.latest_state(os.path.join(self.exp_dir, "training_states")), "--auto_resume"
        if path is None:
            return None
        state = ckpt.load_checkpoint(path, key)
        ckpt.check_training_state(state, path, key)
        if state["network_g"] != self.opt["network_g"]:
            raise LLCVError(f"{key}: '{path}' was trained with network_g {state['network_g']}, "
                            f"but the options say {self.opt['network_g']}; use the same network_g")
        self.resume_path = path
        return state

    def _prepare_exp_dir(self, fresh: bool) -> None:
        if self.dist.is_main:
            if fresh and os.path.exists(self.exp_dir):
                archived = f"{self.exp_dir}_archived_{time.strftime('%Y%m%d_%H%M%S')}"
                os.rename(self.exp_dir, archived)
            for sub in ("models", "training_states"):
                os.makedirs(os.path.join(self.exp_dir, sub), exist_ok=True)
        self.barrier()

    def _build_data(self) -> None:
        datasets = self.opt["datasets"]
        check_prefetch_mode(datasets["train"]["prefetch_mode"], self.device)
        train_set = build_dataset(datasets["train"], "train")
        self.train_loader = build_train_loader(
            train_set, datasets["train"], self.opt["manual_seed"], self.dist.rank,
            self.dist.world_size, self.start_iter, self.device)
        self.validators = []
        val_opt = self.opt.get("val")
        for phase, section in datasets.items():
            if phase == "train" or val_opt is None or not phase.startswith("val"):
                continue
            loader = build_val_loader(build_dataset(section, phase), section, self.device,
                                      self.dist.rank, self.dist.world_size)
            self.validators.append(Validator(phase, loader, val_opt["metrics"],
                                             val_opt["protocol"], self.dist, self.device))

    def _load_pretrained(self) -> None:
        path = self.opt["path"]["pretrain_network_g"]
        if path is None:
            return
        weights = ckpt.load_checkpoint(path, "path.pretrain_network_g")
        key = self.opt["path"]["param_key_g"]
        if key not in weights:
            raise LLCVError(f"path.param_key_g: '{key}' is not in '{path}'; it holds "
                            f"{', '.join(map(str, weights))}")
        try:
            self.model.load_state_dict(weights[key], strict=self.opt["path"]["strict_load_g"])
        except RuntimeError as err:
            first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
            raise LLCVError(f"path.pretrain_network_g: '{path}' does not fit network_g ({first}); "
                            f"check network_g or set path.strict_load_g: false") from None
        self.logger.info(f"Loaded {key} from {path}")

    def _build_hooks(self) -> list[Hook]:
        log_opt, val_opt = self.opt["logger"], self.opt.get("val")
        hooks: list[Hook] = [MemoryHook(self.device, log_opt["measure_allocator"]),
                             LoggerHook(log_opt["print_freq"]),
                             CheckpointHook(log_opt["save_checkpoint_freq"])]
        if self.ema is not None:
            hooks.append(EMAHook())
        if val_opt is not None and self.validators:
            hooks.append(ValidationHook(val_opt["val_freq"], val_opt["save_img"], val_opt["tb_images"]))
        return sorted(hooks, key=lambda h: h.priority)

    def set_model(self, model: nn.Module) -> None:
        """Install ``model`` as the trained network: new optimizer and (when distributed) DDP."""
        self.model = model
        self.optimizer = build_optimizer(model.parameters(), self.opt["train"]["optim_g"])
        self.train_model: nn.Module = model  # drops the previous DDP wrapper, if any
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    # ----------------------------------------------------------------- running
    def call_hooks(self, stage: str, *args: Any) -> None:
        """Call ``stage`` on every hook, in priority order."""
        for hook in self.hooks:
            getattr(hook, stage)(self, *args)

    def epoch_of(self, it: int) -> int:
        return (it - 1) // self.train_loader.sampler.iters_per_epoch

    def train_step(self, batch: Mapping[str, Any], it: int) -> dict[str, float]:
        """One optimizer step on ``batch``; returns the loss terms as ``train/<name>`` floats."""
        lq = batch["lq"].to(self.device, non_blocking=True)
        gt = batch["gt"].to(self.device, non_blocking=True)
        self.optimizer.zero_grad(set_to_none=True)
        output = self.train_model(lq)
        terms = {name: loss(output, gt) for name, loss in self.losses.items()}
        total = sum(terms.values())
        values = {name: term.item() for name, term in terms.items()}
        for name, value in values.items():
            if not np.isfinite(value):
                raise LLCVError(
                    f"train: loss {name} is {value} at iter {it}; the last checkpoint is intact — "
                    f"lower train.optim_g.lr, set train.grad_clip_norm, or check the data")
        total.backward()
        clip = self.opt["train"]["grad_clip_norm"]
        if clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        return {f"train/{name}": value for name, value in values.items()}

    def train(self) -> None:
        """Run from ``start_iter + 1`` to ``total_iter``; SIGINT/SIGTERM save and stop cleanly."""
        self._log_start()
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        data_iter = None
        try:
            self.call_hooks("before_run")
            data_iter = wrap_prefetch(iter(self.train_loader),
                                      self.opt["datasets"]["train"]["prefetch_mode"], self.device)
            for it in range(self.start_iter + 1, self.total_iter + 1):
                start = time.perf_counter()
                self.call_hooks("before_train_iter", it)
                batch = next(data_iter)
                data_time = time.perf_counter() - start
                lrs = self.lr_schedule.apply(self.optimizer, it)
                record = self.train_step(batch, it)
                record.update({"train/lr": lrs[0], "train/time": time.perf_counter() - start,
                               "train/data_time": data_time})
                self.call_hooks("after_train_iter", it, batch, record)
                if self._stop_requested():
                    self._stop(it)
            self.call_hooks("after_run")
            self.logger.info(f"End of training at iter {self.total_iter}; "
                             f"outputs in {self.exp_dir}")
        except RuntimeError as err:
            if not (self.dist.distributed and is_peer_failure(err)):
                raise
            raise LLCVError(
                f"rank {self.dist.rank}: lost a peer of the process group "
                f"({str(err).splitlines()[0]}); the other ranks stop within "
                f"dist_params.timeout; restart with --auto_resume") from None
        finally:
            self.call_hooks("on_exit")
            if data_iter is not None:
                data_iter.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.writer.close()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = signum

    def _stop_requested(self) -> bool:
        """True on every rank as soon as any rank received SIGINT/SIGTERM."""
        if not self.dist.distributed:
            return self._stop_signal is not None
        mine = torch.tensor([float(self._stop_signal or 0)], device=self.device)
        agreed = int(all_reduce_max(mine).item())
        if agreed and self._stop_signal is None:  # never clear a flag the handler set meanwhile
            self._stop_signal = agreed
        return agreed != 0

    def _stop(self, it: int) -> None:
        freq = self.opt["logger"]["save_checkpoint_freq"]
        if not (freq > 0 and it % freq == 0):
            self.save_checkpoint(it)
        name = signal.Signals(self._stop_signal).name
        raise RunInterrupted(f"{name} received: stopped at iter {it} with its state saved; "
                             f"continue with --auto_resume")

    def _log_start(self) -> None:
        loader_opt = self.opt["datasets"]["train"]
        batch = loader_opt["batch_size_per_gpu"]
        n_params = sum(p.numel() for p in self.model.parameters())
        self.logger.info(
            f"{self.name}: network_g {self.opt['network_g']['type']} with {n_params:,} parameters, "
            f"device {self.device}, {self.dist.world_size} process(es), batch {batch} per process "
            f"(global {batch * self.dist.world_size}), {self.train_loader.sampler.iters_per_epoch} "
            f"iters/epoch, iters {self.start_iter + 1}..{self.total_iter}")

    # ----------------------------------------------------------------- state
    def barrier(self) -> None:
        if self.dist.distributed:
            torch.distributed.barrier()

    def weights(self) -> dict:
        """The weights file content: plain tensors and the options that built the network."""
        out = {"params": self.model.state_dict(), "network_g": self.opt["network_g"]}
        if self.ema is not None:
            out["params_ema"] = self.ema.module.state_dict()
        return out

    def save_checkpoint(self, it: int) -> None:
        """Write ``models/net_g_<it>.pth``, ``net_g_latest.pth`` and ``training_states/<it>.state``."""
        rngs = all_gather_objects(ckpt.rng_state())
        if self.dist.distributed:
            self.logger.info(check_ranks_in_sync(self.model, f"at iter {it}"))
        if self.dist.is_main:
            weights = self.weights()
            models = os.path.join(self.exp_dir, "models")
            ckpt.atomic_save(weights, os.path.join(models, f"net_g_{it}.pth"))
            ckpt.atomic_save(weights, os.path.join(models, "net_g_latest.pth"))
            state = {**weights, "iter": it, "optimizer": self.optimizer.state_dict(),
                     "rng": rngs, "world_size": self.dist.world_size,
                     "hooks": {type(h).__name__: h.state_dict() for h in self.hooks}}
            ckpt.atomic_save(state, os.path.join(self.exp_dir, "training_states", f"{it}.state"))
            self.logger.info(f"Saved checkpoint at iter {it}")
        self.barrier()

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a training state exactly: weights, optimizer, RNGs, hook states."""
        self.model.load_state_dict(state["params"])
        if self.ema is not None:
            if "params_ema" not in state:
                raise LLCVError("train.ema_decay: the resumed state has no EMA weights; "
                                "resume with the same train.ema_decay as the original run")
            self.ema.module.load_state_dict(state["params_ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[self.dist.rank] if self.dist.rank < len(rngs) else rngs[0])
        if state["world_size"] != self.dist.world_size:
            self.logger.warning(f"resuming with {self.dist.world_size} process(es), saved with "
                                f"{state['world_size']}: the data order differs from the original run")
        for hook in self.hooks:
            hook.load_state_dict(state["hooks"].get(type(hook).__name__, {}))
        self.logger.info(f"Resumed from {self.resume_path} at iter {state['iter']}")
