"""``index --from SHARDS``: an index loaded from shards answers exactly as one built from the folder,
updates incrementally, records skipped files and refuses another model's shards."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("pyarrow")
pytestmark = pytest.mark.slow

from lookalike.api import Index  # noqa: E402
from lookalike.cluster.embed import embed, model_spec  # noqa: E402
from lookalike.cluster.from_shards import index_shards  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402


@pytest.fixture()
def photos(photo_dir, tmp_path):
    """A copy of the shared photos (tests change it) with one broken file."""
    root = tmp_path / "photos"
    shutil.copytree(photo_dir, root)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    return root


def answers(idx: Index, queries) -> list:
    return [[(m.path, m.distance) for m in idx.query(str(q), k=6, mode=mode, metric=metric).results]
            for q in queries for mode in ("nearest", "farthest") for metric in ("cosine", "l2")]


def test_index_from_shards_answers_as_index_from_folder(photos, tmp_path):
    shards = str(tmp_path / "shards")
    embed(str(photos), shards, model_spec(), "local", shard_rows=5)
    queries = [photos / f"{name}.jpg" for name in ("chelsea", "coffee", "rocket", "coins")]
    with Index.open(tmp_path / "direct", create=True) as direct, \
            Index.open(tmp_path / "loaded", create=True) as loaded:
        direct.index(photos)
        report = index_shards(loaded, shards)
        assert (report.indexed, report.total, len(loaded)) == (len(direct), len(direct), len(direct))
        assert [p for p, _ in report.skipped] == [str(photos / "broken.jpg")]
        assert sorted(report.added) == sorted(direct.paths(direct.vectors()[0]))
        for a, b in zip(answers(direct, queries), answers(loaded, queries)):
            assert [p for p, _ in a] == [p for p, _ in b]
            np.testing.assert_allclose([d for _, d in a], [d for _, d in b], atol=1e-5)
        again = index_shards(loaded, shards)
        assert (again.indexed, again.unchanged, len(again.skipped)) == (0, len(direct), 1)


def test_changed_file_reaches_the_index_through_new_shards(photos, tmp_path):
    shards = str(tmp_path / "shards")
    embed(str(photos), shards, model_spec(), "local")
    with Index.open(tmp_path / "loaded", create=True) as idx:
        index_shards(idx, shards)
        target = photos / "chelsea.jpg"
        target.write_bytes((photos / "coffee.jpg").read_bytes())
        assert embed(str(photos), shards, model_spec(), "local").embedded == 1
        report = index_shards(idx, shards)
        assert (report.indexed, report.changed) == (1, [str(target)])
        top = idx.query(str(photos / "coffee.jpg"), k=2).results
        assert {m.path for m in top} == {str(target), str(photos / "coffee.jpg")}
        assert max(m.distance for m in top) < 1e-6


def test_ivfpq_index_from_shards(photos, tmp_path):
    shards = str(tmp_path / "shards")
    embed(str(photos), shards, model_spec(), "local")
    with Index.open(tmp_path / "loaded", create=True) as idx:
        idx.set_ann("ivfpq")
        index_shards(idx, shards)
        assert idx.index_type == "ivfpq" and idx.ann().describe()["ntotal"] == len(idx)
        result = idx.query(str(photos / "coffee.jpg"), k=1).results[0]
        assert result.path == str(photos / "coffee.jpg") and result.distance < 1e-6


def test_shards_of_another_model_are_refused(photos, tmp_path):
    shards = str(tmp_path / "shards")
    embed(str(photos), shards, model_spec(layer="blocks"), "local")
    with Index.open(tmp_path / "idx", create=True) as idx, pytest.raises(StoreError, match="layer blocks"):
        index_shards(idx, shards)
