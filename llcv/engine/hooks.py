"""Observers of the training loop, built through the ``HOOKS`` registry.

The loop calls each stage on every hook in priority order (lower first):

- ``check(runner)`` — before the run folder is touched (on every rank, in the dry start): raise
  an ``LLCVError`` for what would fail later, e.g. a prune target the network cannot reach;
- ``before_run(runner)`` / ``after_run(runner)`` (training finished) / ``on_exit(runner)``
  (always, also after an error: release what the hook holds);
- ``before_train_iter(runner, it)`` / ``after_train_iter(runner, it, batch, record)`` —
  ``record`` is this iteration's dict of scalars; hooks with a lower priority number may add
  fields before later hooks log them;
- ``before_val(runner, it)`` / ``after_val(runner, it, results)`` around every validation
  (``after_val`` also runs when validation failed, with empty results);
- ``before_save_checkpoint(runner, checkpoint)`` — add entries to the training state about to
  be written (the weights file takes ``params``, ``params_ema`` and ``network`` from it);
  ``after_load_checkpoint(runner, checkpoint)`` — read them back on resume;
- ``after_model_replaced(runner, plan)`` — the network was replaced by a pruned one
  (``runner.state.spec`` is already the new spec); re-derive what depended on it.

A hook with state to keep across a resume implements ``state_dict``/``load_state_dict``; it is
stored under the hook's ``name`` (its type, unless the options give a ``name``). ``held()``
lists what the hook keeps on the device (counted in the memory figures). Hooks never keep a
reference to the model: they read ``runner.state`` when called.
"""
from __future__ import annotations

import copy
import json
import os
import time
from collections import deque
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F

from llcv.analysis.crops import choose_crop
from llcv.analysis.profile import count_parameters, profile_model, si
from llcv.engine.dist import all_reduce_max
from llcv.engine.ema import ModelEMA
from llcv.engine.logger import format_train_line
from llcv.engine.validation import save_image_png, tensor_to_uint8_rgb
from llcv.errors import OptionError
from llcv.memory import AllocatorPeakMeter, MemoryEstimateFields, MemoryMeter, resident_bytes
from llcv.registry import HOOKS, build
from llcv.utils import MB


class Hook:
    """Base class: every stage does nothing; ``priority`` orders hooks (lower runs first)."""

    priority = 50
    name = ""  # set by build_hooks: the key of this hook's state in checkpoints

    def check(self, runner) -> None: ...

    def before_run(self, runner) -> None: ...

    def before_train_iter(self, runner, it: int) -> None: ...

    def after_train_iter(self, runner, it: int, batch: Mapping, record: dict) -> None: ...

    def before_val(self, runner, it: int) -> None: ...

    def after_val(self, runner, it: int, results: Mapping[str, float]) -> None: ...

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None: ...

    def after_load_checkpoint(self, runner, checkpoint: Mapping[str, Any]) -> None: ...

    def after_model_replaced(self, runner, plan: Mapping[str, Any]) -> None: ...

    def after_run(self, runner) -> None: ...

    def on_exit(self, runner) -> None: ...

    def held(self) -> list[Any]:
        return []

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def build_hooks(cfgs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Hook]:
    """Hooks from ``(option key, {type, [name], [priority], ...arguments})`` pairs, sorted by
    priority. Names must be unique: two hooks of one type need distinct ``name`` options."""
    hooks: list[Hook] = []
    for key, cfg in cfgs:
        hook = build(HOOKS, {k: v for k, v in cfg.items() if k not in ("name", "priority")}, key)
        hook.name = cfg.get("name") or cfg["type"]
        if "priority" in cfg:
            hook.priority = cfg["priority"]
        if any(h.name == hook.name for h in hooks):
            raise OptionError(f"{key}.name: a second hook named '{hook.name}'; give each hook "
                              f"of one type its own name")
        hooks.append(hook)
    return sorted(hooks, key=lambda h: h.priority)


TB_CROP = 128  # side of the validation crops shown in TensorBoard


def every(it: int, freq: int, total: int) -> bool:
    """True at multiples of ``freq`` and at the last iteration."""
    return it == total or (freq > 0 and it % freq == 0)


