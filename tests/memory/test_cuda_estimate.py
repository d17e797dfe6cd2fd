"""CUDA figures of the estimator: the traced step replayed through the allocator model.

Hand counts follow the allocator rules (see test_cuda_allocator.py); a CUDA target needs no GPU.
"""
import pytest
from torch import nn

from llcv.errors import OptionError
from llcv.memory import estimate_peak_memory
from llcv.memory.alloc_conf import AllocatorConfig
from llcv.memory.calibration import Calibration, WorkspaceRule
from llcv.memory.cuda_estimate import MemoryTrace, replay_step, replay_windows
from llcv.memory.tracker import MemoryEvent, StorageInfo

MIB = 1 << 20
WEIGHTS = 1024 + 512  # Conv2d(3, 8, 3): 864 B of weight -> 1024, 32 B of bias -> 512


def conv() -> nn.Module:
    return nn.Conv2d(3, 8, 3, padding=1)


def calibration(**workspace) -> Calibration:
    return Calibration("Test GPU", (8, 0), 80 << 30, 500 * MIB, 8 * MIB, workspace,
                       source="cal.json")


def test_inference_on_a_cuda_target_replays_the_allocator():
    # weights in a 2 MiB small segment; the 3 MiB input in a 20 MiB segment (17 MiB cached),
    # the 8 MiB output split off the cached 17 MiB: allocated = weights + 3 + 8 MiB
    est = estimate_peak_memory(conv(), (1, 3, 512, 512), device="cuda", allocator="",
                               calibration=False)
    assert est.total == est.allocated == WEIGHTS + 11 * MIB
    assert est.reserved == 22 * MIB and est.workspace == 0
    assert est.device_total is None and est.peak("reserved") == 22 * MIB
    assert est.peak("tensors") == est.total and est.peak("allocated") == est.allocated
    with pytest.raises(OptionError, match="tools/calibrate_memory.py"):
        est.peak("device")


def test_allocator_options_change_the_figures():
    # 12 MiB large segments: the input leaves 9 MiB, the 8 MiB output takes all of it (the
    # 1 MiB rest is not > 1 MiB, so no split): allocated counts the whole 9 MiB block
    est = estimate_peak_memory(conv(), (1, 3, 512, 512), device="cuda",
                               allocator="large_segment_size_mb:12", calibration=False)
    assert est.allocated == WEIGHTS + 12 * MIB and est.total == WEIGHTS + 11 * MIB
    assert est.reserved == 14 * MIB


def test_calibration_adds_workspaces_and_the_context(tmp_path):
    # a 1 MiB cuDNN forward workspace is a small-pool block next to the weights
    cal = calibration(conv_forward=WorkspaceRule(const=MIB))
    est = estimate_peak_memory(conv(), (1, 3, 512, 512), device="cuda", allocator="",
                               calibration=cal)
    assert est.allocated == WEIGHTS + 12 * MIB and est.reserved == 22 * MIB
    assert est.workspace == MIB and est.context == 500 * MIB
    assert est.peak("device") == est.device_total == 522 * MIB
    line = est.format().splitlines()[2]
    assert "tensors 11.00 -> allocated 12.00 (workspaces 1.00) -> reserved 22.00" in line
    assert "device total 522.00 (context 500.00, cal.json)" in line


def test_matmul_keeps_the_cublas_workspace():
    model = nn.Linear(64, 64)
    est = estimate_peak_memory(model, (4, 64), device="cuda", allocator="",
                               calibration=calibration())
    assert est.workspace == 8 * MIB  # kept from the first matmul, in the large pool
    assert est.reserved == 2 * MIB + 20 * MIB and est.allocated >= est.total + 8 * MIB


def test_training_leaves_host_step_counters_out_and_cpu_figures_alone():
    model = conv()
    cuda = estimate_peak_memory(model, (1, 3, 64, 64), "train", "Adam", device="cuda",
                                target_shape=(1, 8, 64, 64), allocator="", calibration=False)
    assert cuda.total - cuda.allocated == 2 * 512  # two `step` counters: CPU tensors on CUDA
    cpu = estimate_peak_memory(model, (1, 3, 64, 64), "train", "Adam",
                               target_shape=(1, 8, 64, 64))
    assert cpu.reserved is None and cpu.peak("reserved") == cpu.peak("device") == cpu.total
    assert "on the device" not in cpu.format()


