"""write_model_dir on a stand-in network (tiny_lite.py) at a 32-pixel input: what the model directory
holds, read back and compared with values worked out by hand."""

import json
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from PIL import Image

from lookalike.models.embedder import Embedder
from lookalike.models.preprocess import Preprocessing
from lookalike.models.registry import resolve
from lookalike.train import save
from lookalike.train.config import TrainConfig
from lookalike.train.head import EmbeddingNet
from lookalike.train.loop import Epoch, Result

from tiny_lite import tiny_features

CONFIG = TrainConfig(dim=6, epochs=2, unfreeze=2, lr=2e-5)
HISTORY = [Epoch(0, None, 1.5, {"recall@1": 0.25, "map": 0.125}),
           Epoch(1, 2.5, 10.0, {"recall@1": 0.5, "map": 0.375}),
           Epoch(2, 1.75, 9.0, {"recall@1": 0.625, "map": 0.5})]


def _result(history=HISTORY, final=None):
    spec = replace(resolve("efficientnet-lite0"),
                   preprocessing=Preprocessing(32, mean=(0.25, 0.5, 0.75), std=(0.5, 0.25, 0.125)))
    net = EmbeddingNet(tiny_features(), CONFIG.dim).eval()
    return Result(net=net, config=CONFIG, spec=spec, history=list(history), final=final)


@pytest.fixture
def written(tmp_path):
    """One directory written per test (not per module: mutmut runs, for a mutant, only the tests
    during whose call or function-scoped setup the mutated function ran)."""
    out = tmp_path / "runs" / "flowers-tuned"
    out.mkdir(parents=True)
    (out / "checkpoint.pt").write_bytes(b"training state")
    (out / "notes.txt").write_text("mine")
    result = _result()
    before = time.time()
    onnx_path = save.write_model_dir(result, out, extra={"split": {"val_images": 12}})
    return result, out, onnx_path, before, time.time()


def test_the_directory_holds_the_model_the_metadata_and_the_curves_and_no_checkpoint(written):
    result, out, onnx_path, _, _ = written
    assert onnx_path == out / "model.onnx"
    assert sorted(p.name for p in out.iterdir()) == ["lookalike.json", "model.onnx", "notes.txt", "training.png"]
    assert (out / "notes.txt").read_text() == "mine"  # only the checkpoint goes
    with Image.open(out / "training.png") as im:
        assert im.format == "PNG" and im.size == (640, 360)


def test_the_metadata_reads_back_as_worked_out_by_hand(written):
    _, out, _, before, after = written
    text = (out / "lookalike.json").read_text()
    assert text.splitlines()[1] == '  "name": "flowers-tuned",'  # indented for people to read
    meta = json.loads(text)
    created = meta.pop("created")
    stamp = time.mktime(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))
    assert int(before) - 1 <= stamp <= after + 1 and created[19] in "+-" and len(created) == 24
    training = meta.pop("training")
    assert training["dim"] == 6 and training["epochs"] == 2 and training["unfreeze"] == 2 and training["lr"] == 2e-5
    assert training["model"] == "efficientnet-lite0" and training["temperature"] == 0.05
    assert meta == {
        "name": "flowers-tuned",  # the directory's name
        "input_size": 32, "mean": [0.25, 0.5, 0.75], "std": [0.5, 0.25, 0.125], "resize": "bilinear",
        "dim": 6,
        "base_model": "efficientnet-lite0", "base_layer": "pool",
        "method": "NormSoftmax fine-tuning",
        "validation": {"recall@1": 0.625, "map": 0.5},  # the last epoch's
        "history": [{"epoch": 0, "loss": None, "seconds": 1.5, "val": {"recall@1": 0.25, "map": 0.125}},
                    {"epoch": 1, "loss": 2.5, "seconds": 10.0, "val": {"recall@1": 0.5, "map": 0.375}},
                    {"epoch": 2, "loss": 1.75, "seconds": 9.0, "val": {"recall@1": 0.625, "map": 0.5}}],
        "split": {"val_images": 12},
    }


def test_the_directory_is_a_model_that_embeds_like_the_trained_network(written):
    result, out, onnx_path, _, _ = written
    spec = resolve(str(out))
    assert spec.dim == 6 and spec.onnx_path == onnx_path.resolve()
    assert spec.preprocessing.size == 32 and tuple(spec.preprocessing.mean) == (0.25, 0.5, 0.75)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)  # 3: the batch is dynamic
    got = Embedder(spec, threads=1).embed(x)
    assert got.shape == (3, 6)
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    with torch.no_grad():
        assert np.allclose(result.net(torch.from_numpy(x)).numpy(), got, atol=1e-4)


