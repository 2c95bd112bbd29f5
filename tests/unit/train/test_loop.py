"""The training loop on a stand-in network (tiny_lite.py) at a 32-pixel input: fast, no pretrained
weights. What it caches, trains, checkpoints, validates and exports, against values worked out by hand
or computed again from the network's parts. Each test makes its own data and runs (mutmut runs, for a
mutant, only the tests during whose call or function-scoped setup it ran)."""

import copy
import errno
import math
import os
import types
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from PIL import Image

from lookalike.evaluation import retrieval
from lookalike.models.preprocess import Preprocessing
from lookalike.models.registry import ModelError
from lookalike.train import head, loop
from lookalike.train.config import TrainConfig
from lookalike.train.head import EmbeddingNet

from helpers import tiny_model
from tiny_lite import tiny_features

PRE = Preprocessing(32, mean=(0.25, 0.5, 0.75), std=(0.5, 0.25, 0.125))
CONFIG = TrainConfig(dim=6, epochs=2, unfreeze=2, batch_size=4, per_class=2, train_size=16, crop_size=0, lr=1e-3,
                     val_split="classes", val_fraction=0.4, seed=3, whiten=0.0)


# made once: building the stand-in seeds torch, which a pretrained network's build does not
FEATURES = {layer: tiny_features(layer) for layer in ("pool", "blocks")}


@pytest.fixture
def stand_in(monkeypatch):
    """The registry's EfficientNet-Lite specs at a 32-pixel input, built as the stand-in network."""
    real = loop.resolve
    monkeypatch.setattr(loop, "resolve", lambda name: replace(real(name), preprocessing=PRE))
    monkeypatch.setattr(loop, "build", lambda spec: copy.deepcopy(FEATURES[spec.layer]))


