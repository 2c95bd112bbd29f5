"""FID InceptionV3: the official state-dict layout and torchvision's shapes (on PyTorch's meta
device: no weights, no arithmetic), each block's pooling and units on hand-worked inputs, feature
layers, strict loading, and ONNX parity on real photos."""

import pickle
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from skimage import data

from lookalike.models import fid_weights
from lookalike.models import inception_fid as inc
from lookalike.models.fid_preprocess import fid_preprocess

# A few keys of pt_inception-2015-12-05-6726825d.pth with their shapes, written from torchvision's
# Inception3(num_classes=1008, aux_logits=False) definition.
OFFICIAL_KEYS = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.weight": (32,),
    "Conv2d_1a_3x3.bn.bias": (32,),
    "Conv2d_1a_3x3.bn.running_mean": (32,),
    "Conv2d_1a_3x3.bn.running_var": (32,),
    "Conv2d_1a_3x3.bn.num_batches_tracked": (),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
    "Mixed_5b.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch_pool.conv.weight": (64, 288, 1, 1),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch3x3dbl_1.conv.weight": (448, 2048, 1, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}

# torchvision documents 27,161,264 parameters for Inception3 (1000 classes, with AuxLogits).
# AuxLogits holds 128*768 + 2*128 + 768*128*5*5 + 2*768 + 768*1000 + 1000 = 3,326,696 of them,
# and 1008 classes add 8*2048 + 8 = 16,392 to fc.
OFFICIAL_PARAMETER_COUNT = 27_161_264 - 3_326_696 + 16_392


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Run torch single-threaded here: on a busy shared CPU, oversubscribed threads made these
    tests several times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photos():
    """Two real photos as the (2, 3, 299, 299) network input."""
    return torch.from_numpy(np.stack([fid_preprocess(data.chelsea()), fid_preprocess(data.coffee())]))


@pytest.fixture(scope="module")
def net():
    """A random network with non-trivial batch-norm parameters and statistics."""
    torch.manual_seed(0)
    model = inc.FIDInceptionV3()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0.0, 0.1)
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def features(net, photos):
    """Torch features of the photos for every layer."""
    return {layer: inc.InceptionFeatures(net, layer)(photos) for layer in inc.LAYERS}


@pytest.fixture(scope="module")
def exported(net, tmp_path_factory):
    """The pool3 feature extractor exported to ONNX."""
    path = tmp_path_factory.mktemp("onnx") / "inception_fid.onnx"
    torch.onnx.export(inc.InceptionFeatures(net).eval(), torch.zeros(1, 3, 299, 299), str(path), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["features"],
                      dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}})
    return path


def meta_net() -> inc.FIDInceptionV3:
    """The network moved to PyTorch's meta device: its parameters' and its outputs' shapes, without
    values or arithmetic (a forward pass takes milliseconds). Built on the CPU first: initialising
    on the meta device would import torch's compiler, seconds more."""
    return inc.FIDInceptionV3().to("meta").eval()


def test_state_dict_has_the_official_keys_and_shapes():
    state = meta_net().state_dict()
    for key, shape in OFFICIAL_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("AuxLogits") for k in state)
    # 94 conv+bn units (5 stem, 3x7 InceptionA, 4 InceptionB, 4x10 InceptionC, 6 InceptionD,
    # 2x9 InceptionE) with 6 entries each, plus fc.weight and fc.bias.
    assert sum(k.endswith(".conv.weight") for k in state) == 94
    assert len(state) == 94 * 6 + 2


def test_parameter_count_is_the_official_one():
    assert OFFICIAL_PARAMETER_COUNT == 23_850_960
    assert sum(p.numel() for p in meta_net().parameters()) == OFFICIAL_PARAMETER_COUNT


# (channels, height, width) after each module for a 299x299 input, as torchvision's Inception3.forward
# comments them.
INCEPTION_SHAPES = {
    "Conv2d_1a_3x3": (32, 149, 149), "Conv2d_2a_3x3": (32, 147, 147), "Conv2d_2b_3x3": (64, 147, 147),
    "maxpool1": (64, 73, 73), "Conv2d_3b_1x1": (80, 73, 73), "Conv2d_4a_3x3": (192, 71, 71),
    "maxpool2": (192, 35, 35), "Mixed_5b": (256, 35, 35), "Mixed_5c": (288, 35, 35), "Mixed_5d": (288, 35, 35),
    "Mixed_6a": (768, 17, 17), "Mixed_6b": (768, 17, 17), "Mixed_6c": (768, 17, 17), "Mixed_6d": (768, 17, 17),
    "Mixed_6e": (768, 17, 17), "Mixed_7a": (1280, 8, 8), "Mixed_7b": (2048, 8, 8), "Mixed_7c": (2048, 8, 8),
    "fc": (1008,),
}