def test_a_whitened_network_is_exported_with_its_whitening(tmp_path):
    from lookalike.train.whiten import Whitening

    result = _result()
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        plain = result.net(torch.from_numpy(x)).numpy()
    mean, matrix = np.linspace(-0.2, 0.3, 6), np.diag([4.0, 1, 1, 1, 1, 0.25])
    result.net.whitening = Whitening(mean, matrix)
    save.write_model_dir(result, tmp_path / "white")
    got = Embedder(resolve(str(tmp_path / "white")), threads=1).embed(x)
    want = (plain - mean) @ matrix
    assert np.allclose(got, want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-4)


def test_a_given_name_and_the_final_validation_win(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    final = {"recall@1": 0.75, "map": 0.625}  # averaged/blended weights validated again
    save.write_model_dir(_result(final=final), ".", name="tuned")
    meta = json.loads((tmp_path / "lookalike.json").read_text())
    assert meta["name"] == "tuned" and meta["validation"] == final

    save.write_model_dir(_result(), tmp_path / "runs" / "new")  # made, with its parent
    assert (tmp_path / "runs" / "new" / "model.onnx").is_file()

    (tmp_path / "again").mkdir()
    monkeypatch.chdir(tmp_path / "again")
    save.write_model_dir(_result(), ".")  # "." names the directory it is
    assert json.loads((tmp_path / "again" / "lookalike.json").read_text())["name"] == "again"


@pytest.fixture
def figure(monkeypatch):
    """The figure plot_history draws, kept from being closed."""
    import matplotlib.pyplot as plt

    close, kept = plt.close, []
    monkeypatch.setattr(plt, "close", kept.append)
    yield kept
    for fig in kept:
        close(fig)


def test_the_curves_are_the_loss_and_the_validation_per_epoch(tmp_path, figure, monkeypatch):
    import matplotlib
    from cycler import cycler

    monkeypatch.setitem(matplotlib.rcParams, "axes.prop_cycle", cycler(color=["black"]))  # a user's style
    history = [HISTORY[0], replace(HISTORY[1], val=None), HISTORY[2]]  # epoch 1 not validated
    save.plot_history(_result(history), tmp_path / "c.png")
    (fig,) = figure
    loss_ax, val_ax = fig.axes
    (loss,) = loss_ax.lines
    assert list(loss.get_xdata()) == [1, 2] and list(loss.get_ydata()) == [2.5, 1.75]  # epoch 0 was not trained
    recall, mean_ap = val_ax.lines
    assert list(recall.get_xdata()) == [0, 2] and list(recall.get_ydata()) == [0.25, 0.625]
    assert list(mean_ap.get_xdata()) == [0, 2] and list(mean_ap.get_ydata()) == [0.125, 0.5]
    assert len({to_hex(line.get_color()) for line in (loss, recall, mean_ap)}) == 3  # told apart by colour
    assert all(line.get_marker() not in (None, "None", "") for line in (loss, recall, mean_ap))  # one mark an epoch
    assert val_ax.get_ylim() == (0, 1)
    assert all(t == int(t) for t in loss_ax.get_xticks())  # epochs are whole
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == [
        "training loss", "validation recall@1", "validation map"]
    assert loss_ax.get_xlabel() == "epoch (0: before training)"
    assert loss_ax.get_ylabel() == "loss" and val_ax.get_ylabel() == "validation"
    assert loss_ax.get_title() == "efficientnet-lite0 + NormSoftmax (6-d)"
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_loss_keeps_a_colour_of_its_own_under_a_style_that_starts_with_the_validations(tmp_path, figure,
                                                                                           monkeypatch):
    import matplotlib
    from cycler import cycler

    # a user's style whose cycle starts with the validation curves' colours: a loss curve left to the
    # cycle would be drawn in the recall curve's blue
    monkeypatch.setitem(matplotlib.rcParams, "axes.prop_cycle", cycler(color=["tab:blue", "tab:orange"]))
    save.plot_history(_result(HISTORY), tmp_path / "c.png")
    (fig,) = figure
    (loss,), (recall, mean_ap) = fig.axes[0].lines, fig.axes[1].lines
    assert len({to_hex(line.get_color()) for line in (loss, recall, mean_ap)}) == 3


def test_the_picture_is_640_by_360_whatever_the_default_resolution(tmp_path, monkeypatch):
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "figure.dpi", 50)
    save.plot_history(_result(), tmp_path / "c.png")
    with Image.open(tmp_path / "c.png") as im:
        assert im.size == (640, 360)


def test_without_validation_the_curves_are_the_loss_alone(tmp_path, figure):
    history = [replace(e, val=None) for e in HISTORY]
    save.plot_history(_result(history), tmp_path / "c.png")
    (fig,) = figure
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training loss"]
    assert list(ax.lines[0].get_ydata()) == [2.5, 1.75]
