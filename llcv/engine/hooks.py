"""Observers of the training loop. The loop calls each stage on every hook in priority order.

Stages: ``before_run(runner)``, ``before_train_iter(runner, it)``,
``after_train_iter(runner, it, batch, record)`` — ``record`` is this iteration's dict of scalars;
hooks with a lower priority number may add fields before later hooks log them —
``after_val(runner, it, results)``, ``after_run(runner)`` (training finished) and
``on_exit(runner)`` (always, also after an error: release what the hook holds).
A hook with state to keep across a resume implements ``state_dict``/``load_state_dict``.
"""
from __future__ import annotations

import os
import time
from collections import deque
from typing import Any, Mapping

import torch

from llcv.engine.dist import all_reduce_max
from llcv.engine.logger import format_train_line
from llcv.engine.validation import save_image_png, tensor_to_uint8_rgb
from llcv.memory import AllocatorPeakMeter, MemoryEstimateFields, MemoryMeter, resident_bytes
from llcv.registry import HOOKS


class Hook:
    """Base class: every stage does nothing; ``priority`` orders hooks (lower runs first)."""

    priority = 50

    def before_run(self, runner) -> None: ...

    def before_train_iter(self, runner, it: int) -> None: ...

    def after_train_iter(self, runner, it: int, batch: Mapping, record: dict) -> None: ...

    def after_val(self, runner, it: int, results: Mapping[str, float]) -> None: ...

    def after_run(self, runner) -> None: ...

    def on_exit(self, runner) -> None: ...

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def every(it: int, freq: int, total: int) -> bool:
    """True at multiples of ``freq`` and at the last iteration."""
    return it == total or (freq > 0 and it % freq == 0)


@HOOKS.register_module()
class EMAHook(Hook):
    """Updates the EMA copy of the weights after each optimizer step."""

    priority = 10

    def after_train_iter(self, runner, it, batch, record) -> None:
        runner.ema.update(runner.model)


@HOOKS.register_module()
class MemoryHook(Hook):
    """Adds this iteration's memory to the record, measured and estimated (max over ranks).

    Measured: CUDA allocator peaks, or on CPU the process RSS and (``measure_allocator``) the
    peak bytes of the tensors alive during the step, tracked at PyTorch's dispatcher. Kernels'
    scratch buffers are not tensors and are not seen; the profiler's allocator events would see
    them but interfere with signal handling, so the loop does not use them.
    Estimated, counting the same things so both compare on one chart: the peak of a training
    step at the training batch shape and of inference at the first validation image's shape, for
    the current model, re-estimated whenever the model's structure changes.
    """

    priority = 20

    def __init__(self, device: torch.device, measure_allocator: bool = True) -> None:
        self.meter = MemoryMeter(device)
        self.alloc_meter = AllocatorPeakMeter(
            device, method="tensors",
            enabled=measure_allocator and torch.device(device).type == "cpu")
        self.estimates: MemoryEstimateFields | None = None

    def before_train_iter(self, runner, it) -> None:
        self.meter.reset()
        self.alloc_meter.start(resident_bytes(*self._resident(runner)))

    def after_train_iter(self, runner, it, batch, record) -> None:
        figures = {**self.meter.read(), **self.alloc_meter.stop()}
        if self.estimates is None:
            self.estimates = self._build_estimates(runner, batch)
        known = self.estimates.estimates.get("train")
        figures.update(self.estimates(runner.model))
        if self.estimates.estimates.get("train") is not known:  # first estimate, or new model
            for est in self.estimates.estimates.values():
                runner.logger.info(f"Estimated peak memory at iter {it}:\n{est.format()}")
        if runner.dist.distributed:
            values = all_reduce_max(torch.tensor(list(figures.values()), device=runner.device))
            figures = dict(zip(figures, values.tolist()))
        record.update(figures)

    def on_exit(self, runner) -> None:
        self.alloc_meter.stop()

    @staticmethod
    def _resident(runner) -> list:
        return [runner.model, runner.optimizer] + ([runner.ema.module] if runner.ema else [])

    @staticmethod
    def _build_estimates(runner, batch) -> MemoryEstimateFields:
        val_shape = None
        if runner.validators:
            val_shape = [1, *runner.validators[0].loader.dataset[0]["lq"].shape]
        losses = list(runner.losses.values())
        return MemoryEstimateFields(
            list(batch["lq"].shape), val_shape, optimizer=runner.opt["train"]["optim_g"],
            device=runner.device, loss=lambda out, gt: sum(loss(out, gt) for loss in losses),
            extra_train_bytes=resident_bytes(runner.ema.module) if runner.ema else 0,
            kernel_workspace=runner.device.type != "cpu")