@HOOKS.register_module()
class EMAHook(Hook):
    """Keeps an exponential moving average of the weights (validated and saved as
    ``params_ema``); pruned with the same plan as the network."""

    priority = 10

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise OptionError(f"decay: {decay} must be in (0, 1), e.g. 0.999")
        self.decay = decay
        self.ema: ModelEMA | None = None

    def _ensure(self, runner) -> ModelEMA:
        if self.ema is None:
            self.ema = ModelEMA(runner.state.model, self.decay)
        return self.ema

    def before_run(self, runner) -> None:
        self._ensure(runner)

    def after_train_iter(self, runner, it, batch, record) -> None:
        self._ensure(runner).update(runner.state.model)

    def before_val(self, runner, it) -> None:
        self._ensure(runner).swap(runner.state.model)

    def after_val(self, runner, it, results) -> None:
        self._ensure(runner).swap(runner.state.model)

    def before_save_checkpoint(self, runner, checkpoint) -> None:
        checkpoint["params_ema"] = self._ensure(runner).module.state_dict()

    def after_load_checkpoint(self, runner, checkpoint) -> None:
        if "params_ema" not in checkpoint:
            raise OptionError("train.ema_decay: the resumed state has no EMA weights; resume "
                              "with the same train.ema_decay as the original run")
        self._ensure(runner).module.load_state_dict(checkpoint["params_ema"])

    def after_model_replaced(self, runner, plan) -> None:
        self._ensure(runner).replace(plan, runner.state.spec, runner.device)

    def held(self) -> list[Any]:
        return [] if self.ema is None else [self.ema.module]


@HOOKS.register_module()
class MemoryHook(Hook):
    """Adds this iteration's memory to the record, measured and estimated (max over ranks).

    Measured every iteration: CUDA allocator peaks (free), or on CPU the process RSS and peak
    RSS. On CPU, ``measure_allocator`` also measures the peak bytes of the tensors alive during
    the step, tracked at PyTorch's dispatcher; that costs a few microseconds per op (a third of
    a small model's step), so it runs on a schedule: the first ``WARM_ITERS`` iterations after
    the start and after every model change, then every ``allocator_freq`` iterations (default:
    the log's ``print_freq``; 1: every iteration). Kernels' scratch buffers are not tensors and
    are not seen; the profiler's allocator events would see them but interfere with signal
    handling, so the loop does not use them.
    Estimated every iteration, counting the same things so both compare on one chart: the peak
    of a training step at the training batch shape (plus what the run holds beside it, e.g. an
    EMA copy) and of inference at the first validation image's shape, for the current model,
    re-estimated whenever the model or the batch shape changes.
    """

    priority = 20
    WARM_ITERS = 3

    def __init__(self, measure_allocator: bool = True, allocator_freq: int = 100) -> None:
        self.measure_allocator, self.allocator_freq = measure_allocator, allocator_freq
        self.meter: MemoryMeter | None = None
        self.alloc_meter: AllocatorPeakMeter | None = None
        self.estimates: MemoryEstimateFields | None = None
        self.warm_until = 0  # measure the allocator up to this iteration, whatever the freq
        self.last_it = 0

    def before_run(self, runner) -> None:
        self.meter = MemoryMeter(runner.device)
        track = self.measure_allocator and runner.device.type == "cpu"
        if track and runner.opt["train"]["compile"] is not False:
            track = False  # TorchDynamo runs a frame eagerly under a dispatch-level tracker
            runner.logger.info("logger.measure_allocator: off under train.compile on CPU (the "
                               "tensor tracker would keep the network from compiling); RSS "
                               "and the estimates are still logged every iteration")
        self.alloc_meter = AllocatorPeakMeter(runner.device, method="tensors", enabled=track)
        self.warm_until = runner.start_iter + self.WARM_ITERS

    def before_train_iter(self, runner, it) -> None:
        self.meter.reset()
        self.last_it = it
        if it <= self.warm_until or every(it, self.allocator_freq, runner.total_iter):
            self.alloc_meter.start(resident_bytes(*runner.resident()))

    def after_train_iter(self, runner, it, batch, record) -> None:
        figures = {**self.meter.read(), **self.alloc_meter.stop()}
        fresh = self.estimates is None or self.estimates.train_shape != list(batch["lq"].shape)
        if fresh:  # first iteration, a new model, or a new batch shape (progressive patches)
            self.estimates = self._build_estimates(runner, batch)
        figures.update(self.estimates(runner.state.model))
        if fresh:
            for est in self.estimates.estimates.values():
                runner.logger.info(f"Estimated peak memory at iter {it}:\n{est.format()}")
        if runner.dist.distributed:
            values = all_reduce_max(torch.tensor(list(figures.values()), device=runner.device))
            figures = dict(zip(figures, values.tolist()))
        record.update(figures)

    def after_model_replaced(self, runner, plan) -> None:
        self.estimates = None  # the next iteration estimates the new model (and EMA bytes)
        self.warm_until = self.last_it + self.WARM_ITERS

    def on_exit(self, runner) -> None:
        if self.alloc_meter is not None:
            self.alloc_meter.stop()

    @staticmethod
    def _build_estimates(runner, batch) -> MemoryEstimateFields:
        val_shape = None
        if runner.validators:
            val_shape = [1, *runner.validators[0].loader.dataset[0]["lq"].shape]
        state = runner.state
        beside = [obj for hook in runner.hooks for obj in hook.held()] + state.step.held()
        return MemoryEstimateFields(
            list(batch["lq"].shape), val_shape, optimizer=runner.opt["train"]["optim_g"],
            device=runner.device, amp=runner.opt["train"]["amp"] or False,
            loss=state.step.memory_loss(),
            train_target_shape=list(batch["gt"].shape),
            extra_train_bytes=resident_bytes(*beside) if beside else 0,
            kernel_workspace=runner.device.type != "cpu")