def test_each_module_gives_inception_v3s_shapes_and_forward_the_1008_logits():
    net = meta_net()
    shapes = {}

    def record(name):
        def hook(module, args, out):
            shapes[name] = tuple(out.shape)
        return hook

    for name, module in net.named_children():
        module.register_forward_hook(record(name))
    assert tuple(net(torch.empty(2, 3, 299, 299, device="meta")).shape) == (2, 1008)
    assert shapes == {name: (2, *shape) for name, shape in INCEPTION_SHAPES.items()}


def test_each_layer_gives_its_dim_by_name_or_dim():
    net, x = meta_net(), torch.empty(2, 3, 299, 299, device="meta")
    for layer, dim in {"pool1": 64, "192": 192, "mixed6e": 768, "2048": 2048}.items():
        features = inc.InceptionFeatures(net, layer)
        assert features.dim == dim and features.layer == inc.layer_name(dim)
        assert tuple(features(x).shape) == (2, dim)
        assert tuple(net.forward_features(x, layer).shape) == (2, dim)
    assert tuple(net.forward_features(x).shape) == (2, 2048)  # pool3 by default


def test_features_keep_the_networks_mode():
    net = torch.nn.Linear(1, 1)  # only its mode is read when the extractor is made
    assert inc.InceptionFeatures(net.train()).training is True
    assert inc.InceptionFeatures(net.eval()).training is False


def test_basic_conv_is_a_convolution_without_bias_batch_norm_with_eps_0_001_and_relu():
    unit = inc.BasicConv2d(1, 1, kernel_size=1).eval()
    assert set(unit.state_dict()) == {"conv.weight", "bn.weight", "bn.bias", "bn.running_mean",
                                      "bn.running_var", "bn.num_batches_tracked"}
    with torch.no_grad():
        unit.conv.weight.fill_(2.0)
        unit.bn.running_mean.fill_(1.0)
        unit.bn.running_var.fill_(0.999)  # + eps 0.001: divided by 1
        unit.bn.weight.fill_(3.0)
        unit.bn.bias.fill_(0.5)
        out = unit(torch.tensor([[[[-1.0, 0.5], [1.0, 2.0]]]]))
    # 3 * (2x - 1) + 0.5: -8.5, 0.5, 3.5, 9.5, the negative one cut to 0
    assert torch.allclose(out, torch.tensor([[[[0.0, 0.5], [3.5, 9.5]]]]), atol=1e-6)


# A 3x3 picture, 0 but for 9 in its centre, and what 3x3 stride-1 pools padded by 1 make of it:
# TensorFlow's average counts only the pixels inside the picture (4 at a corner, 6 on an edge, 9 in
# the centre); the max spreads the 9 everywhere.
PEAK = torch.zeros(1, 1, 3, 3)
PEAK[0, 0, 1, 1] = 9.0
AVERAGED = torch.tensor([[[[9 / 4, 9 / 6, 9 / 4], [9 / 6, 1.0, 9 / 6], [9 / 4, 9 / 6, 9 / 4]]]])
MAXED = torch.full((1, 1, 3, 3), 9.0)


def test_average_pool_leaves_the_padding_out():
    assert torch.allclose(inc._avg_pool_3x3(PEAK), AVERAGED)
    assert torch.equal(inc._avg_pool_3x3(torch.ones(1, 2, 5, 4)), torch.ones(1, 2, 5, 4))