@HOOKS.register_module()
class LoggerHook(Hook):
    """Text line + JSONL + TensorBoard every ``print_freq``; memory to TensorBoard every iteration."""

    priority = 30

    def __init__(self, print_freq: int, window: int = 100) -> None:
        self.print_freq = print_freq
        self.iter_times: deque[float] = deque(maxlen=window)

    def after_train_iter(self, runner, it, batch, record) -> None:
        self.iter_times.append(record["train/time"])
        runner.writer.write_tb(it, {k: v for k, v in record.items() if k.startswith("mem/")})
        if not every(it, self.print_freq, runner.total_iter):
            return
        eta = sum(self.iter_times) / len(self.iter_times) * (runner.total_iter - it)
        runner.logger.info(format_train_line(runner.name, runner.epoch_of(it), it,
                                             runner.total_iter, record, eta))
        runner.writer.write_jsonl(it, record)
        runner.writer.write_tb(it, {k: v for k, v in record.items() if not k.startswith("mem/")})

    def after_val(self, runner, it, results) -> None:
        runner.writer.write_jsonl(it, results)
        runner.writer.write_tb(it, results)
        runner.writer.flush()


@HOOKS.register_module()
class ValidationHook(Hook):
    """Validates every ``val_freq`` iterations and at the end; keeps the best value of each metric."""

    priority = 40

    def __init__(self, val_freq: int, save_img: bool, tb_images: int) -> None:
        self.val_freq, self.save_img, self.tb_images = val_freq, save_img, tb_images
        self.best: dict[str, dict[str, float]] = {}

    def after_train_iter(self, runner, it, batch, record) -> None:
        if every(it, self.val_freq, runner.total_iter):
            self.validate(runner, it)

    def validate(self, runner, it: int) -> dict[str, float]:
        """Run every validation set, log results, best values and the LQ reference line."""
        model = runner.ema.module if runner.ema is not None else runner.model
        results: dict[str, float] = {}
        for validator in runner.validators:
            start = time.perf_counter()
            first_run = validator.reference is None
            values = validator.run(model, on_batch=self._image_sink(runner, validator.phase, it))
            results.update(values)
            self._update_best(values, validator, it)
            self._log(runner, validator, values, it, time.perf_counter() - start, first_run)
            if first_run:
                results.update(validator.reference)
        results.update({f"{k.split('/')[0]}/best_{k.split('/')[1]}": v["value"]
                        for k, v in self.best.items()})
        runner.call_hooks("after_val", it, results)
        return results

    def _update_best(self, values: Mapping[str, float], validator, it: int) -> None:
        for metric in validator.metrics:
            key = f"{validator.phase}/{metric.name}"
            old = self.best.get(key)
            if old is None:
                better = True
            elif metric.higher_is_better:
                better = values[key] > old["value"]
            else:
                better = values[key] < old["value"]
            if better:
                self.best[key] = {"value": values[key], "iter": it}

    def _log(self, runner, validator, values, it: int, seconds: float, first_run: bool) -> None:
        parts = [f"{k.split('/')[1]}: {v:.4f} (best {self.best[k]['value']:.4f} @ iter "
                 f"{self.best[k]['iter']})" for k, v in values.items()]
        runner.logger.info(f"Validation {validator.phase} @ iter {it} ({seconds:.1f}s): "
                           + ", ".join(parts))
        if first_run:
            ref = ", ".join(f"{k.split('/lq_')[1]}: {v:.4f}" for k, v in validator.reference.items())
            runner.logger.info(f"  reference {validator.phase} LQ vs GT: {ref}")

    def _image_sink(self, runner, phase: str, it: int):
        if not (self.save_img or (runner.writer.tb is not None and self.tb_images > 0)):
            return None

        def sink(index: int, batch: Mapping, output: torch.Tensor) -> None:
            for j, out in enumerate(output):
                name = os.path.splitext(os.path.basename(str(batch["lq_path"][j])))[0].replace(":", "_")
                if self.save_img:
                    save_image_png(out, os.path.join(runner.exp_dir, "visualization", phase,
                                                     name, f"{name}_{it}.png"))
                global_index = index * runner.dist.world_size + runner.dist.rank
                if global_index < self.tb_images and runner.dist.is_main:
                    row = torch.cat([batch["lq"][j].cpu(), out.float().cpu(), batch["gt"][j].cpu()], 2)
                    runner.writer.write_image(f"{phase}_images/{name}", tensor_to_uint8_rgb(row), it)
        return sink

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state) -> None:
        self.best = {k: dict(v) for k, v in state.get("best", {}).items()}


@HOOKS.register_module()
class CheckpointHook(Hook):
    """Saves weights and the training state every ``save_checkpoint_freq`` and at the end."""

    priority = 70

    def __init__(self, save_checkpoint_freq: int) -> None:
        self.freq = save_checkpoint_freq

    def after_train_iter(self, runner, it, batch, record) -> None:
        if every(it, self.freq, runner.total_iter):
            runner.save_checkpoint(it)
