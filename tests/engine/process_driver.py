"""Runs of tools/train.py as separate processes, forked from this one (imports paid once).

    python process_driver.py PLAN.json

``PLAN.json`` maps scenario names to their arguments; the report (JSON on stdout) maps them to
their outcomes:

- ``race {options}``: two runs of one option file started at once; when one has ended and the
  other logged an iteration, the other gets SIGTERM. Exit codes and stderr of both.
- ``kills {options, kills, seed}``: an uninterrupted run named ``straight``, then the run of
  the option file killed with SIGKILL ``kills`` times — every other kill at a random moment (in
  start-up, or a random time after a new checkpoint), the others as soon as a checkpoint's
  temporary file exists (inside a write) — and resumed with ``--auto_resume`` each time, then
  left to finish. Kills made, how many left a ``.tmp_*`` file.
- ``disk_full {options, limit}``: a run whose file-size limit (``ulimit -f``) is ``limit``
  bytes, then ``--auto_resume`` without the limit. Exit codes and stderr of both.
"""
from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import resource
import signal
import sys
import time
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

torch.set_num_threads(1)

from llcv.cli import run_cli  # noqa: E402
from llcv.data.builtin_images import load_builtin_uint8  # noqa: E402
from llcv.engine.hooks import Hook  # noqa: E402
from llcv.options import load_options  # noqa: E402
from llcv.registry import HOOKS  # noqa: E402

SPEC = importlib.util.spec_from_file_location("train_tool", os.path.join(ROOT, "tools", "train.py"))
TRAIN = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(TRAIN)


