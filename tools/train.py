"""Train (and prune, validate, checkpoint) a network from a YAML option file.

    python tools/train.py -opt options/train_unet_demo.yml [--set train.total_iter=40 ...]
    torchrun --nproc_per_node=2 tools/train.py -opt FILE.yml --launcher pytorch
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-opt", required=True, help="path to the YAML option file")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override options, e.g. --set train.total_iter=40 val.val_freq=20")
    parser.add_argument("--auto_resume", action="store_true",
                        help="continue from the latest training state in experiments/<name>/")
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    parser.add_argument("--debug", action="store_true",
                        help="name debug_<name>, log every iter, validate/save every 8 iters")
    parser.add_argument("--local-rank", "--local_rank", type=int, default=None,
                        help=argparse.SUPPRESS)  # passed by torch.distributed.launch
    return parser.parse_args(argv)


def main() -> None:
    from llcv.engine.dist import close_dist
    from llcv.engine.runner import Runner
    from llcv.options import load_options

    args = parse_args()
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    opt = load_options(args.opt, args.set, debug=args.debug)
    try:
        Runner(opt, auto_resume=args.auto_resume, launcher=args.launcher).train()
    except BaseException as err:
        # The traceback's frames hold the runner and its DDP wrappers; freed only at exit,
        # after the process group, a wrapper's gloo threads can deadlock the interpreter.
        traceback.clear_frames(err.__traceback__)
        gc.collect()
        raise
    finally:
        close_dist()


if __name__ == "__main__":
    run_cli(main)
