"""Helpers for tests that run tools/train.py as a user does, in this process or in another."""
from __future__ import annotations

import os
import shutil
import sys

from conftest import ROOT, load_tool, tiny_options, write_yaml
from llcv.cli import run_cli

TRAIN = os.path.join(ROOT, "tools", "train.py")


def small_options(root, name: str = "tiny", total_iter: int = 4, **train) -> dict:
    """The tiny run of conftest: 4 iterations, checkpoints and validation every 2."""
    opt = tiny_options(root, total_iter=total_iter, **train)
    opt["name"] = name
    opt["val"]["val_freq"] = 2
    opt["logger"].update(save_checkpoint_freq=2, use_tb_logger=False, measure_allocator=False)
    opt["train"]["scheduler"]["T_max"] = 4
    return opt


def train_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    """tools/train.py with ``argv`` run in this process: (exit code, what it wrote to stderr)."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    try:
        run_cli(load_tool("train").main)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, *fragments: str) -> str:
    """A user error: exit 2, one line ``error: ...`` holding ``fragments``, no traceback."""
    lines = err.strip().splitlines()
    assert code == 2 and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def snapshot(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), to compare byte for byte."""
    out = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def copy_run(exp_dir: str, root) -> str:
    """A copy of run folder ``exp_dir`` under ``root/experiments`` (same name); returns it."""
    target = os.path.join(str(root), "experiments", os.path.basename(exp_dir))
    shutil.copytree(exp_dir, target)
    return target


def options_file(root, opt: dict) -> str:
    """``opt`` written as ``root/o.yml``."""
    return write_yaml(os.path.join(str(root), "o.yml"), opt)


def log_text(exp_dir: str) -> str:
    """All text logs of a run folder, oldest first."""
    logs = sorted(n for n in os.listdir(exp_dir) if n.endswith(".log"))
    return "".join(open(os.path.join(exp_dir, n), encoding="utf-8").read() for n in logs)
