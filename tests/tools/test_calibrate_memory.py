"""tools/calibrate_memory.py on CPU: a clear refusal, the envelope fit, the convolutions used."""
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, load_tool
from llcv.errors import LLCVError
from llcv.memory.calibration import WorkspaceRule


@pytest.fixture(scope="module")
def tool():
    return load_tool("calibrate_memory")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_refuses_without_cuda(tool, tmp_path):
    out = tmp_path / "cal.json"
    with pytest.raises(LLCVError, match="no CUDA device here .* run this on the machine"):
        tool.main(["--out", str(out)])
    assert not out.exists()
    done = subprocess.run([sys.executable, "tools/calibrate_memory.py", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and last.startswith("error: calibrate_memory: no CUDA"), \
        done.stderr


def test_envelope_fit(tool):
    # workspaces of 1000 and 5000 bytes on 1000- and 2000-byte ops: const 1000, and the
    # largest excess per byte is (5000 - 1000) / 2000 = 2
    assert tool.fit_rule([(1000, 1000), (2000, 5000)]) == WorkspaceRule(1000, 2.0)
    assert tool.fit_rule([(4096, 0), (8192, 0)]) == WorkspaceRule(0, 0.0)
    assert tool.fit_rule([]) == WorkspaceRule()


def test_reference_convolutions(tool):
    specs = tool.conv_specs(torch.device("cpu"))
    # DnCNN's first layer (16 filters of 3 channels) at both reference shapes
    assert ((1, 3, 256, 256), (16, 3, 3, 3), True, (1, 1), (1, 1), (1, 1), 1) in specs
    assert ((2, 3, 512, 512), (16, 3, 3, 3), True, (1, 1), (1, 1), (1, 1), 1) in specs
    assert len(specs) == len(set(specs)) > 10