@HOOKS.register_module()
class GrowingState(Hook):
    """Adds ``mb`` MiB to the training states from iteration ``from_iter`` on."""

    def __init__(self, from_iter: int, mb: float) -> None:
        self.from_iter, self.mb = from_iter, mb

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint["iter"] >= self.from_iter:
            checkpoint["ballast"] = torch.zeros(int(self.mb * 2**20) // 4)


def spawn(argv: list[str], stderr: str | None = None, file_limit: int | None = None) -> int:
    """Fork a child running tools/train.py with ``argv``; stdout is discarded, stderr goes to
    the file ``stderr`` (else discarded)."""
    sys.stdout.flush()
    pid = os.fork()
    if pid:
        return pid
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.dup2(os.open(stderr or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    if file_limit is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, resource.RLIM_INFINITY))
    sys.argv = ["train.py", *argv]
    code = 0
    try:
        run_cli(TRAIN.main)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - a child must never return into the driver
        import traceback

        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


def wait(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def exp_dir_of(options: str) -> str:
    opt = load_options(options)
    return os.path.join(opt["path"]["experiments_root"], opt["name"])


def err_files(options: str, scenario: str) -> list[str]:
    """Where two children of ``scenario`` write their stderr: beside the option file."""
    return [os.path.join(os.path.dirname(options), f"{scenario}_{i}.err") for i in range(2)]


def race(options: str) -> dict:
    errs = err_files(options, "race")
    pids = [spawn(["-opt", options], errs[i]) for i in range(2)]
    ended, status = os.wait()
    other = pids[1 - pids.index(ended)]
    metrics = os.path.join(exp_dir_of(options), "metrics.jsonl")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (os.path.exists(metrics) and
                                               os.path.getsize(metrics)):
        time.sleep(0.02)  # the one that trains has logged an iteration: its handler is set
    os.kill(other, signal.SIGTERM)
    codes = {ended: os.waitstatus_to_exitcode(status), other: wait(other)}
    return {"codes": [codes[p] for p in pids], "stderr": [open(e).read() for e in errs],
            "first_ended": pids.index(ended)}


def temp_files(exp_dir: str, subs: tuple[str, ...] = ("models", "training_states")) -> list[str]:
    """The ``.tmp_*`` files in the checkpoint folders ``subs`` of ``exp_dir``."""
    found = []
    for sub in subs:
        try:
            names = os.listdir(os.path.join(exp_dir, sub))
        except FileNotFoundError:  # not made yet, or being archived
            continue
        found += [os.path.join(sub, n) for n in names if n.startswith(".tmp_")]
    return found


def latest_iter(exp_dir: str) -> int:
    """The iteration of the newest training state in ``exp_dir`` (0 when none)."""
    try:
        names = os.listdir(os.path.join(exp_dir, "training_states"))
    except FileNotFoundError:
        return 0
    return max([int(n[:-len(".state")]) for n in names if re.fullmatch(r"\d+\.state", n)] or [0])


def run_until(pid: int, done: Callable[[], bool], timeout: float = 120.0) -> int | None:
    """Poll until ``done()``; the child's exit code if it ended first, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        ended, status = os.waitpid(pid, os.WNOHANG)
        if ended:
            return os.waitstatus_to_exitcode(status)
    return None


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def kill_at_random(pid: int, exp_dir: str, every: int, rng: random.Random) -> int | None:
    """SIGKILL ``pid`` at a random moment: in its start-up, or a random time after its first
    or second new checkpoint (so each kill lets the run progress a little, never to its end)."""
    start, new = latest_iter(exp_dir), rng.randint(0, 2)
    until = time.monotonic() + rng.uniform(0.0, 0.5)
    ended = run_until(pid, (lambda: time.monotonic() > until) if new == 0 else
                      (lambda: latest_iter(exp_dir) >= start + new * every))
    if ended is None:
        time.sleep(rng.uniform(0.0, 0.03) if new else 0.0)
        kill(pid)
    return ended


def kill_inside_write(pid: int, exp_dir: str, sub: str) -> int | None:
    """SIGKILL ``pid`` as soon as it writes a checkpoint file into ``sub`` (a weights file or
    the link to the latest in ``models``, a training state in ``training_states``)."""
    ended = run_until(pid, lambda: bool(temp_files(exp_dir, (sub,))))
    if ended is None:
        kill(pid)
    return ended


def kills(options: str, kills: int, seed: int) -> dict:
    exp_dir, every = exp_dir_of(options), load_options(options)["logger"]["save_checkpoint_freq"]
    codes = [wait(spawn(["-opt", options, "--set", "name=straight"]))]
    rng, made, left_temp, ended = random.Random(seed), 0, 0, None
    while made < kills and ended is None:
        pid = spawn(["-opt", options, "--auto_resume"])
        sub = ("models", "training_states")[made // 2 % 2]
        ended = kill_inside_write(pid, exp_dir, sub) if made % 2 else \
            kill_at_random(pid, exp_dir, every, rng)
        if ended is None:
            made += 1
            left_temp += bool(temp_files(exp_dir))
    codes.append(ended if ended is not None else wait(spawn(["-opt", options, "--auto_resume"])))
    return {"kills": made, "left_temp": left_temp, "codes": codes, "run": exp_dir,
            "straight": os.path.join(os.path.dirname(exp_dir), "straight")}


def disk_full(options: str, limit: int) -> dict:
    errs, exp_dir = err_files(options, "disk_full"), exp_dir_of(options)
    codes = [wait(spawn(["-opt", options], errs[0], file_limit=limit))]
    left = {sub: sorted(os.listdir(os.path.join(exp_dir, sub)))
            for sub in ("models", "training_states")}
    models = os.path.join(exp_dir, "models")
    latest = {n: os.path.samefile(os.path.join(models, "net_g_latest.pth"),
                                  os.path.join(models, n)) for n in left["models"]}
    codes.append(wait(spawn(["-opt", options, "--auto_resume"], errs[1])))
    return {"codes": codes, "stderr": [open(e).read() for e in errs], "left": left,
            "latest_is": [n for n, same in latest.items() if same and n != "net_g_latest.pth"]}


SCENARIOS = {"race": race, "kills": kills, "disk_full": disk_full}

if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        plan = json.load(f)
    import torch.utils.tensorboard  # noqa: F401 - imported once here, not in every child

    for args in plan.values():  # imports, optimizer code and photos: once, for every child
        for section in load_options(args["options"])["datasets"].values():
            for name in section.get("builtin_images") or ():
                load_builtin_uint8(name)
    report = {}
    for name, args in plan.items():
        start = time.monotonic()
        report[name] = {**SCENARIOS[name](**args), "seconds": time.monotonic() - start}
    print(json.dumps(report))
