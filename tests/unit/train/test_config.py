"""Training settings (train/config.py): the defaults the training guide documents, settings read back
from a checkpoint's dictionary, and a one-line refusal of each setting that cannot work, at its edges."""

from __future__ import annotations

from dataclasses import asdict, replace

import pytest

from lookalike.train.config import TrainConfig

# the recipe as docs/training.md states it ("The recipe", "Validation holds out whole classes by
# default (--val-split classes, 20 % of them)", --blend default 1, --ema default 0, --lr-decay default 1,
# --embed-size default 0: the base model's input size; crops rendered at 160 pixels, trained at 224)
DOCUMENTED = {"model": "efficientnet-lite0", "layer": "pool", "dim": 1280, "temperature": 0.05, "margin": 0.0,
              "loss": "normsoftmax",
              "epochs": 4, "lr": 3e-5, "head_lr_scale": 10.0, "lr_decay": 1.0, "unfreeze": 11, "batch_size": 32,
              "per_class": 4, "train_size": 224, "crop_size": 160, "crop_scale": 0.3, "augment": "pixels", "ema": 0.0, "blend": 1.0,
              "embed_size": 0, "whiten": 0.5,
              "val_split": "classes", "val_fraction": 0.2, "seed": 0}


def test_the_defaults_are_the_documented_recipe():
    config = asdict(TrainConfig())
    assert {k: config[k] for k in DOCUMENTED} == DOCUMENTED
    assert config["weight_decay"] == 1e-4
    TrainConfig().check()  # the defaults work


def test_settings_read_back_from_a_dictionary_ignore_names_they_do_not_know():
    stored = {**asdict(TrainConfig(dim=64, seed=3)), "removed_setting": 1}
    assert TrainConfig.from_dict(stored) == TrainConfig(dim=64, seed=3)
    assert TrainConfig.from_dict({"epochs": 2}) == TrainConfig(epochs=2)  # missing ones at their defaults


@pytest.mark.parametrize("change, message", [
    ({"dim": 0}, "dim must be at least 1"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"batch_size": 0}, "batch-size must be at least 1"),
    ({"per_class": 0}, "per-class must be at least 1"),
    ({"train_size": 0}, "train-size must be at least 1"),
    ({"temperature": 0.0}, "temperature and lr must be positive"),
    ({"lr": 0.0}, "temperature and lr must be positive"),
    ({"unfreeze": -1}, "unfreeze must be 0 or more"),
    ({"margin": -0.01}, "margin must be in [0, 1)"),
    ({"margin": 1.0}, "margin must be in [0, 1)"),
    ({"crop_scale": 0.0}, "crop-scale must be in (0, 1]"),
    ({"crop_scale": 1.01}, "crop-scale must be in (0, 1]"),
    ({"lr_decay": 0.0}, "lr-decay must be in (0, 1]"),
    ({"lr_decay": 1.01}, "lr-decay must be in (0, 1]"),
    ({"ema": -0.01}, "ema must be in [0, 1)"),
    ({"ema": 1.0}, "ema must be in [0, 1)"),
    ({"blend": -0.01}, "blend must be in [0, 1]"),
    ({"blend": 1.01}, "blend must be in [0, 1]"),
    ({"whiten": -0.01}, "whiten must be in [0, 1]"),
    ({"whiten": 1.01}, "whiten must be in [0, 1]"),
    ({"augment": "both"}, "augment must be pixels or features, not 'both'"),
    ({"loss": "proxy_anchor"}, "loss must be normsoftmax or proxy-anchor, not 'proxy_anchor'"),
    ({"crop_size": -1}, "crop-size must be 0 (the training size) or more"),
    ({"embed_size": 31}, "embed-size must be 0 (the base model's input size) or at least 32"),
    ({"embed_size": -1}, "embed-size must be 0 (the base model's input size) or at least 32"),
])
def test_each_setting_that_cannot_work_is_refused_in_one_line(change, message):
    with pytest.raises(ValueError) as e:
        replace(TrainConfig(), **change).check()
    assert str(e.value) == message


@pytest.mark.parametrize("change", [
    {"dim": 1, "epochs": 1, "batch_size": 1, "per_class": 1, "train_size": 1}, {"unfreeze": 0},
    {"margin": 0.0}, {"margin": 0.99},
    {"crop_scale": 1.0}, {"crop_scale": 1e-6}, {"lr_decay": 1.0}, {"lr_decay": 1e-6}, {"ema": 0.0}, {"ema": 0.999},
    {"blend": 0.0}, {"blend": 1.0}, {"whiten": 0.0}, {"whiten": 1.0}, {"augment": "features"}, {"temperature": 1e-9, "lr": 1e-12},
    {"embed_size": 0}, {"embed_size": 32}, {"crop_size": 0}, {"crop_size": 1}, {"loss": "proxy-anchor"},
])
def test_settings_at_the_edges_of_what_works_are_accepted(change):
    replace(TrainConfig(), **change).check()
