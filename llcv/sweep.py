"""Budget sweeps: one network per peak-memory budget, trained, then tested, for a Pareto curve.

A sweep takes a base option file and budgets (MiB, for a mode — inference or a training step —
at an input shape). For the ``width`` method each point is the base network with every width
scaled by the largest multiplier whose estimated peak fits the budget
(:func:`llcv.pruners.width.largest_multiplier`, widths rounded to ``round_to``), trained from
scratch. For the pruner methods (``uniform``, ``magnitude``, ``memory_aware``) each point is the
base network trained with a ``prune:`` section whose target is the budget (see
:func:`prune_section`), pruned during training.
Each point is an option file ``<sweep>/options/<point>.yml`` and two commands — ``tools/train.py``
then ``tools/test.py`` — run here one after the other, or on a cluster as one SLURM array task
each. A point whose results exist is not rerun; an interrupted training resumes.
"""
from __future__ import annotations

import copy
import inspect
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from tqdm import tqdm

from llcv.engine.prune_hook import SCHEDULE_KEYS, pruner_options
from llcv.errors import LLCVError, OptionError
from llcv.network import build_network, network_spec
from llcv.options import read_yaml, validate_options
from llcv.pruners.targets import dense_peak_mb, parse_target
from llcv.pruners.width import largest_multiplier
from llcv.registry import PRUNERS, build, lookup
from llcv.serialization import save_yaml
from llcv.utils import MB

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRUNER_METHODS = {"uniform": "UniformPruner", "magnitude": "MagnitudePruner",
                  "memory_aware": "MemoryAwarePruner"}
METHODS = ("width", *PRUNER_METHODS)


@dataclass
class Point:
    """One network of a sweep and where its files go."""

    method: str
    budget_mb: float
    name: str
    multiplier: float
    network_g: dict
    # the width's estimate; a pruner point's target, or the dense network's estimate where
    # that is lower (nothing is pruned then)
    est_peak_mb: float
    option_file: str
    exp_dir: str
    result_dir: str
    prune: dict | None = None  # the prune section of a pruner point

    @property
    def label(self) -> str:
        if self.prune is not None:
            return f"{self.budget_mb:g}MiB"
        return f"{self.budget_mb:g}MiB x{self.multiplier:.2f}"


