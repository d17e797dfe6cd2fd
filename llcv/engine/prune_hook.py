"""Structured pruning at fixed iterations of a run, driven by the option file's ``prune:`` section.

At each iteration of ``schedule`` the network is pruned by a fresh pruner (``type`` and its
arguments) toward an intermediate target; the last point reaches ``target`` itself. ``split``
says how the reduction is spread: ``geometric`` (default: every point removes the same fraction
of what is left, or of the peak-memory figure) or ``linear`` (equal steps of the figure).
Rank 0 computes the plan; ``Runner.replace_model`` broadcasts and applies it (optimizer state,
EMA, DDP wrapper, estimates). A Taylor importance is accumulated over the ``iterations``
training steps before each point, and that partial sum is part of the checkpoint, so a run
resumed anywhere prunes exactly as an uninterrupted one.
Each event is logged under ``prune/*`` (text, JSONL, TensorBoard scalars and a text table):
its report (params, MACs, estimated peaks at the target shape, widths, seconds), the measured
inference peak at the target shape (an inference target) and the memory of the iteration
before it; one iteration later, the measured and estimated memory of the first step of the
pruned network.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping, Optional, Sequence

from llcv.errors import OptionError
from llcv.pruners.targets import dense_peak_mb, parse_target
from llcv.engine.hooks import Hook
from llcv.evaluation import measured_inference_peak
from llcv.registry import HOOKS, PRUNERS, build
from llcv.utils import MB, is_int

SPLITS = ("geometric", "linear")
SCHEDULE_KEYS = ("schedule", "split")  # keys of ``prune:`` for this hook; the rest: the pruner
NEXT_ITER_FIELDS = {"mem/alloc_peak_mb": "prune/next_iter_alloc_peak_mb",
                    "mem/est_train_peak_mb": "prune/next_iter_est_train_peak_mb",
                    "mem/est_infer_peak_mb": "prune/next_iter_est_infer_peak_mb"}


def pruner_options(section: Mapping[str, Any]) -> dict:
    """The pruner's part of a ``prune:`` section (``type`` and its arguments)."""
    return {k: copy.deepcopy(v) for k, v in section.items() if k not in SCHEDULE_KEYS}


def check_schedule(schedule: Any, total_iter: int, key: str = "prune.schedule") -> list[int]:
    """Strictly increasing iterations in [1, total_iter]."""
    if isinstance(schedule, (str, bytes)) or not isinstance(schedule, Sequence) or not schedule \
            or not all(is_int(i) for i in schedule):
        raise OptionError(f"{key}: expected a list of iterations like [40000, 80000], "
                          f"got {schedule!r}")
    if any(b <= a for a, b in zip(schedule, schedule[1:])) or schedule[0] < 1 \
            or schedule[-1] > total_iter:
        raise OptionError(f"{key}: iterations must increase and lie in [1, train.total_iter "
                          f"= {total_iter}], got {list(schedule)}")
    return list(schedule)


def step_target(target: Mapping[str, Any], step: int, steps: int, split: str,
                start_figure: Optional[float] = None) -> dict:
    """The target of prune event ``step`` (1-based) of ``steps``.

    Ratios remove fractions of the network *being pruned*, so each event gets the fraction of
    what is left that keeps the cumulative removal on the split; a peak-memory budget is
    interpolated from ``start_figure`` (MiB, the unpruned network's) to the final value.
    """
    out = dict(target)
    kind = parse_target(target).kind
    final = float(target[kind])
    if kind == "peak_memory_mb":
        ratio = step / steps
        out[kind] = start_figure * (final / start_figure) ** ratio if split == "geometric" \
            else start_figure + (final - start_figure) * ratio
        if step == steps:
            out[kind] = final
        return out
    kept = _kept_fraction(1.0 - final, step, steps, split)
    out[kind] = 1.0 - kept / _kept_fraction(1.0 - final, step - 1, steps, split)
    return out


def _kept_fraction(final_kept: float, step: int, steps: int, split: str) -> float:
    if split == "geometric":
        return final_kept ** (step / steps)
    return 1.0 - (1.0 - final_kept) * step / steps


