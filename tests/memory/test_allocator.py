"""Measured allocator peaks on CPU: exact on known allocation patterns, resident bytes, windows."""
import pytest
import torch
from torch import nn

from llcv.errors import OptionError
from llcv.memory.allocator import AllocatorPeakMeter, measure_peak, resident_bytes

MIB = 1 << 20


def pattern():
    """Peak 3 MiB above the start: 1 MiB, then 2 MiB while the first is alive."""
    a = torch.empty(MIB // 4)
    b = torch.empty(MIB // 2)
    del a, b
    c = torch.empty(MIB // 8)
    del c


@pytest.mark.parametrize("method", ["profiler", "tensors"])
def test_known_pattern_is_measured_exactly(method):
    meter = AllocatorPeakMeter("cpu", method)
    with meter.window(resident=12345):
        pattern()
    assert meter.peak_bytes == 12345 + 3 * MIB


@pytest.mark.parametrize("method", ["profiler", "tensors"])
def test_consecutive_windows_see_frees_of_earlier_windows(method):
    meter = AllocatorPeakMeter("cpu", method)
    with meter.window():
        kept = torch.empty(MIB // 4)
    assert meter.peak_bytes == MIB
    with meter.window(resident=MIB):  # kept is resident now; freeing it makes room
        del kept
        later = torch.empty(MIB // 8)
        del later
    assert meter.peak_bytes == MIB


def test_profiler_sees_kernel_buffers_the_tensor_tracker_misses():
    conv = nn.Conv2d(16, 16, 3, padding=1)
    x = torch.rand(1, 16, 64, 64)
    with torch.no_grad():
        conv(x)
        run = lambda: conv(x)  # noqa: E731
        allocator = measure_peak(run, "cpu", [conv, x], method="profiler")
        tensors = measure_peak(run, "cpu", [conv, x], method="tensors")
    output = 16 * 64 * 64 * 4
    assert tensors == resident_bytes(conv, x) + output
    assert allocator > tensors  # im2col columns or oneDNN reorder buffers


def test_stop_fields_and_disabled_meter():
    meter = AllocatorPeakMeter("cpu")
    meter.start(resident=2 * MIB)
    fields = meter.stop()
    assert fields == {"mem/alloc_peak_mb": 2.0}
    off = AllocatorPeakMeter("cpu", enabled=False)
    off.start()
    assert off.stop() == {} and off.peak_bytes is None


def test_does_not_interfere_with_a_running_profiler():
    meter = AllocatorPeakMeter("cpu")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        meter.start()
        torch.empty(16)
        assert meter.stop() == {}


def test_bad_method_is_refused():
    with pytest.raises(OptionError, match="method"):
        AllocatorPeakMeter("cpu", "rss")


def test_resident_bytes_counts_each_storage_once():
    model = nn.Linear(4, 3)  # 12 + 3 floats
    x = torch.empty(10)
    view = x[2:]
    assert resident_bytes(model, x, view, [x]) == (15 + 10) * 4
    model(torch.rand(2, 4)).sum().backward()
    optimizer = torch.optim.Adam(model.parameters())
    optimizer.step()
    # weights + gradients + exp_avg + exp_avg_sq + one 4-byte step per parameter
    assert resident_bytes(model, optimizer) == 4 * 15 * 4 + 2 * 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_peak_is_the_allocator_counter():
    device = torch.device("cuda")
    meter = AllocatorPeakMeter(device)
    base = torch.cuda.memory_allocated(device)
    with meter.window():
        a = torch.empty(MIB // 4, device=device)
        del a
    assert meter.peak_bytes == base + MIB
