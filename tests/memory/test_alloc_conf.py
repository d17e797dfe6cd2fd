"""PYTORCH_CUDA_ALLOC_CONF parsing: PyTorch's keys, checks and per-interval divisions."""
import pytest

from llcv.errors import OptionError
from llcv.memory.alloc_conf import AllocatorConfig, tokenize

MIB = 1 << 20


def test_defaults_and_environment_order():
    assert AllocatorConfig.from_env({}) == AllocatorConfig()
    default = AllocatorConfig()
    assert default.max_split_size is None and default.large_segment_size == 20 * MIB
    env = {"PYTORCH_ALLOC_CONF": "expandable_segments:True",
           "PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:64"}
    config = AllocatorConfig.from_env(env)  # the CUDA variable wins
    assert config.max_split_size == 64 * MIB and not config.expandable_segments
    assert AllocatorConfig.from_env({"PYTORCH_ALLOC_CONF": "expandable_segments:True"}) \
        .expandable_segments


def test_every_modelled_key():
    config = AllocatorConfig.parse(
        " max_split_size_mb:100, max_non_split_rounding_mb:30, garbage_collection_threshold:0.6,"
        "expandable_segments:True,per_process_memory_fraction:0.5,backend:native,"
        "release_lock_on_cudamalloc:True")
    assert config.max_split_size == 100 * MIB and config.max_non_split_rounding == 30 * MIB
    assert config.garbage_collection_threshold == 0.6 and config.expandable_segments
    assert config.memory_fraction == 0.5


def test_large_segment_size_is_read_first_and_bounds_the_others():
    config = AllocatorConfig.parse("max_non_split_rounding_mb:64,large_segment_size_mb:32")
    assert config.large_segment_size == 32 * MIB and config.max_non_split_rounding == 64 * MIB
    assert AllocatorConfig.parse("large_segment_size_mb:32").max_non_split_rounding == 32 * MIB
    with pytest.raises(OptionError, match="max_split_size_mb too small, must be >= 32"):
        AllocatorConfig.parse("max_split_size_mb:24,large_segment_size_mb:32")


def test_roundup_power2_divisions_per_interval():
    # boundaries in MiB: 64 -> interval 6 (and 0-5, before the first boundary), 256 -> 8,
    # 1024 -> 10, '>' -> 11..15; intervals 7 and 9 keep 0 (no rounding)
    config = AllocatorConfig.parse("roundup_power2_divisions:[64:8,256:4,1024:4,>:1]")
    assert config.roundup_power2_divisions == (8,) * 7 + (0, 4, 0, 4) + (1,) * 5
    assert config.divisions(100 * MIB) == 8 and config.divisions(300 * MIB) == 4
    assert config.divisions(512) == 8 and config.divisions(1 << 40) == 1
    assert AllocatorConfig.parse("roundup_power2_divisions:2").roundup_power2_divisions == \
        (2,) * 16


@pytest.mark.parametrize("text,message", [
    ("max_split_size_mb:10", "too small"),
    ("garbage_collection_threshold:1.5", r"in \(0.0, 1.0\)"),
    ("expandable_segments:yes", "True or False"),
    ("roundup_power2_divisions:3", "powers of 2"),
    ("roundup_power2_divisions:[48:2]", "intervals have to be powers of 2"),
    ("backend:cudaMallocAsync", "not modelled"),
    ("max_split_sise_mb:64", "unrecognized allocator option 'max_split_sise_mb'"),
    ("max_split_size_mb", "expected ':'"),
    ("max_split_size_mb:big", "expected a number"),
])
def test_bad_options_name_the_problem(text, message):
    with pytest.raises(OptionError, match=f"PYTORCH_CUDA_ALLOC_CONF: .*{message}"):
        AllocatorConfig.parse(text)


def test_tokenizer():
    assert tokenize(" a:1, b:[2: 3 ,>:4]") == ["a", ":", "1", ",", "b", ":", "[", "2", ":", "3",
                                                ",", ">", ":", "4", "]"]