def info(serial: int, kind: str = "") -> StorageInfo:
    return StorageInfo(serial, 0, "t", kind, kind=kind)


def test_replay_creates_optimizer_state_lazily_and_frees_gradients_each_step():
    # weight W 2 MiB, state S 2 MiB; a step: activation A 18 MiB, gradient G 2 MiB, A freed,
    # then a 2 MiB optimizer temporary T. First step: W [20 MiB seg 1], A takes the cached
    # 18 MiB whole, G opens seg 2, A freed, S (lazily) and T split seg 1's 18 MiB.
    # Next step: G freed (seg 2 is free again), A splits seg 2 (2 MiB rest), G takes the rest.
    # allocated = W + S + A + G = 24 MiB; reserved 40 MiB, stable after one steady step.
    e = MemoryEvent
    events = [e("alloc", 0, 2 * MIB, "weight", "weight"),
              e("alloc", 1, 2 * MIB, "optimizer_state", "optimizer_state"),
              e("alloc", 2, 18 * MIB, "forward"), e("alloc", 3, 2 * MIB, "backward"),
              e("free", 2, 0, "backward"), e("alloc", 4, 2 * MIB, "optimizer"),
              e("free", 4, 0, "optimizer")]
    kinds = {0: "weight", 1: "optimizer_state"}
    infos = {i: info(i, kinds.get(i, "")) for i in range(5)}
    trace = MemoryTrace(events, 2, infos, lambda i: False)
    assert replay_step(trace, AllocatorConfig()) == (24 * MIB, 40 * MIB)
    trace.host = lambda i: i.serial == 1  # the state on the host: not replayed
    assert replay_step(trace, AllocatorConfig()) == (22 * MIB, 40 * MIB)


def window_trace(*step: tuple) -> MemoryTrace:
    """A window: a 512 B weight and input registered, then ``step`` (op, serial, bytes)."""
    e = MemoryEvent
    events = [e("alloc", 0, 512, "weight", "weight"), e("alloc", 1, 512, "input", "input")]
    events += [e(op, serial, nbytes, "forward") for op, serial, nbytes in step]
    return MemoryTrace(events, 2, {i: info(i) for i in range(4)}, lambda i: False)


def test_windows_in_turn_can_hold_more_than_either_alone():
    # A: one 20 MiB output (a 20 MiB segment). B: two 12 MiB tensors at once (12 MiB segments
    # when alone). After A, B's first 12 MiB splits A's free 20 MiB segment and the second
    # needs a new 12 MiB one: 2 (small pool) + 20 + 12 = 34 MiB; then it is stable.
    a = window_trace(("alloc", 2, 20 * MIB), ("free", 2, 0))
    b = window_trace(("alloc", 2, 12 * MIB), ("alloc", 3, 12 * MIB), ("free", 2, 0),
                     ("free", 3, 0))
    config = AllocatorConfig()
    assert replay_windows([a], config) == 22 * MIB
    assert replay_windows([b], config) == 26 * MIB
    assert replay_windows([a, b], config) == 34 * MIB


def test_log_fields_of_a_cuda_run_carry_the_allocator_figures(monkeypatch):
    from llcv.memory import MemoryEstimateFields
    from llcv.memory.calibration import ENV_VAR

    monkeypatch.delenv(ENV_VAR, raising=False)
    fields = MemoryEstimateFields([1, 3, 64, 64], [1, 3, 64, 64], "SGD", device="cuda",
                                  train_target_shape=[1, 8, 64, 64], extra_train_bytes=MIB)
    figures = fields(conv())
    train = fields.estimates["train"]
    assert figures["mem/est_train_reserved_mb"] == (train.reserved + MIB) / MIB
    assert figures["mem/est_infer_alloc_mb"] == fields.estimates["inference"].allocated / MIB
    assert "mem/est_train_device_mb" not in figures  # no calibration: no device total
