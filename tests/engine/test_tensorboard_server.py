"""A real `tensorboard --logdir` on a finished run serves its scalars through its HTTP data API."""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import tiny_options
from llcv.engine.dist import free_port
from llcv.engine.runner import Runner
from llcv.options import validate_options


def get_json(base: str, route: str, **query):
    url = f"{base}{route}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` until it returns a truthy value (errors count as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"tensorboard did not {what} within {timeout} s")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    runner = Runner(validate_options(tiny_options(tmp_path_factory.mktemp("tb"))))
    runner.train()
    return runner.exp_dir


@pytest.fixture(scope="module")
def server(run_dir):
    exe = shutil.which("tensorboard", path=os.path.dirname(sys.executable)) or \
        shutil.which("tensorboard")
    assert exe, "the tensorboard command is installed with llcv"
    port = free_port()
    proc = subprocess.Popen([exe, "--logdir", run_dir, "--host", "127.0.0.1", "--port", str(port),
                             "--load_fast=false", "--reload_interval", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: proc.poll() is None and get_json(base, "/data/runs"), 60, "answer")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode is not None


def test_scalars_read_back_through_the_http_api(server, run_dir):
    expected_points = {"mem/rss_mb": [1, 2, 3, 4, 5, 6], "mem/rss_peak_mb": [1, 2, 3, 4, 5, 6],
                       "mem/alloc_peak_mb": [1, 2, 3, 4, 6],  # CPU: on its schedule
                       "mem/est_train_peak_mb": [1, 2, 3, 4, 5, 6],
                       "mem/est_infer_peak_mb": [1, 2, 3, 4, 5, 6],
                       "train/l_pix": [2, 4, 6], "train/lr": [2, 4, 6],
                       "val/psnr": [3, 6], "val/ssim": [3, 6], "val/lq_psnr": [3],
                       "time/iter_s": [2, 4, 6], "time/val_s": [3, 6]}

    def loaded():
        tags = get_json(server, "/data/plugin/scalars/tags").get("tb", {})
        return tags if set(expected_points) <= set(tags) else None

    tags = wait_for(loaded, 30, "load the run's scalars")
    assert {t.split("/")[0] for t in tags} == {"mem", "train", "val", "time"}
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        logged = [json.loads(line) for line in f]
    for tag, steps in expected_points.items():
        points = get_json(server, "/data/plugin/scalars/scalars", run="tb", tag=tag)
        assert [p[1] for p in points] == steps, tag
        by_step = {r["iter"]: r[tag] for r in logged if tag in r}
        for _, step, value in points:
            if step in by_step:  # JSONL has mem/ fields at print_freq only
                assert value == pytest.approx(by_step[step], rel=1e-6), (tag, step)


def test_options_and_summary_are_served_as_text(server):
    tags = wait_for(lambda: get_json(server, "/data/plugin/text/tags").get("tb"), 30, "list texts")
    assert {"options/text_summary", "summary/text_summary"} <= set(tags)
    options = get_json(server, "/data/plugin/text/text", run="tb", tag="options/text_summary")
    assert "network_g:" in options[0]["text"] and "UNet" in options[0]["text"]
    summary = get_json(server, "/data/plugin/text/text", run="tb", tag="summary/text_summary")
    assert "best val/psnr" in summary[0]["text"] and "tools/test.py -opt" in summary[0]["text"]


def test_memory_chart_layout_is_served(server):
    layout = get_json(server, "/data/plugin/custom_scalars/layout")
    charts = {c["title"]: c["multiline"]["tag"] for cat in layout["category"] for c in cat["chart"]}
    measured_vs_estimated = next(tags for title, tags in charts.items() if "measured" in title)
    assert {"mem/alloc_peak_mb", "mem/est_train_peak_mb"} <= set(measured_vs_estimated)