@HOOKS.register_module()
class LoggerHook(Hook):
    """Text line + JSONL + TensorBoard every ``print_freq``; memory to TensorBoard and JSONL
    every iteration (in between, a JSONL line holds ``iter`` and the ``mem/`` fields only)."""

    priority = 30

    def __init__(self, print_freq: int, window: int = 100) -> None:
        self.print_freq = print_freq
        self.iter_times: deque[float] = deque(maxlen=window)

    def after_train_iter(self, runner, it, batch, record) -> None:
        self.iter_times.append(record["time/iter_s"])
        memory = {k: v for k, v in record.items() if k.startswith("mem/")}
        runner.writer.write_tb(it, memory)
        if not every(it, self.print_freq, runner.total_iter):
            runner.writer.write_jsonl(it, memory)
            return
        eta = sum(self.iter_times) / len(self.iter_times) * (runner.total_iter - it)
        runner.logger.info(format_train_line(runner.name, runner.epoch_of(it), it,
                                             runner.total_iter, record, eta))
        runner.writer.write_jsonl(it, record)
        runner.writer.write_tb(it, {k: v for k, v in record.items() if not k.startswith("mem/")})

    def after_val(self, runner, it, results) -> None:
        if not results:  # validation failed; the error is on its way
            return
        runner.writer.write_jsonl(it, results)
        runner.writer.write_tb(it, results)
        runner.writer.flush()


