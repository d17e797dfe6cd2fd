"""The tracker's allocation/free stream: order, registered storages, workspaces, regrowth."""
import torch

from llcv.memory.tracker import LiveStorageTracker, MemoryEvent

aten = torch.ops.aten


def matmul_workspace(func, args, kwargs, out):
    """A 100-byte transient workspace per matmul and a 64-byte 'cublas' one kept."""
    return (100, {"cublas": 64}) if func is aten.mm.default else (0, {})


def test_events_follow_the_allocations_in_order():
    tracker = LiveStorageTracker(record_events=True, workspace=matmul_workspace)
    w = torch.ones(4, 4)
    tracker.register(w, "weight", "w")
    with tracker:
        a = torch.ones(4, 4)  # serial 1
        b = a @ w  # 2, then the kept workspace (3) and a transient one (4)
        del a
        c = b @ w  # 5, a transient workspace (6); the kept one exists already
        x = torch.empty(0)  # 7: no bytes, no event
        x.resize_(8)  # grown from nothing: an allocation (8), no free
    del b, c  # after the step: not recorded
    e = MemoryEvent
    assert tracker.events == [
        e("alloc", 0, 64, "weight", "weight"), e("alloc", 1, 64, "forward"),
        e("alloc", 2, 64, "forward"), e("alloc", 3, 64, "forward", "persistent"),
        e("alloc", 4, 100, "forward", "workspace"), e("free", 4, 0, "forward", "workspace"),
        e("free", 1, 0, "forward"), e("alloc", 5, 64, "forward"),
        e("alloc", 6, 100, "forward", "workspace"), e("free", 6, 0, "forward", "workspace"),
        e("alloc", 8, 32, "forward")]
    assert tracker.step_start == 1 and tracker.infos[2].device == "cpu"
    assert tracker.peak == 64 * 3 + 32  # w, b, c and x: workspaces never count in the bytes


def test_no_events_unless_asked():
    tracker = LiveStorageTracker()
    with tracker:
        torch.ones(8)
    assert tracker.events is None and tracker.infos == {}