def make_data(root, classes=5, per_class=4, size=40, seed=0):
    """Class folders of noisy pictures, each class around a colour of its own."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        base = rng.integers(0, 256, 3)
        for i in range(per_class):
            px = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / f"c{c}" / f"{i}.png")
    return root


def pixels(path, size=32):
    """The model input of one picture, made here with Pillow (PNG: no JPEG draft)."""
    return replace(PRE, size=size)(Image.open(path).convert("RGB"))


def features(seed=None):
    """The stand-in network as prepare and fit build it; its head as a run of ``seed`` starts it."""
    if seed is not None:
        torch.manual_seed(seed)
    return EmbeddingNet(copy.deepcopy(FEATURES["pool"]), CONFIG.dim).eval()


# ---- base_spec, _device, saved_config


def test_training_starts_only_from_an_efficientnet_lite_with_the_layer_asked_for(tmp_path):
    with pytest.raises(ModelError, match=r"^training starts from an EfficientNet-Lite model "
                                         r"\(efficientnet-lite0/1/2\), not tiny-0$"):
        loop.base_spec(TrainConfig(model=str(tiny_model(tmp_path / "tiny"))))
    spec = loop.base_spec(TrainConfig(model="efficientnet-lite1", layer="blocks"))
    assert spec.name == "efficientnet-lite1" and spec.layer == "blocks"


def test_devices():
    assert loop._device("cpu") == torch.device("cpu")
    assert loop._device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match=r"^unknown device 'gpu'; use cpu, cuda or auto$"):
        loop._device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match=r"^--device cuda needs a CUDA build of torch and a GPU; "
                                             r"neither was found$"):
            loop._device("cuda")


def test_cuda_is_used_where_torch_has_it_when_asked_or_left_to_auto(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert loop._device("cuda") == loop._device("auto") == torch.device("cuda")
    assert loop._device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loop._device("auto") == torch.device("cpu")


def test_saved_config_reads_the_checkpoints_settings(tmp_path):
    assert loop.saved_config(tmp_path) is None
    config = replace(CONFIG, margin=0.25, augment="features")
    loop._save(tmp_path / "a" / "b" / loop.CHECKPOINT, {"config": asdict(config), "w": torch.ones(2)})  # folders made
    assert loop.saved_config(tmp_path / "a" / "b") == config


# ---- prepare and the activation cache


def test_prepare_splits_the_data_and_caches_the_frozen_blocks_output(stand_in, tmp_path):
    data = make_data(tmp_path / "data")
    seen = []
    config = replace(CONFIG, augment="features")
    prep = loop.prepare(data, config, tmp_path / "cache", progress=lambda *a: seen.append(a))
    assert prep.start == 1  # 3 blocks, the last 2 trained
    assert prep.spec.preprocessing == PRE and prep.spec.name == "efficientnet-lite0"
    assert len(prep.train) == 12 and len(prep.val) == 8  # 2 of the 5 classes held out whole
    assert not set(prep.train.paths) & set(prep.val.paths)
    assert sorted(set(prep.val.labels)) == sorted(set(p.split("/")[-2] for p in prep.val.paths))
    assert prep.cache_dir.parent == tmp_path / "cache" and len(prep.cache_dir.name) == 16
    net = features()
    with torch.no_grad():
        images = torch.from_numpy(np.stack([pixels(p) for p in prep.train.paths]))
        want = net.prefix(images, 1).numpy()
        mirrored = net.prefix(images.flip(-1), 1).numpy()
        want_val = net.prefix(torch.from_numpy(np.stack([pixels(p) for p in prep.val.paths])), 1).numpy()
    assert prep.train_acts.shape == (12, 2, 4, 16, 16) and prep.train_acts.dtype == np.float16
    assert np.allclose(prep.train_acts[:, 0], want, atol=2e-2, rtol=1e-2)
    assert np.allclose(prep.train_acts[:, 1], mirrored, atol=2e-2, rtol=1e-2)  # the mirror image's
    assert prep.val_acts.shape == (8, 4, 16, 16)
    assert np.allclose(prep.val_acts, want_val, atol=2e-2, rtol=1e-2)
    assert seen == [("cache", 12, 12, {"name": "train"}), ("cache", 8, 8, {"name": "val"})]
    assert sorted(p.name for p in prep.cache_dir.iterdir()) == ["train.done", "train.npy", "val.done", "val.npy"]
    prep.close()
    assert prep.train_acts is None and prep.val_acts is None and not prep.cache_dir.exists()
    prep.close()  # already gone: nothing to do


def test_the_cache_is_written_in_batches_and_read_again_not_remade(stand_in, tmp_path):
    data = make_data(tmp_path / "data", classes=2, per_class=5)
    paths = sorted(str(p) for p in data.rglob("*.png"))
    net = features()
    seen = []
    out = tmp_path / "x.npy"
    acts = loop._cached(out, net, replace(loop.resolve("efficientnet-lite0")), 2, paths, False,
                        lambda *a: seen.append(a), 2, batch=4)
    assert [a[1:3] for a in seen] == [(4, 10), (8, 10), (10, 10)]
    with torch.no_grad():
        want = net.prefix(torch.from_numpy(np.stack([pixels(p) for p in paths])), 2).numpy()
    assert acts.shape == (10, 5, 16, 16) and np.allclose(acts, want, atol=2e-2, rtol=1e-2)
    assert isinstance(acts, np.memmap) and (tmp_path / "x.done").exists()
    again = loop._cached(out, None, None, 2, [], False, lambda *a: seen.append(a), 2)  # read, not remade
    assert len(seen) == 3 and np.array_equal(again, acts) and isinstance(again, np.memmap)


def test_a_cache_that_cannot_be_made_leaves_no_file(stand_in, tmp_path):
    data = make_data(tmp_path / "data", classes=2, per_class=2)
    paths = sorted(str(p) for p in data.rglob("*.png"))
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    with pytest.raises(Exception, match="not an image"):
        loop._cached(tmp_path / "t.npy", features(), loop.resolve("efficientnet-lite0"), 1,
                     paths + [str(tmp_path / "bad.png")], True, loop._quiet, 1, batch=2)
    assert not (tmp_path / "t.npy").exists() and not (tmp_path / "t.done").exists()


def test_the_cache_key_follows_the_files_the_model_and_the_split(stand_in, tmp_path):
    data = make_data(tmp_path / "data")
    key = lambda c, **k: loop.prepare(data, c, tmp_path / "cache", **k).cache_dir.name  # noqa: E731
    first = key(CONFIG)
    assert key(CONFIG) == first
    assert key(replace(CONFIG, unfreeze=1)) != first  # another frozen part
    assert key(replace(CONFIG, seed=4)) != first  # another split
    assert key(replace(CONFIG, layer="blocks")) != first
    assert key(CONFIG, val_dir=data) != first
    st = os.stat(data / "c0" / "0.png")
    os.utime(data / "c0" / "0.png", ns=(st.st_atime_ns, st.st_mtime_ns + 1000))  # changed in place
    second = key(CONFIG)
    assert second != first
    (data / "c0" / "0.png").write_bytes((data / "c1" / "0.png").read_bytes() + b"\0")  # another size
    assert key(CONFIG) not in (first, second)


def test_the_cache_key_follows_the_training_files_and_their_sizes_too(stand_in, tmp_path):
    data = make_data(tmp_path / "data")
    prep = loop.prepare(data, CONFIG, tmp_path / "cache")
    first, path = prep.cache_dir.name, prep.train.paths[0]  # a training image, not a validation one
    st = os.stat(path)
    with open(path, "ab") as f:  # one more byte, its time put back: only the size says it changed
        f.write(b"\0")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert loop.prepare(data, CONFIG, tmp_path / "cache").cache_dir.name != first


def test_validation_activations_are_cached_for_each_embedding_size(stand_in, tmp_path):
    data = make_data(tmp_path / "data")
    at_32 = loop.prepare(data, CONFIG, tmp_path / "cache")
    at_40 = loop.prepare(data, replace(CONFIG, embed_size=40), tmp_path / "cache")  # the same cache folder
    assert at_40.cache_dir == at_32.cache_dir
    assert at_32.val_acts.shape[-1] == 16 and at_40.val_acts.shape[-1] == 20  # maps of 32- and 40-pixel images
    net = features()
    with torch.no_grad():
        want = net.prefix(torch.from_numpy(np.stack([pixels(p, 40) for p in at_40.val.paths])), 1).numpy()
    assert np.allclose(at_40.val_acts, want, atol=2e-2, rtol=1e-2)


def test_a_validation_folder_of_links_to_outside_is_followed_when_asked(stand_in, tmp_path):
    data, outside = make_data(tmp_path / "data"), make_data(tmp_path / "outside", classes=2, per_class=3, seed=2)
    (tmp_path / "val").mkdir()
    for c in ("c0", "c1"):
        (tmp_path / "val" / c).symlink_to(outside / c)
    prep = loop.prepare(data, CONFIG, tmp_path / "cache", val_dir=tmp_path / "val", follow_links=True)
    assert prep.val.classes == ["c0", "c1"] and len(prep.val) == 6


def test_the_cache_key_of_a_run_without_validation(stand_in, tmp_path):
    data = make_data(tmp_path / "data")
    none = loop.prepare(data, replace(CONFIG, val_split="none"), tmp_path / "cache")
    assert none.val is None and none.val_acts is None and len(none.train) == 20
    assert none.train_acts is None  # augment="pixels": only the validation would be cached
    images = loop.prepare(data, replace(CONFIG, val_split="images", val_fraction=0.25), tmp_path / "cache")
    assert len(images.val) == 5 and images.val_acts.shape == (5, 4, 16, 16)
    assert len({none.cache_dir, images.cache_dir}) == 2


def test_validating_on_another_folder_trains_on_all_of_the_data(stand_in, tmp_path):
    data, other = make_data(tmp_path / "data"), make_data(tmp_path / "other", classes=2, per_class=3, seed=1)
    prep = loop.prepare(data, CONFIG, tmp_path / "cache", val_dir=other)
    assert len(prep.train) == 20 and len(prep.val) == 6 and prep.val.root == str(other)
    assert prep.val_acts.shape == (6, 4, 16, 16)


def test_a_whole_network_trained_needs_no_cache(stand_in, tmp_path):
    data = make_data(tmp_path / "data")
    for unfreeze in (3, 4):
        prep = loop.prepare(data, replace(CONFIG, unfreeze=unfreeze, augment="features"), tmp_path / "cache")
        assert prep.start == 0 and prep.cache_dir is None and prep.train_acts is None and prep.val_acts is None
    assert not (tmp_path / "cache").exists()


def test_links_out_of_the_data_are_followed_only_when_asked(stand_in, tmp_path):
    data, outside = make_data(tmp_path / "data"), make_data(tmp_path / "outside", classes=1, per_class=3, seed=2)
    (data / "linked").symlink_to(outside / "c0")
    assert len(loop.prepare(data, CONFIG, tmp_path / "cache").train.classes) == 3
    assert len(loop.prepare(data, CONFIG, tmp_path / "cache", follow_links=True).train.classes
               + loop.prepare(data, CONFIG, tmp_path / "cache", follow_links=True).val.classes) == 6


def test_the_learning_rate_warms_up_over_a_tenth_of_the_steps_then_follows_a_cosine(stand_in, tmp_path, monkeypatch):
    schedules = []
    real = torch.optim.lr_scheduler.LambdaLR
    monkeypatch.setattr(torch.optim.lr_scheduler, "LambdaLR",
                        lambda opt, f: schedules.append(f) or real(opt, f))
    prep = _prep(tmp_path)
    loop.fit(prep, replace(CONFIG, epochs=7), deadline=0.0)  # 3 steps an epoch, 21 in all; none taken
    (f,) = schedules
    assert [f(s) for s in range(3)] == [0.5, 1.0, 1.0]  # 2 warm-up steps (21 // 10), then the cosine's top
    assert f(20) == pytest.approx(0.5 * (1 + math.cos(math.pi * 18 / 19)))


def test_every_block_of_the_network_can_be_trained_stem_included(stand_in, tmp_path, monkeypatch):
    prep = _prep(tmp_path, unfreeze=3)  # the stand-in's 3 blocks: no frozen part, no cache
    frozen = []
    real = EmbeddingNet.prefix
    monkeypatch.setattr(EmbeddingNet, "prefix", lambda self, x, stop: frozen.append(stop) or real(self, x, stop))
    result = loop.fit(prep, replace(CONFIG, unfreeze=3, epochs=1))
    stem = result.net.features.net._conv_stem.weight
    assert prep.start == 0 and not torch.equal(stem, FEATURES["pool"].net._conv_stem.weight)
    assert frozen == []  # the pixels go through the whole network, stem once, with gradients


def test_settings_that_cannot_work_are_refused_before_anything_is_read(stand_in, tmp_path):
    with pytest.raises(ValueError, match="dim must be at least 1"):
        loop.prepare(tmp_path / "missing", replace(CONFIG, dim=0), tmp_path / "cache")
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        loop.fit(None, replace(CONFIG, epochs=0))


def test_a_cache_removed_while_it_is_written_still_stops_with_the_error_that_stopped_it(stand_in, tmp_path):
    paths = sorted(str(p) for p in make_data(tmp_path / "data", classes=2, per_class=2).rglob("*.png"))
    out = tmp_path / "t.npy"

    def removed_then_stopped(*args):
        out.unlink()  # the cache folder cleared by hand
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop._cached(out, features(), loop.resolve("efficientnet-lite0"), 1, paths, False, removed_then_stopped, 1,
                     batch=2)
    assert not out.exists() and not out.with_suffix(".done").exists()


def test_a_file_system_that_cannot_reserve_blocks_still_gets_the_cache(tmp_path, monkeypatch):
    def refuse(code):
        def fallocate(fd, offset, length):
            raise OSError(code, os.strerror(code))
        return fallocate

    for code in (errno.EOPNOTSUPP, errno.EINVAL):
        monkeypatch.setattr(os, "posix_fallocate", refuse(code))
        out = loop.reserved_memmap(tmp_path / f"{code}.npy", (3, 2, 4))
        assert out.shape == (3, 2, 4) and out.dtype == np.float16
    monkeypatch.setattr(os, "posix_fallocate", refuse(errno.ENOSPC))
    with pytest.raises(OSError) as err:
        loop.reserved_memmap(tmp_path / "full.npy", (3, 2, 4))
    assert err.value.errno == errno.ENOSPC and not (tmp_path / "full.npy").exists()


def test_a_disk_too_full_for_the_cache_files_header_says_so(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np.lib.format, "open_memmap", full)  # refused before the file was made
    with pytest.raises(OSError) as err:
        loop.reserved_memmap(tmp_path / "x.npy", (3, 2))
    assert err.value.errno == errno.ENOSPC and not (tmp_path / "x.npy").exists()


def test_the_cache_file_has_its_blocks_reserved(tmp_path, monkeypatch):
    asked = []
    real = os.posix_fallocate
    monkeypatch.setattr(os, "posix_fallocate", lambda fd, offset, length: asked.append((offset, length))
                        or real(fd, offset, length))
    out = loop.reserved_memmap(tmp_path / "x.npy", (10, 100))
    assert asked == [(0, os.path.getsize(tmp_path / "x.npy"))] and asked[0][1] >= 2000
    out[:] = 1.5
    out.flush()
    assert np.load(tmp_path / "x.npy").sum() == 1500


# ---- feature crops and batches


def test_feature_crops_of_a_known_box_are_that_part_of_the_map(monkeypatch):
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    boxes = iter([(0.0, 0.0, 0.5, 0.5), (0.5, 0.25, 1.0, 0.75)])
    monkeypatch.setattr(loop._data, "crop_box", lambda rng, w, h, scale: next(boxes))
    crops = loop.feature_crops(x, 4, np.random.default_rng(0), 0.5)
    assert torch.allclose(crops[0], x[0, :, :4, :4], atol=1e-4)  # the top left quarter, pixel for pixel
    assert torch.allclose(crops[1], x[1, :, 2:6, 4:], atol=1e-4)


def test_feature_crops_larger_than_the_map_keep_its_edge_values():
    x = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(1, 2, 8, 8)
    crops = loop.feature_crops(x, 16, np.random.default_rng(0), 1.0)  # the whole map (scale 1), twice as large
    want = torch.nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    assert torch.allclose(crops, want, atol=1e-4)
    assert crops[0, 1, 0, 0] == pytest.approx(64.0)  # the corner value, not faded towards zero


def test_feature_crops_ask_for_boxes_of_the_maps_width_height_and_scale(monkeypatch):
    asked = []
    monkeypatch.setattr(loop._data, "crop_box", lambda rng, w, h, scale: asked.append((w, h, scale)) or (0, 0, 1, 1))
    loop.feature_crops(torch.zeros(2, 1, 6, 10), 3, np.random.default_rng(0), 0.7)
    assert asked == [(10, 6, (0.7, 1.0))] * 2


def _prep(tmp_path, **changes):
    return loop.prepare(make_data(tmp_path / "data"), replace(CONFIG, **changes), tmp_path / "cache")


def test_feature_batches_take_a_random_view_of_each_chosen_image(stand_in, tmp_path):
    config = replace(CONFIG, augment="features", crop_scale=1.0, train_size=32)  # whole maps, at their size
    prep = _prep(tmp_path, augment="features", crop_scale=1.0, train_size=32)
    with loop.ThreadPoolExecutor(1) as pool:
        batches = loop._Batches(prep, config, pool)
        assert batches.size == 16
        positions = np.array([7, 0, 11, 3, 3])
        views = set()
        rng = np.random.default_rng(0)
        for _ in range(6):
            x = batches.train(positions, rng)
            assert x.shape == (5, 4, 16, 16)
            for row, p in zip(x, positions):
                match = [v for v in (0, 1) if torch.allclose(row, torch.from_numpy(
                    prep.train_acts[p, v].astype(np.float32)), atol=1e-3)]
                assert match, "a row is neither view of its image"
                views.add(match[0])
        assert views == {0, 1}


def test_feature_batches_are_cropped_to_the_training_size_scaled_to_the_map(stand_in, tmp_path):
    prep = _prep(tmp_path, augment="features")
    with loop.ThreadPoolExecutor(1) as pool:
        assert loop._Batches(prep, replace(CONFIG, train_size=16), pool).size == 8  # 16 of 32 pixels
        assert loop._Batches(prep, replace(CONFIG, train_size=20), pool).size == 10
        assert loop._Batches(prep, replace(CONFIG, train_size=22), pool).size == 11
        assert loop._Batches(prep, replace(CONFIG, train_size=1), pool).size == 1  # never 0
        x = loop._Batches(prep, replace(CONFIG, train_size=16), pool).train(np.array([1, 2]), np.random.default_rng(0))
        assert x.shape == (2, 4, 8, 8)


def test_pixel_batches_are_crops_of_the_images_flipped_half_the_time(stand_in, tmp_path):
    config = replace(CONFIG, crop_scale=1.0, train_size=16)  # the whole image, resized
    prep = _prep(tmp_path, crop_scale=1.0, train_size=16)
    flips = []
    with loop.ThreadPoolExecutor(2) as pool:
        batches = loop._Batches(prep, config, pool)
        positions = np.array([5, 0, 9])
        for seed in range(4):
            x = batches.train(positions, np.random.default_rng(seed))
            assert x.shape == (3, 3, 16, 16) and x.dtype == torch.float32
            for row, p in zip(x.numpy(), positions):
                plain = pixels(prep.train.paths[p], 16)
                flips.append(np.allclose(row, plain[..., ::-1], atol=1e-4))
                assert flips[-1] or np.allclose(row, plain, atol=1e-4)
    assert 0 < sum(flips) < len(flips)


def test_pixel_crops_take_the_crop_scale(stand_in, tmp_path, monkeypatch):
    asked = []
    real = loop._data.augment
    monkeypatch.setattr(loop._data, "augment", lambda img, size, rng, scale: asked.append((img.size, size, scale))
                        or real(img, size, rng, scale))
    prep = _prep(tmp_path, crop_scale=0.5, train_size=16)
    with loop.ThreadPoolExecutor(1) as pool:
        loop._Batches(prep, replace(CONFIG, crop_scale=0.5, train_size=16), pool).train(
            np.array([0, 1]), np.random.default_rng(0))
    assert asked == [((40, 40), 16, (0.5, 1.0))] * 2


def test_pixel_crops_rendered_at_fewer_pixels_enter_the_network_at_the_training_size(stand_in, tmp_path):
    # whole images (crop scale 1) rendered at 8 pixels, then resized to 16: the plain 8-pixel picture
    # made larger, unflipped or flipped; it has less detail than the 16-pixel picture made directly
    prep = _prep(tmp_path, crop_scale=1.0, train_size=16, crop_size=8)
    with loop.ThreadPoolExecutor(1) as pool:
        x = loop._Batches(prep, replace(CONFIG, crop_scale=1.0, train_size=16, crop_size=8), pool).train(
            np.array([3, 7]), np.random.default_rng(0))
    assert x.shape == (2, 3, 16, 16)
    for row, p in zip(x.numpy(), (3, 7)):
        small = Image.open(prep.train.paths[p]).convert("RGB").resize((8, 8), Image.BILINEAR, reducing_gap=3.0)
        expected = replace(PRE, size=16)(small)
        assert np.allclose(row, expected, atol=1e-4) or np.allclose(row, expected[..., ::-1], atol=1e-4)
        direct = pixels(prep.train.paths[p], 16)
        assert np.abs(np.diff(row, axis=-1)).mean() < 0.8 * np.abs(np.diff(direct, axis=-1)).mean()


def test_whole_inputs_from_the_cache_or_from_the_images(stand_in, tmp_path):
    prep = _prep(tmp_path, augment="features")
    positions = np.array([1, 4, 6])
    with loop.ThreadPoolExecutor(1) as pool:
        batches = loop._Batches(prep, CONFIG, pool)
        x, start = batches.whole("train", positions)
        assert start == 1 and torch.equal(x, torch.from_numpy(prep.train_acts[positions, 0].astype(np.float32)))
        x, start = batches.whole("val", positions)
        assert start == 1 and torch.equal(x, torch.from_numpy(prep.val_acts[positions].astype(np.float32)))
        x, _ = batches.whole("val", positions, 16)  # half the pixels: the maps resampled to half
        want = torch.nn.functional.interpolate(torch.from_numpy(prep.val_acts[positions].astype(np.float32)),
                                               size=(8, 8), mode="bilinear", antialias=True)
        assert torch.allclose(x, want)
        x, _ = batches.whole("val", positions, 20)
        assert x.shape == (3, 4, 10, 10)
        x, _ = batches.whole("val", positions, 1)
        assert x.shape == (3, 4, 1, 1)
    prep = _prep(tmp_path / "pixels", augment="pixels")  # no training cache
    with loop.ThreadPoolExecutor(1) as pool:
        x, start = loop._Batches(prep, CONFIG, pool).whole("train", positions, 16)
        assert start == 0
        assert np.allclose(x.numpy(), np.stack([pixels(prep.train.paths[p], 16) for p in positions]), atol=1e-4)
        x, _ = loop._Batches(prep, CONFIG, pool).whole("train", positions)
        assert x.shape == (3, 3, 32, 32)


def test_whole_inputs_take_the_embedding_size_for_validation_and_the_models_for_training(stand_in, tmp_path):
    positions = np.array([0, 3])
    prep = _prep(tmp_path, augment="features", embed_size=40)  # training maps of 32 pixels, validation's of 40
    with loop.ThreadPoolExecutor(1) as pool:
        batches = loop._Batches(prep, replace(CONFIG, embed_size=40), pool)
        for which, pixels_, side in (("val", None, 20), ("val", 40, 20), ("val", 20, 10), ("train", None, 16),
                                     ("train", 32, 16), ("train", 16, 8)):
            assert batches.whole(which, positions, pixels_)[0].shape[-1] == side, (which, pixels_)
        assert torch.equal(batches.whole("val", positions, 40)[0],
                           torch.from_numpy(prep.val_acts[positions].astype(np.float32)))
    prep = _prep(tmp_path / "pixels", unfreeze=3, embed_size=40)  # no cache: images
    with loop.ThreadPoolExecutor(1) as pool:
        batches = loop._Batches(prep, replace(CONFIG, unfreeze=3, embed_size=40), pool)
        assert batches.whole("val", positions)[0].shape[-1] == 40 and batches.whole("train", positions)[0].shape[-1] == 32


def test_every_crop_of_a_run_has_a_seed_of_its_own(stand_in, tmp_path, monkeypatch):
    seeds = []
    real = loop._data.augment
    monkeypatch.setattr(loop._data, "augment", lambda img, size, rng, scale: seeds.append(rng.bit_generator.seed_seq.entropy)
                        or real(img, size, rng, scale))
    prep = _prep(tmp_path, train_size=8)
    with loop.ThreadPoolExecutor(2) as pool:
        loop._Batches(prep, replace(CONFIG, train_size=8), pool).train(np.arange(12).repeat(25), np.random.default_rng(0))
    assert len(seeds) == 300 and len(set(seeds)) == 300  # drawn from 2**63 values: crops do not repeat


def test_whole_images_of_the_validation_folder_without_a_cache(stand_in, tmp_path):
    prep = _prep(tmp_path, unfreeze=3)
    with loop.ThreadPoolExecutor(1) as pool:
        x, start = loop._Batches(prep, CONFIG, pool).whole("val", np.array([0, 7]))
    assert start == 0
    assert np.allclose(x.numpy(), np.stack([pixels(prep.val.paths[p]) for p in (0, 7)]), atol=1e-4)


# ---- validation


def test_validation_scores_the_held_out_images_by_leave_one_out_retrieval(stand_in, tmp_path):
    prep = _prep(tmp_path, augment="features")
    net = features()
    with loop.ThreadPoolExecutor(1) as pool:
        got = loop.validate(net, prep, loop._Batches(prep, CONFIG, pool))
    with torch.no_grad():
        x = net(torch.from_numpy(np.stack([pixels(p) for p in prep.val.paths]))).numpy()
    want = retrieval.evaluate(x, prep.val.codes, "cosine")
    summary = want.summary()
    assert sorted(got) == sorted(["n_images", "n_classes", "recall@1", "recall@5", "recall@10", "map", "map@r",
                                  "median_rank", "by_class"])
    assert got["n_images"] == 8 and got["n_classes"] == 2
    for k in ("recall@1", "recall@5", "recall@10", "map", "map@r", "median_rank"):
        assert got[k] == pytest.approx(summary[k], abs=0.02), k
    assert got["by_class"].keys() == want.map_by_class(prep.val.labels).keys() == set(prep.val.classes)


def test_no_validation_without_two_held_out_images(stand_in, tmp_path):
    prep = _prep(tmp_path, val_split="none")
    assert loop.validate(features(), prep, None) is None
    one = replace(prep, val=prep.train.subset(np.array([0])))
    assert loop.validate(features(), one, None) is None
    two = replace(prep, val=prep.train.subset(np.array([0, 5])), val_acts=None, start=0)
    with loop.ThreadPoolExecutor(1) as pool:
        assert loop.validate(features(), two, loop._Batches(two, CONFIG, pool))["n_images"] == 2


# ---- fit


class Stop(Exception):
    pass


def test_fit_trains_records_each_epoch_and_reports_progress(stand_in, tmp_path):
    prep = _prep(tmp_path)
    seen = []
    result = loop.fit(prep, CONFIG, progress=lambda *a: seen.append(a))
    assert [e.epoch for e in result.history] == [0, 1, 2]
    assert result.history[0].loss is None and all(isinstance(e.loss, float) for e in result.history[1:])
    assert all(e.seconds > 0 and e.val["n_images"] == 8 for e in result.history)
    steps = 3  # 12 training images in batches of 4
    assert [a[:3] for a in seen] == [("epoch", 0, 2), *[("train", i, steps) for i in (1, 2, 3)], ("epoch", 1, 2),
                                     *[("train", i, steps) for i in (1, 2, 3)], ("epoch", 2, 2)]
    assert [a[3]["epoch"] for a in seen if a[0] == "train"] == [1, 1, 1, 2, 2, 2]
    assert [a[3]["epoch"] for a in seen if a[0] == "epoch"] == result.history
    assert seen[3][3]["loss"] == pytest.approx(result.history[1].loss)  # the mean over the epoch's steps
    assert result.spec is prep.spec and result.config == CONFIG and result.val == result.history[-1].val
    assert result.final is None and result.net is result.average.net
    assert not result.net.training and all(p.is_contiguous() for p in result.net.parameters())
    assert result.average.decay == 0.0 and set(result.average.ema) == set()


def test_fit_moves_the_trained_blocks_and_not_the_frozen_ones(stand_in, tmp_path):
    prep = _prep(tmp_path)
    result = loop.fit(prep, replace(CONFIG, epochs=1))
    start, now = features().state_dict(), result.net.state_dict()
    moved = {k for k in start if not torch.equal(start[k], now[k])}
    assert any(k.startswith("features.net._blocks.2.") for k in moved)
    assert any(k.startswith("features.net._blocks.1.") for k in moved)
    assert any(k.startswith("features.net._conv_head") for k in moved)
    assert any(k.startswith("embedding.") for k in moved)
    assert not any(k.startswith(("features.net._blocks.0.", "features.net._conv_stem", "features.net._bn0"))
                   for k in moved)
    assert not any("running" in k for k in moved)  # batch-norm statistics stay frozen


def test_the_whole_network_trains_from_the_pixels_when_every_block_is_unfrozen(stand_in, tmp_path):
    prep = _prep(tmp_path, unfreeze=3)
    result = loop.fit(prep, replace(CONFIG, unfreeze=3, epochs=1))
    start, now = features().state_dict(), result.net.state_dict()
    assert not torch.equal(start["features.net._conv_stem.weight"], now["features.net._conv_stem.weight"])


class Recording(torch.optim.AdamW):
    made: list = []

    def __init__(self, groups, **kw):
        super().__init__(groups, **kw)
        self.steps = []
        Recording.made.append((self, kw))

    def step(self, closure=None):
        self.steps.append([g["lr"] for g in self.param_groups])
        return super().step(closure)


def test_learning_rates_by_depth_warm_up_then_follow_a_cosine(stand_in, tmp_path, monkeypatch):
    Recording.made = []
    monkeypatch.setattr(loop.torch.optim, "AdamW", Recording)
    data = make_data(tmp_path / "data", classes=4, per_class=5)
    config = replace(CONFIG, val_split="none", epochs=5, lr=1e-3, lr_decay=0.5, head_lr_scale=10.0,
                     weight_decay=0.25)
    loop.fit(loop.prepare(data, config, tmp_path / "cache"), config)
    (opt, kw), = Recording.made
    assert kw == {"weight_decay": 0.25}
    # 20 images in batches of 4: 5 steps an epoch, 25 in all, 2 of warm-up (a tenth, rounded down),
    # then half a cosine over the 23 others
    factor = [0.5, 1.0] + [0.5 * (1 + math.cos(math.pi * (s - 2) / 23)) for s in range(2, 25)]
    assert factor[2] == 1.0 and factor[-1] == pytest.approx(0.0047, abs=1e-4)
    assert len(opt.steps) == 25
    # head convolution at lr, the last block at half, the one before at a quarter; the embedding 10 x lr
    for lrs, f in zip(opt.steps, factor):
        assert lrs == pytest.approx([1e-3 * f, 5e-4 * f, 2.5e-4 * f, 1e-2 * f])
    assert len(opt.param_groups[-1]["params"]) == 2  # the projection and the proxies


def test_a_short_run_warms_up_over_one_step(stand_in, tmp_path, monkeypatch):
    Recording.made = []
    monkeypatch.setattr(loop.torch.optim, "AdamW", Recording)
    config = replace(CONFIG, val_split="none", epochs=1, batch_size=8, per_class=4)
    loop.fit(_prep(tmp_path, val_split="none"), config)
    (opt, _), = Recording.made
    # 20 images in batches of 8: 3 steps, a tenth of which is under one: warm-up of 1 step
    assert [lrs[0] for lrs in opt.steps] == pytest.approx([1e-3, 1e-3, 1e-3 * 0.5 * (1 + math.cos(math.pi / 2))])


@pytest.mark.parametrize("name, kind", [("normsoftmax", head.NormSoftmax), ("proxy-anchor", head.ProxyAnchor)])
def test_the_loss_is_the_one_named_with_the_runs_settings_started_at_the_class_means(name, kind, stand_in, tmp_path,
                                                                                    monkeypatch):
    made = []
    real = kind

    class Recorded(real):
        def __init__(self, *args):
            super().__init__(*args)
            made.append((args, self))
            self.losses, self.started = [], None

        def init_from(self, embeddings, codes):
            self.started = (embeddings.clone(), codes.clone())
            super().init_from(embeddings, codes)

        def forward(self, embeddings, codes):
            loss = super().forward(embeddings, codes)
            self.losses.append(loss.item())
            return loss

    monkeypatch.setattr(head, kind.__name__, Recorded)
    config = replace(CONFIG, temperature=0.2, margin=0.3, loss=name, batch_size=1, per_class=1, val_split="none",
                     epochs=1)
    prep = loop.prepare(make_data(tmp_path / "data", classes=3, per_class=10), config, tmp_path / "cache")
    seen = []
    result = loop.fit(prep, config, progress=lambda *a: seen.append(a))
    ((args, loss_fn),) = made
    assert args == (6, 3, 0.2, 0.3)
    # up to 8 images a class embedded whole at the training size start the proxies
    embeddings, codes = loss_fn.started
    assert np.bincount(codes.numpy()).tolist() == [8, 8, 8] and embeddings.shape == (24, 6)
    assert len(loss_fn.losses) == 30  # 30 images in batches of 1
    running = [a[3]["loss"] for a in seen if a[0] == "train"]
    assert running == pytest.approx([np.mean(loss_fn.losses[max(0, i - 19):i + 1]) for i in range(30)])
    assert running[25] != pytest.approx(np.mean(loss_fn.losses[:26]))  # the last 20 only
    assert result.history[1].loss == pytest.approx(np.mean(loss_fn.losses))


def test_the_proxies_start_at_the_class_means_of_the_untrained_embeddings(stand_in, tmp_path):
    config = replace(CONFIG, val_split="none", epochs=1, lr=1e-12, head_lr_scale=1.0, weight_decay=0.0)
    prep = loop.prepare(make_data(tmp_path / "data", classes=3, per_class=4), config, tmp_path / "cache")
    loop.fit(prep, config, tmp_path / "run")
    proxies = torch.load(tmp_path / "run" / loop.CHECKPOINT, weights_only=False)["loss"]["proxies"]
    net = features(config.seed)
    with torch.no_grad():  # every image (4 a class, under 8) at the training size
        x = net(torch.from_numpy(np.stack([pixels(p, 16) for p in prep.train.paths])))
    for c in range(3):
        mean = torch.nn.functional.normalize(x[torch.from_numpy(prep.train.codes == c)].sum(0), dim=0)
        assert torch.allclose(torch.nn.functional.normalize(proxies[c], dim=0), mean, atol=1e-3)


def test_a_deadline_stops_after_the_epoch_during_which_it_passes(stand_in, tmp_path, monkeypatch):
    clock = iter(range(1000, 10_000, 10))
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    prep = _prep(tmp_path)
    result = loop.fit(prep, replace(CONFIG, epochs=5), deadline=1015)
    # the clock reads 1000 and 1010 around epoch 0, 1020 before epoch 1 (past 1015): no training epoch
    assert [e.epoch for e in result.history] == [0] and result.history[0].seconds == 10
    clock = iter(range(1000, 10_000, 10))
    monkeypatch.setattr(loop, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    result = loop.fit(prep, replace(CONFIG, epochs=5), deadline=1020)  # 1020 is not past 1020
    assert [e.epoch for e in result.history] == [0, 1]
    assert result.history[1].seconds == 10  # read at 1030 and 1040; the deadline checks at 1020 and 1050


@pytest.mark.parametrize("loss", ["normsoftmax", "proxy-anchor"])
def test_checkpoints_after_every_epoch_and_a_resumed_run_ends_as_an_uninterrupted_one(loss, stand_in, tmp_path):
    prep = _prep(tmp_path, augment="features")
    config = replace(CONFIG, augment="features", epochs=3, ema=0.5, loss=loss, margin=0.1)
    whole = loop.fit(prep, config, tmp_path / "whole", also_ema=(0.25,))

    def stop(stage, done, total, info):
        if stage == "epoch" and done == 1:
            raise Stop

    with pytest.raises(Stop):
        loop.fit(prep, config, tmp_path / "cut", progress=stop, also_ema=(0.25,))
    state = torch.load(tmp_path / "cut" / loop.CHECKPOINT, weights_only=False)
    assert state["epoch"] == 1 and state["config"] == asdict(config) and len(state["history"]) == 2
    seen = []
    resumed = loop.fit(prep, config, tmp_path / "cut", resume=True, also_ema=(0.25,),
                       progress=lambda *a: seen.append(a[:3]))
    assert seen[0] == ("train", 1, 3) and seen[-1] == ("epoch", 3, 3)  # epoch 1 not trained again
    assert [e.epoch for e in resumed.history] == [0, 1, 2, 3]
    assert resumed.history[1] == loop.Epoch(**state["history"][1])
    for a, b in zip(whole.history, resumed.history):
        assert a.loss == b.loss and a.val == b.val
    for key, value in whole.average.net.state_dict().items():
        assert torch.equal(value, resumed.average.net.state_dict()[key]), key
    for decay in (0.5, 0.25):
        for key, value in whole.average.ema[decay].items():
            assert torch.equal(value, resumed.average.ema[decay][key]), key
    assert resumed.val == whole.val and resumed.final is not None
    final = torch.load(tmp_path / "cut" / loop.CHECKPOINT, weights_only=False)
    assert final["epoch"] == 3 and [h["epoch"] for h in final["history"]] == [0, 1, 2, 3]
    assert sorted(final) == sorted(["net", "loss", "optimizer", "scheduler", "rng", "torch_rng", "epoch", "average",
                                    "history", "config"])


def test_resume_without_a_checkpoint_starts_afresh(stand_in, tmp_path):
    prep = _prep(tmp_path)
    config = replace(CONFIG, epochs=1)
    fresh = loop.fit(prep, config)
    resumed = loop.fit(prep, config, tmp_path / "empty", resume=True)
    assert [e.epoch for e in resumed.history] == [0, 1] and resumed.history[1].loss == fresh.history[1].loss
    assert (tmp_path / "empty" / loop.CHECKPOINT).exists()
    seen = []
    again = loop.fit(prep, config, tmp_path / "empty", progress=lambda *a: seen.append(a[:2]))  # not resumed
    assert [e.epoch for e in again.history] == [0, 1] and again.history[1].loss == fresh.history[1].loss
    assert seen == [("epoch", 0), ("train", 1), ("train", 2), ("train", 3), ("epoch", 1)]  # trained again


def test_the_seed_decides_the_run(stand_in, tmp_path):
    prep = _prep(tmp_path)
    a, b = loop.fit(prep, replace(CONFIG, epochs=1)), loop.fit(prep, replace(CONFIG, epochs=1))
    c = loop.fit(prep, replace(CONFIG, epochs=1, seed=4))
    assert a.history[1].loss == b.history[1].loss != c.history[1].loss


# ---- reblend


def test_reblend_exports_a_share_of_the_trained_or_averaged_weights(stand_in, tmp_path):
    prep = _prep(tmp_path, augment="features")
    result = loop.fit(prep, replace(CONFIG, augment="features", epochs=1, ema=0.5))
    key = "features.net._conv_head.weight"
    start, trained, ema = result.average.start[key], result.average.net.state_dict()[key], result.average.ema[0.5][key]
    assert result.config.ema == 0.5 and torch.equal(result.net.state_dict()[key], ema)
    half = loop.reblend(result, prep, 0.5)  # of the run's average
    assert half.config.blend == 0.5 and half.config.ema == 0.5
    assert torch.allclose(half.net.state_dict()[key], (start + ema) / 2, atol=1e-7)
    plain = loop.reblend(result, prep, 0.25, ema=0.0)  # of the trained weights
    assert plain.config.blend == 0.25 and plain.config.ema == 0.0
    assert torch.allclose(plain.net.state_dict()[key], 0.75 * start + 0.25 * trained, atol=1e-7)
    with loop.ThreadPoolExecutor(1) as pool:
        want = loop.validate(plain.net, prep, loop._Batches(prep, result.config, pool))
    assert plain.final == want and plain.val == want
    last = loop.reblend(result, prep, 1.0, ema=0.0)  # all of the training, no average: the network itself
    assert last.net is result.average.net and last.final is None and last.val == result.history[-1].val
    assert last.config.blend == 1.0 and last.config.ema == 0.0


def test_reblend_of_a_result_without_an_average_is_its_network(stand_in, tmp_path):
    result = loop.Result(features(), CONFIG, loop.resolve("efficientnet-lite0"))
    again = loop.reblend(result, None, 0.5, ema=0.25)
    assert again.net is result.net and again.final is None
    assert again.config.blend == 0.5 and again.config.ema == 0.25
    assert loop.reblend(result, None, 1.0).config.ema == CONFIG.ema


def test_reblend_whitens_a_copy_fitted_on_every_training_image_embedded_whole(stand_in, tmp_path, monkeypatch):
    prep = _prep(tmp_path)
    result = loop.fit(prep, replace(CONFIG, epochs=1))
    fitted, mean, matrix = [], np.arange(6.0) / 10, np.diag([1.0, 2, 3, 4, 5, 6])
    monkeypatch.setattr(loop, "fit_whitening", lambda x, codes, power: fitted.append((x, codes, power)) or (mean, matrix))
    white = loop.reblend(result, prep, 1.0, ema=0.0, whiten=0.5)
    assert white.config.whiten == 0.5 and result.average.net.whitening is None  # the trained network stays as it was
    (x, codes, power), = fitted
    images = torch.from_numpy(np.stack([pixels(path) for path in prep.train.paths]))  # whole, at the model's 32 px
    with torch.no_grad():
        plain, got = result.average.net(images).numpy(), white.net(images).numpy()
    assert np.allclose(x, plain, atol=1e-5) and np.array_equal(codes, prep.train.codes) and power == 0.5
    want = (plain - mean) @ matrix
    assert np.allclose(got, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-5)
    with loop.ThreadPoolExecutor(1) as pool:
        assert white.final == loop.validate(white.net, prep, loop._Batches(prep, result.config, pool)) == white.val
    plain_again = loop.reblend(result, prep, 1.0, ema=0.0, whiten=0.0)  # 0: no whitening, the network itself
    assert plain_again.net is result.average.net and plain_again.final is None and len(fitted) == 1


def test_a_run_whitens_what_it_exports_after_the_last_epoch(stand_in, tmp_path):
    prep = _prep(tmp_path)
    result = loop.fit(prep, replace(CONFIG, epochs=1, whiten=1.0))
    assert result.config.whiten == 1.0 and result.net.whitening is not None and result.average.net.whitening is None
    assert isinstance(result.net.whitening, loop.Whitening)
    with loop.ThreadPoolExecutor(1) as pool:
        assert result.val == loop.validate(result.net, prep, loop._Batches(prep, result.config, pool))
    assert result.val != result.history[-1].val  # the last epoch's scores are the unwhitened network's


def test_whitening_without_a_class_of_two_images_is_refused_before_training(stand_in, tmp_path):
    prep = loop.prepare(make_data(tmp_path / "data", classes=4, per_class=1), replace(CONFIG, val_split="none"),
                        tmp_path / "cache")
    with pytest.raises(ValueError) as e:
        loop.fit(prep, replace(CONFIG, val_split="none", whiten=0.5), tmp_path / "run")
    assert str(e.value) == "whitening needs a training class of three images or two classes of two: use --whiten 0"
    assert not (tmp_path / "run").exists()  # nothing trained, no checkpoint
    assert loop.fit(prep, replace(CONFIG, val_split="none", epochs=1), tmp_path / "plain").net.whitening is None


def test_whitening_takes_classes_of_exactly_two_images_beside_single_ones(stand_in, tmp_path):
    data = make_data(tmp_path / "data", classes=3, per_class=2)
    (data / "c2" / "1.png").unlink()  # c0 and c1: 2 images, c2: 1
    config = replace(CONFIG, val_split="none", epochs=1, whiten=0.5)
    prep = loop.prepare(data, config, tmp_path / "cache")
    assert sorted(np.bincount(prep.train.codes)) == [1, 2, 2]
    result = loop.fit(prep, config)  # classes of exactly two images, and not every class: enough
    assert isinstance(result.net.whitening, loop.Whitening) and result.config.whiten == 0.5


def test_reblend_fits_the_whitening_on_the_training_images_at_the_embedding_size(stand_in, tmp_path, monkeypatch):
    data = make_data(tmp_path / "data")
    for path in data.glob("*/*.png"):  # a fine pattern, which the resize to 32 pixels blurs
        px = np.asarray(Image.open(path)).copy()
        px[(np.indices((40, 40)).sum(0) % 2) == 1] //= 4
        Image.fromarray(px).save(path)
    prep = loop.prepare(data, replace(CONFIG, embed_size=40), tmp_path / "cache")  # the pictures' own size
    result = loop.fit(prep, replace(CONFIG, epochs=1, embed_size=40))
    fitted = []
    monkeypatch.setattr(loop, "fit_whitening", lambda x, codes, power: fitted.append(x) or (np.zeros(6), np.eye(6)))
    keys = list(result.average.net.state_dict())
    loop.reblend(result, prep, 1.0, ema=0.0, whiten=1.0)
    assert list(result.average.net.state_dict()) == keys  # the trained network gains no whitening buffers
    with torch.no_grad():
        at_40 = result.average.net(torch.from_numpy(np.stack([pixels(p, 40) for p in prep.train.paths]))).numpy()
        at_32 = result.average.net(torch.from_numpy(np.stack([pixels(p, 32) for p in prep.train.paths]))).numpy()
    (x,) = fitted
    # the stand-in's embeddings move little with the size (7e-5 here): x is the 40-pixel one to float precision
    assert np.abs(x - at_40).max() < np.abs(at_32 - at_40).max() / 20


def test_reblend_at_another_embedding_size_exports_and_records_that_size(stand_in, tmp_path):
    data = make_data(tmp_path / "data")
    result = loop.fit(loop.prepare(data, CONFIG, tmp_path / "cache"), replace(CONFIG, epochs=1))  # at 32 pixels
    at_40 = loop.reblend(result, loop.prepare(data, replace(CONFIG, embed_size=40), tmp_path / "cache"), 1.0, ema=0.0)
    assert result.spec.preprocessing.size == 32 and result.config.embed_size == 0
    assert at_40.spec.preprocessing.size == 40 and at_40.config.embed_size == 40
    assert at_40.net is result.average.net and at_40.final is not None  # the same network, validated at 40


def test_reblend_whitens_the_blend_it_exports_fitted_on_the_blends_embeddings(stand_in, tmp_path, monkeypatch):
    prep = _prep(tmp_path)
    result = loop.fit(prep, replace(CONFIG, epochs=1))
    plain = loop.reblend(result, prep, 0.5, ema=0.0, whiten=0.0)  # half trained, half the start: unwhitened
    blend = plain.net
    assert plain.centre is None  # nothing centred on another folder (lookalike.json says null)
    fitted = []
    monkeypatch.setattr(loop, "fit_whitening", lambda x, codes, power: fitted.append(x) or (np.zeros(6), np.eye(6)))
    white = loop.reblend(result, prep, 0.5, ema=0.0, whiten=0.5)
    images = torch.from_numpy(np.stack([pixels(path) for path in prep.train.paths]))
    with torch.no_grad():
        want = blend(images).numpy()
        trained = result.average.net(images).numpy()
    (x,) = fitted
    assert np.allclose(x, want, atol=1e-5) and not np.allclose(x, trained, atol=1e-3)
    weights = {k: v for k, v in white.net.state_dict().items() if not k.startswith("whitening.")}
    assert weights.keys() == blend.state_dict().keys()
    assert all(torch.equal(v, blend.state_dict()[k]) for k, v in weights.items())
    assert white.config.blend == 0.5 and white.config.whiten == 0.5


def _centred(tmp_path, monkeypatch, whiten):
    """A one-epoch run exported with ``whiten``, centred on another folder's images (one unreadable);
    returns (result, export, the centring images, what the whitening fit returned, its calls)."""
    centre = make_data(tmp_path / "collection", classes=2, per_class=3, seed=7)
    (centre / "c1" / "broken.png").write_bytes(b"not a picture")
    prep = loop.prepare(make_data(tmp_path / "data"), CONFIG, tmp_path / "cache", centre_dir=centre)
    result = loop.fit(prep, replace(CONFIG, epochs=1))
    fitted, matrix = [], np.diag([1.0, 2, 3, 4, 5, 6])
    monkeypatch.setattr(loop, "fit_whitening",
                        lambda x, codes, power: fitted.append(power) or (np.full(6, 9.0), matrix))
    out = loop.reblend(result, prep, 1.0, ema=0.0, whiten=whiten)
    images = sorted(str(p) for p in centre.glob("*/*.png") if p.name != "broken.png")
    return result, out, images, matrix, fitted


def test_reblend_centres_the_whitened_embedding_on_another_folders_images(stand_in, tmp_path, monkeypatch):
    result, white, images, matrix, fitted = _centred(tmp_path, monkeypatch, 0.5)
    assert fitted == [0.5]  # the whitening still comes from the training images; only its centre moves
    with torch.no_grad():
        plain = result.average.net(torch.from_numpy(np.stack([pixels(p) for p in images]))).numpy()
        got = white.net(torch.from_numpy(np.stack([pixels(p) for p in images]))).numpy()
    want = (plain - plain.mean(axis=0)) @ matrix  # their mean, not the training images' (the fit's 9s)
    # the stand-in's embeddings differ by about 1e-4, so their differences carry float32 rounding
    assert np.allclose(got, want / np.linalg.norm(want, axis=1, keepdims=True), atol=5e-3)
    root = str(tmp_path / "collection")
    assert white.centre == {"data": root, "listed": 7, "images": 6,
                            "unreadable": [[f"{root}/c1/broken.png", white.centre["unreadable"][0][1]]]}
    assert white.centre["unreadable"][0][1]  # with its reason
    assert white.val == white.final != result.history[-1].val  # validated as exported, centred


def test_reblend_centres_an_unwhitened_embedding_without_fitting_a_whitening(stand_in, tmp_path, monkeypatch):
    result, out, images, _, fitted = _centred(tmp_path, monkeypatch, 0.0)
    assert fitted == [] and out.config.whiten == 0.0 and result.average.net.whitening is None
    with torch.no_grad():
        plain = result.average.net(torch.from_numpy(np.stack([pixels(p) for p in images]))).numpy()
        got = out.net(torch.from_numpy(np.stack([pixels(p) for p in images]))).numpy()
    want = plain - plain.mean(axis=0)
    assert np.allclose(got, want / np.linalg.norm(want, axis=1, keepdims=True), atol=5e-3)
    assert np.allclose(out.net.whitening.matrix.numpy(), np.eye(6)) and out.centre["images"] == 6


def test_a_folder_to_centre_on_without_images_or_with_none_readable_is_an_error(stand_in, tmp_path):
    data = make_data(tmp_path / "data")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=f"^no images to centre on in {tmp_path / 'empty'}$"):
        loop.prepare(data, CONFIG, tmp_path / "cache", centre_dir=tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"broken")
    prep = loop.prepare(data, CONFIG, tmp_path / "cache", centre_dir=tmp_path / "bad")
    with pytest.raises(ValueError, match=f"^none of the 1 images to centre on in {tmp_path / 'bad'} could be read$"):
        loop.fit(prep, replace(CONFIG, epochs=1), tmp_path / "run")
    assert (tmp_path / "run" / loop.CHECKPOINT).exists()  # the training is kept, for --resume


def test_a_preparation_centred_on_its_validation_images_is_a_copy_that_centres_on_them(stand_in, tmp_path):
    prep = _prep(tmp_path)
    centred = prep.centred_on_val()
    assert centred.centre == tuple(prep.val.paths) and centred.centre_root == prep.val.root
    assert centred.centre_listed == len(prep.val) > 0 and prep.centre == ()
    assert (centred.train, centred.val, centred.cache_dir) == (prep.train, prep.val, prep.cache_dir)


def test_a_large_folder_to_centre_on_is_sampled_the_same_way_each_time(stand_in, tmp_path, monkeypatch):
    monkeypatch.setattr(loop, "CENTRE_IMAGES", 5)
    data, collection = make_data(tmp_path / "data"), make_data(tmp_path / "collection", classes=4, per_class=5)
    prep = loop.prepare(data, CONFIG, tmp_path / "cache", centre_dir=collection)
    assert prep.centre_listed == 20 and len(prep.centre) == 5 and list(prep.centre) == sorted(set(prep.centre))
    assert set(prep.centre) <= {str(p) for p in collection.glob("*/*.png")}
    assert loop.prepare(data, CONFIG, tmp_path / "cache", centre_dir=collection).centre == prep.centre  # seeded


def test_a_folder_to_centre_on_made_of_links_to_outside_is_followed_when_asked(stand_in, tmp_path):
    data, outside = make_data(tmp_path / "data"), make_data(tmp_path / "outside", classes=2, per_class=3, seed=2)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "linked").symlink_to(outside / "c0")
    prep = loop.prepare(data, CONFIG, tmp_path / "cache", centre_dir=tmp_path / "photos", follow_links=True)
    assert prep.centre == tuple(str(tmp_path / "photos" / "linked" / f"{i}.png") for i in range(3))
    with pytest.raises(ValueError, match="^no images to centre on in "):  # the link left out
        loop.prepare(data, CONFIG, tmp_path / "cache", centre_dir=tmp_path / "photos")


def test_a_single_pair_of_images_to_whiten_from_is_refused_before_training(stand_in, tmp_path):
    data = make_data(tmp_path / "data", classes=3, per_class=1)
    (data / "c0" / "1.png").write_bytes((data / "c1" / "0.png").read_bytes())  # one pair: one direction
    config = replace(CONFIG, val_split="none", epochs=1, whiten=0.5)
    prep = loop.prepare(data, config, tmp_path / "cache")
    with pytest.raises(ValueError, match="^whitening needs a training class of three images or two classes of two"):
        loop.fit(prep, config, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing trained, no checkpoint


def test_a_run_whose_classes_vary_in_no_direction_is_refused_not_exported_with_nan(stand_in, tmp_path):
    data = make_data(tmp_path / "data", classes=2, per_class=2)
    for c in ("c0", "c1"):  # two classes of two identical images: enough images, no spread
        (data / c / "1.png").write_bytes((data / c / "0.png").read_bytes())
    config = replace(CONFIG, val_split="none", epochs=1, whiten=0.5)
    prep = loop.prepare(data, config, tmp_path / "cache")
    with pytest.raises(ValueError, match="^whitening needs more spread within the training classes.*use --whiten 0$"):
        loop.fit(prep, config, tmp_path / "run")
    assert (tmp_path / "run").exists()  # refused after training: only the embeddings show it