@HOOKS.register_module()
class ValidationHook(Hook):
    """Validates every ``val_freq`` iterations and at the end; keeps the best value of each metric.

    TensorBoard gets ``[LQ | output | GT]`` of a fixed crop of each of the first ``tb_images``
    images: chosen at the first validation where the LQ differs most from the GT, and kept in
    the checkpoint, so every validation (and a resumed run) shows the same pixels.
    """

    priority = 40

    def __init__(self, val_freq: int, save_img: bool, tb_images: int) -> None:
        self.val_freq, self.save_img, self.tb_images = val_freq, save_img, tb_images
        self.best: dict[str, dict[str, float]] = {}
        self.crops: dict[str, list[int]] = {}  # image -> [top, left, size] in GT pixels

    def after_train_iter(self, runner, it, batch, record) -> None:
        if every(it, self.val_freq, runner.total_iter):
            self.validate(runner, it)

    def validate(self, runner, it: int) -> dict[str, float]:
        """Run every validation set, log results, best values and the LQ reference line."""
        results: dict[str, float] = {}
        runner.call_hooks("before_val", it)
        try:
            for validator in runner.validators:
                results.update(self._run_one(runner, validator, it))
            results.update({f"{k.split('/')[0]}/best_{k.split('/')[1]}": v["value"]
                            for k, v in self.best.items()})
        finally:
            runner.call_hooks("after_val", it, results)
        return results

    def _run_one(self, runner, validator, it: int) -> dict[str, float]:
        start = time.perf_counter()
        first_run = validator.reference is None
        values = validator.run(runner.state.model,
                               on_batch=self._image_sink(runner, validator, it))
        self._update_best(values, validator, it)
        seconds = time.perf_counter() - start
        self._log(runner, validator, values, it, seconds, first_run)
        return {**values, **(validator.reference if first_run else {}),
                f"time/{validator.phase}_s": seconds}

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

    def _image_sink(self, runner, validator, it: int):
        if not (self.save_img or (runner.writer.tb is not None and self.tb_images > 0)):
            return None
        phase, batch_size = validator.phase, validator.loader.batch_size

        def sink(index: int, batch: Mapping, output: torch.Tensor) -> None:
            for j, out in enumerate(output):
                name = os.path.splitext(os.path.basename(str(batch["lq_path"][j])))[0].replace(":", "_")
                if self.save_img:
                    save_image_png(out, os.path.join(runner.exp_dir, "visualization", phase,
                                                     name, f"{name}_{it}.png"))
                shown = runner.dist.rank + (index * batch_size + j) * runner.dist.world_size
                if shown < self.tb_images and runner.dist.is_main:
                    row = self._crop_row(f"{phase}/{name}", batch["lq"][j], out, batch["gt"][j])
                    runner.writer.write_image(f"{phase}_images/{name}", tensor_to_uint8_rgb(row),
                                              it)
        return sink

    def _crop_row(self, key: str, lq: torch.Tensor, out: torch.Tensor,
                  gt: torch.Tensor) -> torch.Tensor:
        """``[LQ | output | GT]`` of the image's fixed crop (a SR LQ enlarged to the GT's size)."""
        gt = gt.cpu()
        lq = F.interpolate(lq[None].cpu(), size=gt.shape[-2:])[0]
        if key not in self.crops:
            size = min(TB_CROP, *gt.shape[-2:])
            top, left = choose_crop([lq.permute(1, 2, 0).numpy()], gt.permute(1, 2, 0).numpy(),
                                    size)
            self.crops[key] = [top, left, size]
        top, left, size = self.crops[key]
        window = (slice(None), slice(top, top + size), slice(left, left + size))
        return torch.cat([lq[window], out.float().cpu()[window], gt[window]], 2)

    def state_dict(self) -> dict:
        return {"best": self.best, "crops": self.crops}

    def load_state_dict(self, state) -> None:
        self.best = {k: dict(v) for k, v in state.get("best", {}).items()}
        self.crops = {k: list(v) for k, v in state.get("crops", {}).items()}


