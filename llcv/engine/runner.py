"""The iteration-based training loop: builds every part from the options, then drives them.

Parts never reach back into the runner; hooks observe it (logging, memory, validation,
checkpoints, EMA) and read the training state through ``runner.state``. What one iteration does
is the training step of ``model_type``. The network can be swapped mid-run for a pruned one with
:meth:`Runner.replace_model`, one transaction over the optimizer, EMA, DDP wrapper and memory
estimates; checkpoints carry the network spec, so a resumed run rebuilds the pruned network.
"""
from __future__ import annotations

import gc
import os
import random
import signal
import time
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from llcv.data.loader import build_dataset, build_train_loader, build_val_loader
from llcv.data.prefetch import check_prefetch_mode, wrap_prefetch
from llcv.data.progressive import ProgressivePatches
from llcv.engine import checkpoint as ckpt
from llcv.engine import startup
from llcv.engine.dist import (DistInfo, all_gather_objects, all_reduce_max, broadcast_object,
                              check_ranks_in_sync, init_dist, is_peer_failure, select_device)
from llcv.engine.hooks import Hook, ValidationHook, build_hooks
from llcv.engine.lock import LOCK_NAME, RunLock
from llcv.engine.logger import MetricWriter, RecordBuffer, get_logger
from llcv.engine.prune_hook import pruner_options
from llcv.engine.state import TrainState
from llcv.engine.validation import Validator
from llcv.errors import LLCVError, OptionError, storage_error
from llcv.network import (Plan, Spec, build_network, check_plan, checkpoint_spec, load_weights,
                          network_spec, normalized_options, pick_state_dict, spec_with)
from llcv.optim.schedulers import LRSchedule
from llcv.registry import MODELS, build
from llcv.serialization import load_checkpoint, save_yaml, yaml_text

