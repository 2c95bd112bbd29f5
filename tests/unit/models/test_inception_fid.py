"""FID InceptionV3: official state-dict layout, feature layers, ONNX parity, the NumPy FID
preprocessing against torch, and weight resolution (never downloads)."""

import hashlib
import re
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import platformdirs
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from lookalike.models import fid_weights
from lookalike.models import inception_fid as inc
from lookalike.models.fid_preprocess import fid_preprocess, resize_bilinear

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


def torch_fid_preprocess(rgb: np.ndarray) -> np.ndarray:
    """pytorch-fid's pipeline: ToTensor, bilinear F.interpolate to 299, 2x - 1."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return (2 * x - 1)[0].numpy()


@pytest.mark.parametrize("name, rows, cols", [
    ("chelsea", slice(None), slice(None)),              # 300x451, down
    ("coffee", slice(None), slice(None)),               # 400x600, down
    ("astronaut", slice(None), slice(None)),            # 512x512, down
    ("astronaut", slice(None, None, 4), slice(None, None, 4)),  # 128x128, up
    ("chelsea", slice(40, 97), slice(100, 123)),        # 57x23, up
    ("coffee", slice(None, None, 3), slice(None)),      # 134x600, up rows, down columns
    ("astronaut", slice(7, 306), slice(1, 300)),        # 299x299, unchanged
])
def test_fid_preprocess_matches_torch_interpolate(name, rows, cols):
    rgb = np.ascontiguousarray(getattr(data, name)()[rows, cols])
    ours = fid_preprocess(rgb)
    assert ours.shape == (3, 299, 299) and ours.dtype == np.float32
    assert np.abs(ours - torch_fid_preprocess(rgb)).max() <= 1e-5


@pytest.mark.parametrize("size", [23, 451, 1500])
def test_resize_weights_equal_torch(size):
    """Per-pixel interpolation weights, read off by resizing one-hot rows: torch's float32 rounding
    of the source coordinate is matched (off by ~1e-5 at 1500 pixels otherwise)."""
    eye = np.eye(size)
    ours = resize_bilinear(eye[None], 1, 299)[0]  # (299, size): weight of each source per output
    theirs = F.interpolate(torch.from_numpy(eye).float()[None, :, None, :], size=(1, 299), mode="bilinear",
                           align_corners=False)[0, :, 0, :].T.numpy()
    assert np.abs(ours - theirs).max() <= 1e-6


def test_resizing_8_bit_pixels_with_a_divisor_equals_resizing_the_divided_photo():
    rgb = data.coffee()  # 400x600: down
    for shape in ((299, 299), (450, 700)):  # and up
        assert np.array_equal(resize_bilinear(rgb, *shape, divisor=255.0), resize_bilinear(rgb / 255.0, *shape))


@pytest.mark.parametrize("bad", [np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8),
                                 np.zeros((8, 8, 4), np.uint8)])
def test_fid_preprocess_rejects_non_rgb_uint8(bad):
    with pytest.raises(ValueError, match=re.escape(f"expected an (H, W, 3) uint8 RGB array, got {bad.dtype} {bad.shape}")):
        fid_preprocess(bad)


def test_fid_preprocess_does_not_import_torch():
    code = "import sys, lookalike.models.fid_preprocess; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.slow
def test_state_dict_has_the_official_keys_and_shapes(net):
    state = net.state_dict()
    for key, shape in OFFICIAL_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("AuxLogits") for k in state)
    # 94 conv+bn units (5 stem, 3x7 InceptionA, 4 InceptionB, 4x10 InceptionC, 6 InceptionD,
    # 2x9 InceptionE) with 6 entries each, plus fc.weight and fc.bias.
    assert sum(k.endswith(".conv.weight") for k in state) == 94
    assert len(state) == 94 * 6 + 2


@pytest.mark.slow
def test_parameter_count_is_the_official_one(net):
    assert OFFICIAL_PARAMETER_COUNT == 23_850_960
    assert sum(p.numel() for p in net.parameters()) == OFFICIAL_PARAMETER_COUNT


@pytest.mark.slow
def test_weights_file_loads_strictly_and_reproduces_the_network(net, photos, features, tmp_path):
    path = tmp_path / fid_weights.WEIGHTS_FILENAME
    torch.save(net.state_dict(), path)
    loaded = inc.build("pool2", weights=path)
    assert not loaded.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.net.state_dict().items())
    assert torch.equal(loaded(photos), features["pool2"])

    # A partial file would load without complaint if the loading were not strict.
    partial = tmp_path / "fc_only.pth"
    torch.save({"fc.weight": net.fc.weight, "fc.bias": net.fc.bias}, partial)
    with pytest.raises(RuntimeError, match="Missing key"):
        inc.build(weights=partial)


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
    with pytest.raises(ValueError, match="pool3"):
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


@pytest.fixture
def no_weights(monkeypatch, tmp_path):
    """No env var and an empty cache directory."""
    monkeypatch.delenv(fid_weights.WEIGHTS_ENV, raising=False)
    monkeypatch.delenv("LOOKALIKE_CACHE", raising=False)
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda appname: str(tmp_path / "cache" / appname))
    return tmp_path


def test_missing_weights_error_is_one_line_with_the_ways_to_get_them(no_weights):
    with pytest.raises(fid_weights.MissingWeightsError) as err:
        fid_weights.resolve_weights(None)
    message = str(err.value)
    assert "\n" not in message
    assert fid_weights.WEIGHTS_URL in message and "--weights PATH" in message and fid_weights.WEIGHTS_ENV in message


def test_resolve_weights_order(no_weights, monkeypatch):
    explicit, env = no_weights / "explicit.pth", no_weights / "env.pth"
    cached = fid_weights.default_weights_path()
    assert cached == no_weights / "cache" / "lookalike" / "weights" / fid_weights.WEIGHTS_FILENAME
    for p in (explicit, env, cached):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    assert fid_weights.resolve_weights(None) == cached
    monkeypatch.setenv(fid_weights.WEIGHTS_ENV, str(env))
    assert fid_weights.resolve_weights(None) == env
    assert fid_weights.resolve_weights(str(explicit)) == explicit
    with pytest.raises(fid_weights.MissingWeightsError, match="does not exist"):
        fid_weights.resolve_weights(str(no_weights / "nope.pth"))


def test_download_keeps_only_a_file_with_the_expected_hash(no_weights, monkeypatch):
    """Uses file:// URLs: nothing is fetched from the network."""
    source = no_weights / "served.pth"
    source.write_bytes(b"not the inception weights")
    monkeypatch.setattr(fid_weights, "WEIGHTS_URL", source.as_uri())
    with pytest.raises(fid_weights.MissingWeightsError, match="SHA-256"):
        fid_weights.resolve_weights(None, download=True)
    assert not any(fid_weights.default_weights_path().parent.iterdir())

    dest = no_weights / "fetched" / "w-abc.pth"
    fid_weights._download(source.as_uri(), dest, hashlib.sha256(source.read_bytes()).hexdigest()[:8])
    assert dest.read_bytes() == source.read_bytes()
