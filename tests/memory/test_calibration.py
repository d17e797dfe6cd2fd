"""Memory calibration files: round trip, validation naming file and key, lookup, cuBLAS sizes."""
import json

import pytest

from llcv.errors import OptionError
from llcv.memory.calibration import (ENV_VAR, Calibration, WorkspaceRule, calibration_from_dict,
                                     cublas_workspace_bytes, load_calibration,
                                     resolve_calibration)

MIB = 1 << 20


def sample() -> Calibration:
    return Calibration("NVIDIA H200", (9, 0), 150 << 30, 520 * MIB, 32 * MIB,
                       {"conv_forward": WorkspaceRule(1024, 0.25)},
                       {"torch": "2.13.0", "cudnn_benchmark": False})


def test_round_trip(tmp_path):
    path = tmp_path / "cal.json"
    sample().save(str(path))
    doc = json.loads(path.read_text())
    assert doc["format"] == "llcv-memory-calibration" and doc["version"] == 1
    assert doc["device"] == {"name": "NVIDIA H200", "capability": [9, 0],
                             "total_bytes": 150 << 30}
    loaded = load_calibration(str(path))
    assert loaded == Calibration(**{**sample().__dict__, "source": str(path)})
    assert loaded.rule("conv_forward").bytes(4096) == 1024 + 1024
    assert loaded.rule("conv_backward") == WorkspaceRule()  # not measured: no workspace


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.update(format="other"), "not an llcv memory calibration"),
    (lambda d: d.update(version=7), "version 7 is not supported"),
    (lambda d: d.pop("context_bytes"), "missing 'context_bytes'"),
    (lambda d: d.update(context_bytes=-1), r"cal.json.context_bytes: expected a non-negative"),
    (lambda d: d["device"].update(capability=[9]), r"device.capability: expected \[major, minor\]"),
    (lambda d: d["device"].pop("name"), r"cal.json.device: missing 'name'"),
    (lambda d: d.update(workspace={"matmul": {}}), "unknown op family 'matmul'"),
    (lambda d: d["workspace"]["conv_forward"].update(ratio="x"),
     r"workspace.conv_forward.ratio: expected a non-negative"),
])
def test_validation_names_the_key(edit, message):
    doc = sample().to_dict()
    edit(doc)
    with pytest.raises(OptionError, match=message):
        calibration_from_dict(doc, "cal.json")


def test_unreadable_files(tmp_path):
    with pytest.raises(OptionError, match="cannot read"):
        load_calibration(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(OptionError, match="not valid JSON"):
        load_calibration(str(bad))


def test_resolution_from_argument_or_environment(tmp_path):
    path = tmp_path / "cal.json"
    sample().save(str(path))
    assert resolve_calibration(None, {}) is None
    assert resolve_calibration(None, {ENV_VAR: str(path)}).device_name == "NVIDIA H200"
    assert resolve_calibration(str(path), {}).source == str(path)
    assert resolve_calibration(False, {ENV_VAR: str(path)}) is None
    assert resolve_calibration(sample()) == sample()


def test_cublas_workspace_follows_pytorch():
    assert cublas_workspace_bytes((9, 0), {}) == 32 * MIB  # Hopper
    assert cublas_workspace_bytes((8, 0), {}) == 8 * MIB + 128 * 1024  # ":4096:2:16:8"
    assert cublas_workspace_bytes(None, {}) == 8 * MIB + 128 * 1024
    assert cublas_workspace_bytes((9, 0), {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}) == 32 * MIB
    assert cublas_workspace_bytes(None, {"CUBLAS_WORKSPACE_CONFIG": ":16:8"}) == 128 * 1024