#: what a weights file (``models/net_g_*.pth``) takes from the training state
WEIGHT_KEYS = ("params", "params_ema", "network")


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
        params = opt["dist_params"]
        self.dist = dist or init_dist(launcher, params["timeout"], params["backend"],
                                      params["port"])
        self.device = select_device(opt["device"], self.dist)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = opt["train"]["cudnn_benchmark"]
        self.name, self.total_iter = opt["name"], opt["train"]["total_iter"]
        self.exp_dir = os.path.join(opt["path"]["experiments_root"], self.name)
        # Everything is built and checked before the run folder is touched (created, archived,
        # written); what is logged meanwhile goes to the log file once it exists.
        self.logger, early = get_logger(None, self.dist.is_main), RecordBuffer()
        self.logger.addHandler(early)
        resume = self._resume_state(auto_resume)
        self.start_iter = resume["iter"] if resume else 0
        seed_everything(opt["manual_seed"] + self.dist.rank)
        self._build_data()
        self.state = self._build_state(resume)
        self.hooks: list[Hook] = build_hooks(self._hook_configs())
        if resume:
            self.load_state(resume)
        self._on_every_rank(self._dry_start)
        self._lock = self._prepare_exp_dir(fresh=resume is None)
        self._open_outputs(early.records)
        if self.dist.distributed:
            self.logger.info(check_ranks_in_sync(self.model, "after resume" if resume
                                                 else "at start-up"))
        self._stop_signal: int | None = None

    @property
    def model(self) -> nn.Module:
        """The bare network being trained (not its DDP wrapper)."""
        return self.state.model

    def hook(self, name: str) -> Hook:
        """The hook called ``name`` (its type unless the options named it)."""
        for hook in self.hooks:
            if hook.name == name:
                return hook
        raise KeyError(f"no hook named {name!r}; hooks: {[h.name for h in self.hooks]}")

    # ----------------------------------------------------------------- building
    def _resume_state(self, auto_resume: bool) -> dict | None:
        """The training state to continue from (``path.resume_state``, else with
        ``--auto_resume`` the run folder's latest), checked against the options; None: a new run."""
        path, key = self.opt["path"]["resume_state"], "path.resume_state"
        if path is None and auto_resume:
            states = os.path.join(self.exp_dir, ckpt.STATES_DIR)
            path, key = ckpt.latest_state(states), "--auto_resume"
            if path is None:
                self.logger.info(f"--auto_resume: no training state in {states}; starting a new "
                                 f"run at iter 1")
        if path is None:
            return None
        state = load_checkpoint(path, key)
        ckpt.check_training_state(state, path, key)
        spec = checkpoint_spec(state)
        if spec is None or normalized_options(spec["network_g"]) != \
                normalized_options(self.opt["network_g"]):
            saved = None if spec is None else spec["network_g"]
            raise LLCVError(f"{key}: '{path}' was trained with network_g {saved}, "
                            f"but the options say {self.opt['network_g']}; use the same network_g")
        if state["iter"] >= self.total_iter:
            raise OptionError(f"train.total_iter: {key} '{path}' is at iter {state['iter']}, and "
                              f"train.total_iter is {self.total_iter}: nothing is left to train; "
                              f"raise train.total_iter to train longer")
        self.resume_path = path
        return state

    def _on_every_rank(self, check: Callable[[], None]) -> None:
        """Run ``check`` on every rank; when it fails on one, every rank fails with its message
        (instead of the others waiting for a peer that is gone)."""
        if not self.dist.distributed:
            check()
            return
        try:
            check()
            message = None
        except LLCVError as err:
            message = str(err)
        failed = [m for m in all_gather_objects(message) if m]
        if failed:
            raise LLCVError(failed[0])

    def _dry_start(self) -> None:
        """What would fail at the first iteration or validation, found before any file is
        written: the first training batch through the network, every validation file's header,
        every hook's ``check`` (the global RNGs are left as they were)."""
        start, rng = time.perf_counter(), ckpt.rng_state()
        try:
            batch = startup.first_batch(self.train_loader)
            forward = startup.check_forward(self.model, batch, self.device)
            read = sum(startup.check_files(v.loader.dataset, f"datasets.{v.phase}")
                       for v in self.validators)
            self.call_hooks("check")
        finally:
            ckpt.set_rng_state(rng)
        total = sum(len(v.loader.dataset) for v in self.validators)
        self.logger.info(f"Checked before starting: a training batch through network_g "
                         f"({forward}), {read} of {total} validation image(s) read "
                         f"({time.perf_counter() - start:.2f} s)")

    def _prepare_exp_dir(self, fresh: bool) -> RunLock | None:
        """Take the run folder (rank 0 holds its lock); a new run archives what an earlier one
        left there. Returns the lock (None on other ranks)."""
        return self._on_main(lambda: self._take_folder(fresh))

    def _on_main(self, work: Callable[[], Any]) -> Any:
        """``work()`` on rank 0 (None elsewhere); when it fails, every rank fails with its
        message instead of waiting for rank 0."""
        result, error = None, None
        if self.dist.is_main:
            try:
                result = work()
            except LLCVError as err:
                error = err
        if self.dist.distributed:
            message = broadcast_object(None if error is None else str(error))
            error = error or (LLCVError(message) if message else None)
        if error is not None:
            raise error
        return result

    def _take_folder(self, fresh: bool) -> RunLock:
        """:meth:`_claim_folder`, a storage error (read-only, full, not a folder) in one line."""
        try:
            return self._claim_folder(fresh)
        except OSError as err:
            raise storage_error(err.filename or self.exp_dir, err) from None

    def _claim_folder(self, fresh: bool) -> RunLock:
        """Lock the run folder, archive an earlier run's files when this one starts afresh,
        make the checkpoint folders and delete the temporary files a killed run left."""
        lock = RunLock(self.exp_dir)
        if lock.stale:
            self.logger.info(f"Took over the lock of {self.exp_dir} from {lock.stale}, which "
                             f"is no longer running")
        if fresh and set(os.listdir(self.exp_dir)) - {LOCK_NAME}:
            archived = self._archive_path()
            os.rename(self.exp_dir, archived)  # the lock moves with it: no one starts meanwhile
            lock.moved_to(archived)
            lock.release()
            lock = RunLock(self.exp_dir)
            self.logger.info(f"Archived the earlier contents of {self.exp_dir} as {archived}")
        for sub in (ckpt.MODELS_DIR, ckpt.STATES_DIR):
            os.makedirs(os.path.join(self.exp_dir, sub), exist_ok=True)
        removed = ckpt.remove_stale_temp_files(self.exp_dir)
        if removed:
            self.logger.info(f"Removed {len(removed)} temporary file(s) a stopped run left: "
                             f"{', '.join(removed)}")
        return lock

    def _archive_path(self) -> str:
        """``<exp_dir>_archived_<time>``, made unique when that name is taken."""
        base = f"{self.exp_dir}_archived_{time.strftime('%Y%m%d_%H%M%S')}"
        path, n = base, 1
        while os.path.exists(path):
            path, n = f"{base}_{n}", n + 1
        return path

    def _open_outputs(self, early: list) -> None:
        """The log file (starting with the ``early`` records), TensorBoard, ``metrics.jsonl``
        and the resolved ``options.yml``, once the run owns its folder."""
        stamp = time.strftime("%Y%m%d_%H%M%S")
        self.logger = get_logger(os.path.join(self.exp_dir, f"{self.name}_{stamp}.log"),
                                 self.dist.is_main, replay=early)
        self.writer = MetricWriter(self.exp_dir, self.opt["logger"]["use_tb_logger"],
                                   self.dist.is_main, self.device.type)
        self.writer.write_text("options", "```yaml\n" + yaml_text(self.opt) + "```", 0)
        if self.dist.is_main:
            save_yaml(self.opt, os.path.join(self.exp_dir, "options.yml"))

    def release_folder(self) -> None:
        """Give the run folder up (remove its lock) when the run ends."""
        if self._lock is not None:
            self._lock.release()

    def _build_data(self) -> None:
        datasets = self.opt["datasets"]
        check_prefetch_mode(datasets["train"]["prefetch_mode"], self.device)
        train_set = build_dataset(datasets["train"], "train")
        self.train_loader = build_train_loader(
            train_set, datasets["train"], self.opt["manual_seed"], self.dist.rank,
            self.dist.world_size, self.start_iter, self.device)
        self.progressive = ProgressivePatches.from_section(
            datasets["train"], datasets["train"].get("scale", 1), self.opt["manual_seed"],
            self.dist.rank)
        self.validators = []
        val_opt = self.opt.get("val")
        for phase, section in datasets.items():
            if phase == "train" or val_opt is None or not phase.startswith("val"):
                continue
            loader = build_val_loader(build_dataset(section, phase), section, self.device,
                                      self.dist.rank, self.dist.world_size)
            self.validators.append(Validator(phase, loader, val_opt["metrics"],
                                             val_opt["protocol"], self.dist, self.device))

    def _build_state(self, resume: Mapping[str, Any] | None) -> TrainState:
        """The network (from the resumed state's spec, a pretrained file's spec, or the options),
        its optimizer, LR schedule and the training step of ``model_type``."""
        train = self.opt["train"]
        if resume is not None:
            spec = checkpoint_spec(resume)
            model = build_network(spec, self.device, init=False)
        else:
            spec, model = self._initial_network()
        step = build(MODELS, {"type": self.opt["model_type"]}, "model_type", opt=self.opt,
                     device=self.device)
        schedule = LRSchedule(train.get("scheduler"), self.total_iter, train["warmup_iter"])
        cfg = train["compile"]  # false, true, or torch.compile's arguments
        compile_cfg = None if cfg is False else {} if cfg is True else dict(cfg)
        return TrainState(model, spec, train["optim_g"], schedule, step, self.device,
                          train["channels_last"], compile_cfg)

    def _initial_network(self) -> tuple[Spec, nn.Module]:
        """``network_g``, or the network a pretrained file describes (a pruned one keeps its
        plan), initialised and loaded with ``path.pretrain_network_g``'s weights."""
        paths, key = self.opt["path"], "path.pretrain_network_g"
        spec = network_spec(self.opt["network_g"])
        if paths["pretrain_network_g"] is None:
            return spec, build_network(spec, self.device)
        weights = load_checkpoint(paths["pretrain_network_g"], key)
        stored = checkpoint_spec(weights)
        if stored is not None and stored["plan"] is not None:
            spec = stored
        model = build_network(spec, self.device)
        state = pick_state_dict(weights, paths["param_key_g"], paths["pretrain_network_g"],
                                "path.param_key_g")
        report = load_weights(model, state, paths["strict_load_g"], paths["pretrain_network_g"],
                              key, fix="check network_g, or set path.strict_load_g: false to "
                                       "skip the tensors that differ")
        self.logger.info(f"network_g: {report}")
        return spec, model

    def _hook_configs(self) -> list[tuple[str, dict]]:
        """The default hooks the options ask for, then ``custom_hooks``."""
        log_opt, val_opt, train = self.opt["logger"], self.opt.get("val"), self.opt["train"]
        cfgs = [("logger", {"type": "MemoryHook", "measure_allocator": log_opt["measure_allocator"],
                            "allocator_freq": log_opt["allocator_freq"] or log_opt["print_freq"]}),
                ("logger", {"type": "LoggerHook", "print_freq": log_opt["print_freq"]}),
                ("logger", {"type": "CheckpointHook",
                            "save_checkpoint_freq": log_opt["save_checkpoint_freq"]}),
                ("logger", {"type": "SummaryHook"})]
        if train["ema_decay"] > 0:
            cfgs.append(("train.ema_decay", {"type": "EMAHook", "decay": train["ema_decay"]}))
        if val_opt is not None and self.validators:
            cfgs.append(("val", {"type": "ValidationHook", "val_freq": val_opt["val_freq"],
                                 "save_img": val_opt["save_img"],
                                 "tb_images": val_opt["tb_images"]}))
        prune = self.opt.get("prune")
        if prune is not None:
            cfgs.append(("prune", {"type": "PruneHook", "pruner": pruner_options(prune),
                                   "schedule": prune["schedule"], "split": prune["split"]}))
        cfgs += [(f"custom_hooks.{i}", cfg) for i, cfg in enumerate(self.opt["custom_hooks"])]
        return cfgs

    def replace_model(self, plan: Plan | None, spec: Spec | None = None) -> Spec:
        """Swap the network for what ``plan`` makes of it, as one transaction on every rank.

        ``spec`` is the new network's spec when the change is more than ``plan``'s slicing
        (e.g. a pruner that inserted compactors first; the plan then refers to that network);
        by default it is the current spec with ``plan`` applied. Rank 0's ``(plan, spec)`` is
        broadcast, so every rank applies the identical change (other ranks may pass None).
        The optimizer is rebuilt with the state of kept channels carried over by name (``step``
        and every param-group hyper-parameter kept, so the LR schedule continues), the DDP
        wrapper is rebuilt after a barrier, hooks re-derive what they hold (the EMA gets the
        same plan, memory estimates refresh), and the old network and optimizer are released.
        Returns the new spec.
        """
        plan, spec = broadcast_object((plan, spec))
        if spec is None:
            check_plan(self.state.model, plan)
            spec = spec_with(self.state.spec, plan)
        self.barrier()
        self.state.replace(plan, spec)
        self.call_hooks("after_model_replaced", plan)
        gc.collect()
        if self.dist.distributed:
            self.logger.info(check_ranks_in_sync(self.model, "after the model was replaced"))
        return spec

    def resident(self) -> list[Any]:
        """What the run keeps on the device between steps: training state and hooks' copies."""
        return self.state.resident() + [obj for hook in self.hooks for obj in hook.held()]

    # ----------------------------------------------------------------- running
    def call_hooks(self, stage: str, *args: Any) -> None:
        """Call ``stage`` on every hook, in priority order."""
        for hook in self.hooks:
            getattr(hook, stage)(self, *args)

    def epoch_of(self, it: int) -> int:
        return (it - 1) // self.train_loader.sampler.iters_per_epoch

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
                if self.progressive is not None:
                    batch = self.progressive(batch, it)
                data_time = time.perf_counter() - start
                lrs = self.state.apply_lr(it)
                record = self.state.step(self.state, batch, it)
                record.update({"train/lr": lrs[0], "time/iter_s": time.perf_counter() - start,
                               "time/data_s": data_time})
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
            self.release_folder()

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

    def save_checkpoint(self, it: int) -> None:
        """Write ``models/net_g_<it>.pth``, ``training_states/<it>.state`` and point
        ``net_g_latest.pth`` at the new weights; ``logger.keep_checkpoints`` then deletes
        older ones. A storage error stops every rank with rank 0's one-line message."""
        rngs = all_gather_objects(ckpt.rng_state())
        if self.dist.distributed:
            self.logger.info(check_ranks_in_sync(self.model, f"at iter {it}"))
        state = {**self.state.state_dict(), "iter": it, "rng": rngs,
                 "world_size": self.dist.world_size,
                 "train_options": ckpt.recorded_train_options(self.opt["train"]),
                 "hooks": {h.name: h.state_dict() for h in self.hooks}}
        self.call_hooks("before_save_checkpoint", state)
        self._on_main(lambda: self._write_checkpoint(it, state))

    def _write_checkpoint(self, it: int, state: dict) -> None:
        """Rank 0's part of :meth:`save_checkpoint`: the files, then the housekeeping."""
        weights = {k: state[k] for k in WEIGHT_KEYS if k in state}
        ckpt.write_checkpoint(self.exp_dir, it, weights, state)
        keep = self.opt["logger"]["keep_checkpoints"]
        removed = ckpt.remove_old_checkpoints(self.exp_dir, keep, self._best_iters()) \
            if keep > 0 else []
        gone = f"; removed those of iter {', '.join(map(str, removed))}" if removed else ""
        self.logger.info(f"Saved checkpoint at iter {it}{gone}")

    def _best_iters(self) -> list[int]:
        """The iteration of the best value of the first validation metric (its checkpoint
        outlives ``logger.keep_checkpoints``)."""
        if not self.validators or not self.validators[0].metrics:
            return []
        first = self.validators[0]
        key = f"{first.phase}/{first.metrics[0].name}"
        return [h.best[key]["iter"] for h in self.hooks
                if isinstance(h, ValidationHook) and key in h.best]

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a training state exactly: weights, optimizer, RNGs, hook states; the
        option file's hyper-parameters (lr, betas, weight decay, schedule, total_iter) win over
        the saved ones, with a log line naming each change."""
        self.state.load_state_dict(state)
        changes = ckpt.apply_options(self.state.optimizer, self.opt["train"],
                                     state.get("train_options"))
        if changes:
            self.logger.info("Resuming with these options changed since the state was saved "
                             "(the option file wins): " + "; ".join(changes))
        rngs = state["rng"]
        ckpt.set_rng_state(rngs[self.dist.rank] if self.dist.rank < len(rngs) else rngs[0])
        if state["world_size"] != self.dist.world_size:
            self.logger.warning(f"resuming with {self.dist.world_size} process(es), saved with "
                                f"{state['world_size']}: the data order differs from the original run")
        for hook in self.hooks:
            hook.load_state_dict(state["hooks"].get(hook.name, {}))
        self.call_hooks("after_load_checkpoint", state)
        self.logger.info(f"Resumed from {self.resume_path} at iter {state['iter']}")