def pooled(block: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The block's output for ``x`` and what its pool branch's convolution was given."""
    seen = []
    block.branch_pool.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        out = block.eval()(x)
    return out, seen[0]


@pytest.mark.parametrize("block, options, channels, pooling", [
    (inc.FIDInceptionA, {"pool_features": 5}, 64 + 64 + 96 + 5, AVERAGED),
    (inc.FIDInceptionC, {"channels_7x7": 4}, 4 * 192, AVERAGED),
    (inc.FIDInceptionE, {"pool": "avg"}, 320 + 2 * 384 + 2 * 384 + 192, AVERAGED),  # Mixed_7b
    (inc.FIDInceptionE, {"pool": "max"}, 320 + 2 * 384 + 2 * 384 + 192, MAXED),  # Mixed_7c
], ids=["A", "C", "E-avg", "E-max"])
def test_each_blocks_pool_branch_pools_as_pytorch_fid_does(block, options, channels, pooling):
    seen = []
    unit = block(1, **options).eval()
    unit.branch_pool.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        assert unit(PEAK).shape == (1, channels, 3, 3)
    assert torch.allclose(seen[0], pooling)


@pytest.mark.parametrize("block, channels", [(inc.InceptionB, 384 + 96), (inc.InceptionD, 320 + 192)], ids=["B", "D"])
def test_grid_reductions_end_with_the_3x3_stride_2_max_pool_of_their_input(block, channels):
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    with torch.no_grad():
        out = block(1).eval()(x)
    # windows of rows and columns 0-2 and 2-4: their largest values, at their bottom-right corners
    assert out.shape == (1, channels + 1, 2, 2)
    assert torch.equal(out[0, -1], torch.tensor([[12.0, 14.0], [22.0, 24.0]]))


def test_an_unknown_pool_is_refused():
    with pytest.raises(ValueError, match=re.escape("pool must be 'avg' or 'max', not 'min'")):
        inc.FIDInceptionE(1, pool="min")


def test_convolutions_start_he_initialised():
    """Each convolution's weights have a standard deviation of sqrt(2 / fan-in) (torch's default would
    give sqrt(1 / (3 fan-in)))."""
    torch.manual_seed(0)
    net = inc.FIDInceptionV3()
    for conv, fan_in in ((net.Mixed_7c.branch3x3dbl_1.conv, 2048), (net.Mixed_6e.branch7x7dbl_2.conv, 192 * 7),
                         (net.Conv2d_4a_3x3.conv, 80 * 9)):
        assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.02)


def test_build_gives_a_frozen_extractor_in_eval_mode():
    features = inc.build("pool2")
    assert (features.layer, features.dim) == ("pool2", 192)
    assert not features.training and not features.net.training
    assert not any(p.requires_grad for p in features.parameters())


class NotATensor:
    """Something a weights file could carry besides tensors: unpickling it runs code of its choosing."""


def test_build_refuses_a_weights_file_holding_more_than_tensors(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"fc.weight": NotATensor()}, path)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        inc.build(weights=path)


def test_build_loads_weights_strictly(tmp_path):
    """A file holding only some of the weights would load without complaint if loading were not strict."""
    partial = tmp_path / "fc_only.pth"
    torch.save({"fc.weight": torch.zeros(1008, 2048), "fc.bias": torch.zeros(1008)}, partial)
    with pytest.raises(RuntimeError, match="Missing key"):
        inc.build(weights=partial)


@pytest.mark.slow
def test_weights_file_loads_strictly_and_reproduces_the_network(net, photos, features, tmp_path):
    path = tmp_path / fid_weights.WEIGHTS_FILENAME
    torch.save(net.state_dict(), path)
    loaded = inc.build("pool2", weights=path)
    assert not loaded.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.net.state_dict().items())
    assert torch.equal(loaded(photos), features["pool2"])



@pytest.mark.slow
def test_layers_give_pooled_features_of_their_dim(net, photos, features):
    assert inc.LAYERS == {"pool3": 2048, "mixed6e": 768, "pool2": 192, "pool1": 64}
    for layer, dim in inc.LAYERS.items():
        assert inc.InceptionFeatures(net, layer).dim == dim
        out = features[layer]
        assert out.shape == (2, dim) and out.dtype == torch.float32
        assert torch.isfinite(out).all() and out.std() > 1e-2
    # pool1 is the spatial mean of the first max pool, (N, 64, 73, 73).
    stem = net.maxpool1(net.Conv2d_2b_3x3(net.Conv2d_2a_3x3(net.Conv2d_1a_3x3(photos))))
    assert stem.shape == (2, 64, 73, 73)
    assert torch.allclose(features["pool1"], stem.mean((2, 3)), atol=1e-6)


@pytest.mark.slow
def test_forward_gives_the_1008_logits(net, photos):
    small = photos[:, :, :75, :75]  # the smallest input the network takes, to keep this fast
    logits = net(small)
    assert logits.shape == (2, 1008)
    assert torch.allclose(logits, net.fc(net.forward_features(small)), atol=1e-6)


def test_layer_names_and_dim_aliases():
    assert inc.layer_name("768") == inc.layer_name(768) == "mixed6e"
    assert inc.layer_name("2048") == inc.layer_name("pool3") == "pool3"
    assert inc.build("64").dim == 64
    with pytest.raises(ValueError, match=re.escape("unknown Inception layer 'fc'; choose from: pool3, mixed6e, "
                                                   "pool2, pool1")):
        inc.layer_name("fc")


@pytest.mark.slow
def test_onnx_export_matches_torch_on_real_photos(photos, features, exported):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])
    expected = features["pool3"].numpy()
    got = session.run(["features"], {"input": photos.numpy()})[0]
    assert got.shape == (2, 2048) and got.dtype == np.float32
    assert expected.std() > 1e-2  # a real comparison, not of near-zero vectors
    assert np.abs(got - expected).max() <= 1e-4
    single = session.run(["features"], {"input": photos[1:].numpy()})[0]
    assert np.abs(single[0] - expected[1]).max() <= 1e-4


@pytest.mark.slow
def test_onnx_graph_has_the_fid_pooling(exported):
    """TensorFlow-style average pools exclude padding; only Mixed_7c's branch pool is a stride-1
    max pool."""
    nodes = onnx.load(str(exported), load_external_data=False).graph.node

    def attrs(node):
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    avg = [attrs(n) for n in nodes if n.op_type == "AveragePool"]
    assert len(avg) == 8  # Mixed_5b..5d, Mixed_6b..6e, Mixed_7b
    assert all(a.get("count_include_pad", 0) == 0 and list(a["pads"]) == [1, 1, 1, 1] for a in avg)
    maxpools = [attrs(n) for n in nodes if n.op_type == "MaxPool"]
    assert len(maxpools) == 5  # maxpool1, maxpool2, Mixed_6a, Mixed_7a, Mixed_7c
    assert [list(a["strides"]) for a in maxpools].count([1, 1]) == 1