def default_schedule(total_iter: int) -> list[int]:
    """Prune points at 1/4, 3/8 and 1/2 of the run, at least iterations 1, 2 and 3 (fine-tuning
    takes the second half; a run under 3 iterations keeps the points inside it)."""
    n = total_iter
    return sorted({p for p in (max(n // 4, 1), max(3 * n // 8, 2), max(n // 2, 3)) if p <= n})


def prune_section(template: Mapping[str, Any] | None, pruner: str, target: Mapping[str, Any],
                  schedule: Sequence[int]) -> dict:
    """A ``prune:`` section for ``pruner`` toward ``target`` at ``schedule``: the ``template``'s
    other settings (split, importance, round_to, ...) where ``pruner`` takes them (another
    pruner's own keys, e.g. MemoryAwarePruner's ``compactors``, are dropped); only
    ``MemoryAwarePruner`` keeps the template's importance, the others rank by L1 as published."""
    accepted = inspect.signature(lookup(PRUNERS, pruner, "prune.type")).parameters
    section = {k: copy.deepcopy(v) for k, v in dict(template or {}).items()
               if k in accepted or k in ("type", *SCHEDULE_KEYS)}
    section.update(type=pruner, schedule=list(schedule), target=copy.deepcopy(dict(target)))
    if pruner != "MemoryAwarePruner" and "importance" in accepted:
        section["importance"] = "l1"
    return section


# ---------------------------------------------------------------------- plan
def plan_points(base: Mapping[str, Any], budgets: Sequence[float], methods: Sequence[str],
                sweep_dir: str, input_shape: Sequence[int], mode: str, device: str,
                round_to: int = 8, max_multiplier: float = 4.0,
                progress: bool = True) -> list[Point]:
    """The points of a sweep over ``budgets`` for each of ``methods`` (validated options)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise OptionError(f"--methods: '{unknown[0]}' is not one of {', '.join(METHODS)}")
    points, dense_mb = [], None
    bar = tqdm(total=len(methods) * len(budgets), desc="planning", unit="point",
               disable=not progress, leave=False, dynamic_ncols=True)
    for method in methods:
        for budget in budgets:
            name = f"{base['name']}_{method}_{budget:g}mb"
            files = (os.path.join(sweep_dir, "options", f"{name}.yml"),
                     os.path.join(base["path"]["experiments_root"], name),
                     os.path.join(sweep_dir, "results", name))
            if method == "width":
                choice = largest_multiplier(base["network_g"], budget, input_shape, mode,
                                            round_to, high=max_multiplier, device=device,
                                            optimizer=base["train"]["optim_g"])
                points.append(Point(method, budget, name, choice.factor, choice.network_g,
                                    choice.peak_bytes / MB, *files))
            else:
                section = _feasible_prune_section(base, method, budget, input_shape, mode,
                                                  device, round_to)
                if dense_mb is None:  # a budget above it leaves the network as it is
                    dense_mb = dense_peak_mb(base["network_g"], parse_target(section["target"]))
                points.append(Point(method, budget, name, 1.0, dict(base["network_g"]),
                                    min(budget, dense_mb), *files, prune=section))
            bar.update(1)
    bar.close()
    return points


def _feasible_prune_section(base: Mapping[str, Any], method: str, budget: float,
                            input_shape: Sequence[int], mode: str, device: str,
                            round_to: int) -> dict:
    """The pruner point's prune section (the base's own settings and schedule where it has
    one, else ``round_to``), refused here when the dense network cannot reach the budget."""
    template = base.get("prune") or {}
    schedule = template.get("schedule") or default_schedule(base["train"]["total_iter"])
    target = {"peak_memory_mb": budget, "input_shape": list(input_shape), "mode": mode,
              "device": device}
    if mode == "train":  # a step with the run's optimizer, as the width method estimates it
        target["optimizer"] = copy.deepcopy(base["train"]["optim_g"])
    section = prune_section(template, PRUNER_METHODS[method], target, schedule)
    section.setdefault("round_to", round_to)
    spec = network_spec(base["network_g"])
    pruner = build(PRUNERS, pruner_options(section), f"--methods {method}")
    pruner.check(build_network(spec, "meta"), spec)  # widths and estimates: no weights
    return section


def point_options(raw: Mapping[str, Any], point: Point) -> dict:
    """The base option file's content (after overrides) renamed, with the point's network and,
    for a pruner point, its prune section (a width point trains without pruning)."""
    opt = {**copy.deepcopy(dict(raw)), "name": point.name, "network_g": point.network_g}
    opt.pop("prune", None)
    if point.prune is not None:
        opt["prune"] = copy.deepcopy(point.prune)
    return opt


def commands(point: Point, sweep_dir: str, python: str = sys.executable,
             test_args: Sequence[str] = ()) -> list[list[str]]:
    """Train (resuming when interrupted), then test the point into ``<sweep>/results``."""
    train = [python, os.path.join(ROOT, "tools", "train.py"), "-opt", point.option_file,
             "--auto_resume"]
    test = [python, os.path.join(ROOT, "tools", "test.py"), "-opt", point.option_file,
            "--results-root", os.path.join(sweep_dir, "results"), "--method", point.method,
            "--label", point.label, "--no-progress", *test_args]
    return [train, test]


def status(point: Point, total_iter: int) -> str:
    """``done`` (results written), ``trained`` (final state saved) or ``todo``."""
    if os.path.isfile(os.path.join(point.result_dir, "metrics.json")):
        return "done"
    if os.path.isfile(os.path.join(point.exp_dir, "training_states", f"{total_iter}.state")):
        return "trained"
    return "todo"


def format_plan(points: Sequence[Point], total_iter: int) -> str:
    """A table of the points: method, budget, multiplier, widths, estimate, status, name."""
    rows = [("method", "budget MiB", "multiplier", "network", "est. peak MiB", "status", "name")]
    for p in points:
        widths = {k: v for k, v in p.network_g.items() if k != "type"}
        rows.append((p.method, f"{p.budget_mb:g}",
                     "-" if p.prune is not None else f"{p.multiplier:.3f}",
                     f"{p.network_g['type']} {json.dumps(widths)}", f"{p.est_peak_mb:.2f}",
                     status(p, total_iter), p.name))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# ---------------------------------------------------------------------- files
def write_plan(points: Sequence[Point], raw: Mapping[str, Any], sweep_dir: str,
               settings: Mapping[str, Any]) -> str:
    """Write each point's option file and ``plan.json``; a point that exists with another
    network is an error (its run would not resume)."""
    os.makedirs(os.path.join(sweep_dir, "options"), exist_ok=True)
    for p in points:
        opt = point_options(raw, p)
        validate_options(opt)
        if os.path.isfile(p.option_file):
            planned = read_yaml(p.option_file)
            was = (planned["network_g"], planned.get("prune"))
            if was != (p.network_g, p.prune):
                raise LLCVError(f"{p.option_file}: this point was planned with network_g "
                                f"{was[0]} and prune {was[1]}, now {p.network_g} and {p.prune}; "
                                f"use another --name or remove {sweep_dir} and {p.exp_dir}")
        save_yaml(opt, p.option_file)
    path = os.path.join(sweep_dir, "plan.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({**settings, "points": [asdict(p) for p in points]}, f, indent=2)
    return path


def run_points(points: Sequence[Point], sweep_dir: str, total_iter: int,
               test_args: Sequence[str] = (), progress: bool = True) -> list[str]:
    """Run the unfinished points one after the other (each step's output in
    ``<sweep>/logs/<point>.log``); returns the names run. A failing step stops the sweep."""
    todo = [p for p in points if status(p, total_iter) != "done"]
    os.makedirs(os.path.join(sweep_dir, "logs"), exist_ok=True)
    bar = tqdm(todo, desc="sweep", unit="point", disable=not progress, dynamic_ncols=True)
    for p in bar:
        bar.set_postfix_str(p.name)
        train, test = commands(p, sweep_dir, test_args=test_args)
        steps = [test] if status(p, total_iter) == "trained" else [train, test]
        log = os.path.join(sweep_dir, "logs", f"{p.name}.log")
        for cmd in steps:
            _run_step(cmd, log, p.name)
    bar.close()
    return [p.name for p in todo]


def _run_step(cmd: Sequence[str], log: str, name: str) -> None:
    """Run one command, appending its output to ``log``; a failure names the point and log."""
    start = time.perf_counter()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=os.getcwd()).returncode
        f.write(f"# exit {code} after {time.perf_counter() - start:.1f} s\n")
    if code != 0:
        with open(log, encoding="utf-8") as f:
            tail = [line.rstrip() for line in f if line.strip()][-3:-1]
        raise LLCVError(f"sweep point {name}: `{os.path.basename(cmd[1])}` exited with {code} "
                        f"({' | '.join(tail)[-300:]}); see {log}; rerun the sweep to resume")


def slurm_script(points: Sequence[Point], sweep_dir: str, total_iter: int, gpus: int = 1,
                 time_limit: str = "1-00:00:00", sbatch_args: Sequence[str] = (),
                 test_args: Sequence[str] = ()) -> str:
    """A ``sbatch --array`` job: task ``i`` trains the ``i``-th unfinished point with torchrun on
    ``gpus`` GPUs of one node (resuming if requeued), then tests it."""
    todo = [p for p in points if status(p, total_iter) != "done"]
    if not todo:
        raise LLCVError(f"{sweep_dir}: every point has results; nothing to submit")
    q = shlex.quote
    header = [f"--job-name={os.path.basename(os.path.normpath(sweep_dir))}",
              f"--array=0-{len(todo) - 1}", "--nodes=1", "--ntasks-per-node=1",
              f"--gpus-per-node={gpus}", f"--time={time_limit}",
              f"--output={os.path.join(sweep_dir, 'logs', '%x_%A_%a.out')}", *sbatch_args]
    test = [q(a) for a in test_args]
    return "\n".join([
        "#!/bin/bash", *(f"#SBATCH {h}" for h in header),
        "# One task per sweep point: torchrun trains it (resuming), then tools/test.py tests it.",
        "set -euo pipefail", f"cd {q(os.getcwd())}",
        'PYTHON=${PYTHON:-python}', 'TORCHRUN=${TORCHRUN:-torchrun}',
        "OPTS=(" + " ".join(q(p.option_file) for p in todo) + ")",
        "METHODS=(" + " ".join(q(p.method) for p in todo) + ")",
        "LABELS=(" + " ".join(q(p.label) for p in todo) + ")",
        'i=${SLURM_ARRAY_TASK_ID:?run through sbatch --array}',
        f'$TORCHRUN --standalone --nproc_per_node={gpus} '
        f'{q(os.path.join(ROOT, "tools", "train.py"))} -opt "${{OPTS[$i]}}" --launcher pytorch '
        f'--auto_resume',
        f'"$PYTHON" {q(os.path.join(ROOT, "tools", "test.py"))} -opt "${{OPTS[$i]}}" '
        f'--results-root {q(os.path.join(sweep_dir, "results"))} --method "${{METHODS[$i]}}" '
        f'--label "${{LABELS[$i]}}" --no-progress {" ".join(test)}'.rstrip(), ""])
