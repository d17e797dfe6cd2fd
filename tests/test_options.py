"""Option files: overrides, validation naming the dotted key, safe YAML errors."""
import pytest

from conftest import tiny_options, write_yaml
from llcv.errors import OptionError
from llcv.options import apply_override, load_options, validate_options


def test_overrides_parse_yaml_scalars_and_fill_defaults(tmp_path):
    path = write_yaml(tmp_path / "o.yml", tiny_options(tmp_path))
    opt = load_options(path, ["train.total_iter=40", "val.val_freq=20",
                              "train.optim_g.betas=[0.9, 0.99]", "logger.use_tb_logger=false",
                              "train.optim_g.lr=2e-4"])
    assert opt["train"]["total_iter"] == 40 and opt["val"]["val_freq"] == 20
    assert opt["train"]["optim_g"]["betas"] == [0.9, 0.99]
    assert opt["logger"]["use_tb_logger"] is False
    assert opt["train"]["optim_g"]["lr"] == pytest.approx(2e-4)
    assert opt["train"]["warmup_iter"] == -1 and opt["path"]["resume_state"] is None
    assert opt["datasets"]["train"]["num_worker_per_gpu"] == 0


@pytest.mark.parametrize("override, key", [
    ("train.no_such_key=1", "train.no_such_key"),
    ("network_g.widthz=[4,8]", "network_g.widthz"),
    ("train.total_iter=abc", "train.total_iter"),
    ("val.protocol=int8", "val.protocol"),
    ("datasets.train.gt_sise=64", "datasets.train.gt_sise"),
    ("train.optim_g.type=Adamm", "train.optim_g.type"),
    ("network_g.type=UNett", "network_g.type"),
    ("val.metrics.psnr.type=calc_psnr", "val.metrics.psnr.type"),
    ("logger.print_freq=true", "logger.print_freq"),
])
def test_bad_options_name_the_key(tmp_path, override, key):
    path = write_yaml(tmp_path / "o.yml", tiny_options(tmp_path))
    with pytest.raises(OptionError) as err:
        load_options(path, [override])
    assert str(err.value).startswith(key + ":")


def test_unknown_names_list_close_matches(tmp_path):
    path = write_yaml(tmp_path / "o.yml", tiny_options(tmp_path))
    with pytest.raises(OptionError, match="did you mean UNet"):
        load_options(path, ["network_g.type=UNett"])
    with pytest.raises(OptionError, match="did you mean 'train.total_iter'"):
        load_options(path, ["train.total_iters=3"])


def test_missing_required(tmp_path):
    opt = tiny_options(tmp_path)
    del opt["train"]["total_iter"]
    with pytest.raises(OptionError, match=r"^train\.total_iter: missing required"):
        validate_options(opt)
    opt = tiny_options(tmp_path)
    del opt["datasets"]["train"]["degradation"]
    with pytest.raises(OptionError, match=r"^datasets\.train\.degradation: missing required"):
        validate_options(opt)


def test_validation_never_mutates_input(tmp_path):
    opt = tiny_options(tmp_path)
    before = repr(opt)
    validate_options(opt)
    assert repr(opt) == before


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("name: x\ntrain:\n  total_iter: [1, 2\n  optim_g: {}\n")
    with pytest.raises(OptionError, match=r"bad\.yml:\d+:\d+: YAML syntax error"):
        load_options(str(path))


def test_override_into_scalar_is_refused():
    opt = {"train": {"total_iter": 3}}
    with pytest.raises(OptionError, match="train.total_iter"):
        apply_override(opt, "train.total_iter.x=1")
    with pytest.raises(OptionError, match="key.path=value"):
        apply_override(opt, "train.total_iter")


def test_debug_shortens_frequencies(tmp_path):
    path = write_yaml(tmp_path / "o.yml", tiny_options(tmp_path))
    opt = load_options(path, debug=True)
    assert opt["name"] == "debug_tiny" and opt["logger"]["print_freq"] == 1
    assert opt["val"]["val_freq"] == 8