@HOOKS.register_module()
class SummaryHook(Hook):
    """At the end of a run, one screen of what it produced: best metrics and their iteration,
    the final network's parameters, MACs and estimated peaks, the largest measured peaks, the
    weights file and the command that tests it; also written to ``summary.json`` and
    TensorBoard's text tab."""

    priority = 90
    MEASURED = ("mem/alloc_peak_mb", "mem/reserved_peak_mb", "mem/rss_peak_mb")

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self.seconds = {"time/iter_s": 0.0, "time/data_s": 0.0}

    def after_train_iter(self, runner, it, batch, record) -> None:
        for key in self.MEASURED:
            if key in record:
                self.peaks[key] = max(self.peaks.get(key, 0.0), record[key])
        for key in self.seconds:
            self.seconds[key] += record.get(key, 0.0)

    def after_run(self, runner) -> None:
        if not runner.dist.is_main:
            return
        summary = self.summary(runner)
        text = format_summary(summary)
        runner.logger.info(text)
        runner.writer.write_text("summary", "```\n" + text + "\n```", runner.total_iter)
        with open(os.path.join(runner.exp_dir, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)

    def summary(self, runner) -> dict[str, Any]:
        """The figures of the finished run, as plain values."""
        model, validators = runner.state.model, runner.validators
        out: dict[str, Any] = {"name": runner.name, "iterations": runner.total_iter,
                               "network": runner.state.spec, "params": count_parameters(model)}
        best = next((h.best for h in runner.hooks if isinstance(h, ValidationHook)), {})
        out["best"] = {k: dict(v) for k, v in best.items()}
        if validators:
            shape = [1, *validators[0].loader.dataset[0]["lq"].shape]
            meta = copy.deepcopy(model).to("meta")
            out["macs"], out["macs_input_shape"] = profile_model(meta, shape).macs, shape
        memory = next((h for h in runner.hooks if isinstance(h, MemoryHook)), None)
        if memory is not None and memory.estimates is not None:
            out["estimated_peaks_mb"] = {mode: est.total / MB for mode, est in
                                         memory.estimates.estimates.items()}
        out["measured_peaks_mb"] = dict(self.peaks)
        total = self.seconds["time/iter_s"]
        out["data_wait_share"] = self.seconds["time/data_s"] / total if total else 0.0
        out["weights"] = os.path.join(runner.exp_dir, "models", "net_g_latest.pth")
        out["test_command"] = (f"python tools/test.py -opt "
                               f"{os.path.join(runner.exp_dir, 'options.yml')}")
        return out

    def state_dict(self) -> dict:
        return {"peaks": dict(self.peaks), "seconds": dict(self.seconds)}

    def load_state_dict(self, state) -> None:
        self.peaks = dict(state.get("peaks", {}))
        self.seconds.update(state.get("seconds", {}))


def format_summary(summary: Mapping[str, Any]) -> str:
    """The few lines :class:`SummaryHook` prints."""
    lines = [f"Summary of {summary['name']} ({summary['iterations']} iterations):"]
    for key, best in summary["best"].items():
        lines.append(f"  best {key}: {best['value']:.4f} at iter {best['iter']}")
    pruned = "" if summary["network"]["plan"] is None else " (pruned)"
    macs = f", {si(summary['macs'])} MACs at {'x'.join(map(str, summary['macs_input_shape']))}" \
        if "macs" in summary else ""
    lines.append(f"  network {summary['network']['network_g']['type']}{pruned}: "
                 f"{summary['params']:,} parameters{macs}")
    for mode, mb in summary.get("estimated_peaks_mb", {}).items():
        lines.append(f"  estimated {mode} peak: {mb:.2f} MiB")
    for key, mb in summary["measured_peaks_mb"].items():
        lines.append(f"  largest measured {key.split('/')[1]}: {mb:.2f} MiB")
    lines.append(f"  waiting for data: {summary['data_wait_share']:.1%} of the iteration time "
                 f"(more workers or prefetch_mode if large)")
    lines.append(f"  weights: {summary['weights']}")
    lines.append(f"  test it: {summary['test_command']}")
    return "\n".join(lines)


@HOOKS.register_module()
class CheckpointHook(Hook):
    """Saves weights and the training state every ``save_checkpoint_freq`` and at the end.

    A validation that fails (a bad image, ...) first saves the state of its iteration, so the
    error loses no training (one process; with peers the collectives are out of step).
    """

    priority = 70

    def __init__(self, save_checkpoint_freq: int) -> None:
        self.freq = save_checkpoint_freq

    def after_train_iter(self, runner, it, batch, record) -> None:
        if every(it, self.freq, runner.total_iter):
            runner.save_checkpoint(it)

    def after_val(self, runner, it, results) -> None:
        expected = {f"{v.phase}/{m.name}" for v in runner.validators for m in v.metrics}
        if expected <= set(results) or runner.dist.distributed:
            return
        runner.save_checkpoint(it)
        runner.logger.info(f"Validation at iter {it} failed; the state of iter {it} is saved: "
                           f"fix the cause and continue with --auto_resume")
