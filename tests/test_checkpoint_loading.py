"""Weights files as the field writes them load into llcv networks: DataParallel's ``module.``
prefix, bare state_dicts, ``params`` / ``params_ema``; mismatches are named, and a file that
fits nothing (or holds no weights, like a BasicSR training state) is an error."""
import pytest
import torch

from llcv.errors import LLCVError, OptionError
from llcv.network import build_network, load_network, network_spec

NET = {"type": "UNet", "in_ch": 3, "widths": [4, 8], "blocks": [1, 1]}


def weights(seed):
    torch.manual_seed(seed)
    return build_network(network_spec(NET), "cpu").state_dict()


def same(model, state):
    return all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


@pytest.mark.parametrize("form", ["module_prefix", "bare", "params", "params_ema"])
def test_the_fields_file_forms_load_exactly(tmp_path, form):
    a, b = weights(1), weights(2)
    content = {"module_prefix": {f"module.{k}": v for k, v in a.items()}, "bare": a,
               "params": {"params": a}, "params_ema": {"params": b, "params_ema": a}}[form]
    path = str(tmp_path / "w.pth")
    torch.save(content, path)
    model, spec, report = load_network(path, network_g=NET)  # param_key auto
    assert same(model, a) and spec == network_spec(NET)
    assert report.startswith(f"loaded {len(a)}/{len(a)} tensors")
    if form == "params_ema":  # a named key picks that entry
        assert same(load_network(path, param_key="params", network_g=NET)[0], b)
    if form == "bare":  # BasicSR's param_key_g: ~
        assert same(load_network(path, param_key=None, network_g=NET)[0], a)


def test_mismatches_are_named_and_a_file_that_fits_nothing_is_an_error(tmp_path):
    wider = build_network(network_spec(dict(NET, widths=[6, 8])), "cpu").state_dict()
    path = str(tmp_path / "wider.pth")
    torch.save({"params": wider}, path)
    with pytest.raises(LLCVError, match=r"does not fit network_g \(size mismatch: "
                                        r"\['encoders\.0\.0\.weight \(6, 3, 3, 3\) vs "
                                        r"\(4, 3, 3, 3\)'.*; check network_g"):
        load_network(path, network_g=NET)
    _, _, report = load_network(path, network_g=NET, strict=False)
    assert "skipped (size mismatch): " in report and "encoders.0.0.weight" in report

    foreign = str(tmp_path / "foreign.pth")
    torch.save({"params": {"head.conv.weight": torch.zeros(1)}}, foreign)
    with pytest.raises(LLCVError, match=r"does not fit network_g .*unexpected: \['head.conv.weight'\]"):
        load_network(foreign, network_g=NET)
    with pytest.raises(LLCVError, match=r"no tensor of '.*foreign.pth' fits the network"):
        load_network(foreign, network_g=NET, strict=False)


def test_files_without_weights_say_what_they_hold(tmp_path):
    state = str(tmp_path / "basicsr.state")  # a BasicSR training state: no network weights
    torch.save({"epoch": 3, "iter": 1000, "optimizers": [{"state": {}, "param_groups": []}],
                "schedulers": [{"last_epoch": 1000}]}, state)
    with pytest.raises(LLCVError, match=r"holds no tensors under 'the top level'"):
        load_network(state, network_g=NET)
    path = str(tmp_path / "w.pth")
    torch.save({"params": weights(1)}, path)
    with pytest.raises(OptionError, match=r"has no 'params_ema'; it holds params"):
        load_network(path, param_key="params_ema", network_g=NET)