@HOOKS.register_module()
class PruneHook(Hook):
    """Prunes the network at ``schedule``'s iterations with the pruner ``pruner`` describes."""

    priority = 60  # after logging and validation of the iteration, before its checkpoint

    def __init__(self, pruner: Mapping[str, Any], schedule: Sequence[int],
                 split: str = "geometric") -> None:
        if split not in SPLITS:
            raise OptionError(f"split: '{split}' is not one of {', '.join(SPLITS)}")
        self.pruner_cfg = copy.deepcopy(dict(pruner))
        self.schedule, self.split = list(schedule), split
        self.done: list[int] = []
        self.active: Any = None  # the pruner of the coming event, while it accumulates
        self.logged_next: Optional[int] = None  # iteration whose memory ends the last event
        self._start_mb: Optional[float] = None
        self._resumed_taylor: Optional[Mapping[str, Any]] = None

    # ---------------------------------------------------------------- schedule
    def _next_point(self) -> Optional[int]:
        return next((p for p in self.schedule if p not in self.done), None)

    def _window(self) -> int:
        """Iterations of gradients the importance needs before a point (0: none)."""
        importance = self.pruner_cfg.get("importance", "l1")
        if isinstance(importance, Mapping) and importance.get("type") == "taylor":
            return int(importance.get("iterations", 32))
        return 0

    def _pruner(self, runner, point: int) -> Any:
        """A fresh pruner whose target is this point's share of the reduction."""
        step = self.schedule.index(point) + 1
        target = self.pruner_cfg["target"]
        start = self._start_figure(runner) if "peak_memory_mb" in target else None
        cfg = {**self.pruner_cfg, "target": step_target(target, step, len(self.schedule),
                                                          self.split, start)}
        return build(PRUNERS, cfg, "prune")

    def _start_figure(self, runner) -> float:
        """The unpruned network's estimated peak (MiB) for the target (its shape and mode)."""
        if self._start_mb is None:
            self._start_mb = dense_peak_mb(runner.state.spec["network_g"],
                                           parse_target(self.pruner_cfg["target"]),
                                           runner.device)
        return self._start_mb

    # ---------------------------------------------------------------- stages
    def check(self, runner) -> None:
        """Refuse an unreachable final target before the run folder is touched."""
        if self._next_point() is None or not runner.dist.is_main:
            return
        final = build(PRUNERS, self.pruner_cfg, "prune")
        final.check(runner.state.model, runner.state.spec)

    def after_train_iter(self, runner, it, batch, record) -> None:
        if self.logged_next == it:
            self._log_next_iteration(runner, it, record)
        point = self._next_point()
        if point is None:
            return
        window = self._window()
        if window and point - window < it <= point:
            if self.active is None:
                self.active = self._pruner(runner, point)
            self.active.importance.accumulate(runner.state.model)
        if it == point:
            self._prune(runner, it, record)

    def _prune(self, runner, it: int, record: Mapping[str, float]) -> None:
        pruner = self.active or self._pruner(runner, it)
        result, measured = None, {}
        if runner.dist.is_main:
            measured["before"] = self._measure(runner)
            result = pruner.prune(runner.state.model, runner.state.spec)
        plan, spec = (result.plan, result.spec) if result is not None else (None, None)
        runner.replace_model(plan, spec)
        self.active, self.done = None, self.done + [it]
        self.logged_next = it + 1
        if result is not None:
            measured["after"] = self._measure(runner)
            self._log_event(runner, it, result.report, measured, record)

    def _measure(self, runner) -> Optional[float]:
        """The allocator-measured inference peak (MiB) at the target's shape, for an inference
        target (a training-step target is measured by the memory hook's next iteration)."""
        target = parse_target(self.pruner_cfg["target"])
        if target.mode != "inference" or target.input_shape is None:
            return None
        return measured_inference_peak(runner.state.model, target.input_shape,
                                       runner.device) / MB

    def _log_event(self, runner, it: int, report: Any, measured: Mapping[str, Optional[float]],
                   record: Mapping[str, float]) -> None:
        lines = report.format()
        if measured["after"] is not None:
            lines += (f"\n  measured inference peak at the target shape: "
                      f"{measured['before']:.2f} MiB -> {measured['after']:.2f} MiB")
        runner.logger.info(f"Prune event {len(self.done)}/{len(self.schedule)} at iter {it}:\n"
                           f"{lines}")
        after = report.after
        fields = {"prune/event": len(self.done), "prune/params": after.params,
                  "prune/macs": after.macs,
                  "prune/est_infer_peak_mb": after.est_infer_peak_bytes / MB,
                  "prune/est_train_peak_mb": after.est_train_peak_bytes / MB,
                  "prune/seconds": report.seconds,
                  **{f"prune/before_{k.split('/')[1]}": record[k] for k in NEXT_ITER_FIELDS
                     if k in record}}
        if measured["after"] is not None:
            fields["prune/measured_infer_peak_mb"] = measured["after"]
        runner.writer.write_jsonl(it, {**fields, "prune/target": report.target,
                                       "prune/widths": report.widths})
        runner.writer.write_tb(it, fields)
        runner.writer.write_text("prune/report", "```\n" + report.format(layers=10**6) + "\n```",
                                 it)

    def _log_next_iteration(self, runner, it: int, record: Mapping[str, float]) -> None:
        fields = {new: record[old] for old, new in NEXT_ITER_FIELDS.items() if old in record}
        self.logged_next = None
        if not fields:
            return
        runner.logger.info("  first iteration after pruning: " + ", ".join(
            f"{k.split('/')[1]} {v:.2f}" for k, v in fields.items()))
        runner.writer.write_jsonl(it, fields)
        runner.writer.write_tb(it, fields)

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict:
        state: dict[str, Any] = {"done": list(self.done), "logged_next": self.logged_next}
        if self.active is not None:
            importance = self.active.importance
            state["taylor"] = {"steps": importance.steps,
                               "sums": {k: v.clone() for k, v in importance.sums.items()}}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.done = list(state.get("done", []))
        self.logged_next = state.get("logged_next")
        self._resumed_taylor = state.get("taylor")

    def after_load_checkpoint(self, runner, checkpoint) -> None:
        """Rebuild the coming event's pruner with the gradients it had accumulated."""
        taylor, self._resumed_taylor = self._resumed_taylor, None
        if taylor is not None and self._next_point() is not None:
            self.active = self._pruner(runner, self._next_point())
            self.active.importance.steps = taylor["steps"]
            self.active.importance.sums = {k: v.to(runner.device) for k, v in
                                           taylor["sums"].items()}
