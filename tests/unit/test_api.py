"""The Python API's Index over a catalog of synthetic vectors, with a stand-in embedder."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lookalike.api import Index
from lookalike.index.embedded import EmbeddedCollection
from lookalike.images import ImageError, content_hash
from lookalike.models.registry import resolve
from lookalike.index.store import Entry, Store

DIM = 8


class CountingEmbedder:
    """Embeds an image as its mean colour padded to DIM, counting the images it was given."""

    def __init__(self) -> None:
        self.images = 0

    def embed_images(self, images):
        self.images += len(images)
        return np.stack([np.resize(np.asarray(im, np.float32).mean((0, 1)), DIM) for im in images])


def png(colour, size=(16, 12)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def index(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((30, DIM)).astype(np.float32) * rng.uniform(0.5, 2, (30, 1)).astype(np.float32)
    spec = resolve()
    store = Store.create(tmp_path, {**spec.identity(), "dim": DIM}, ref=spec.name)
    store.put([Entry(f"/p/{i:02d}.png", 10 + i, 1, f"h{i}", 4, 3, v) for i, v in enumerate(vectors)]
              + [Entry("/p/copy.png", 10, 1, "h0", 4, 3, vectors[0])])
    embedder = CountingEmbedder()
    idx = Index(EmbeddedCollection(store), spec, embedder=embedder)
    yield idx, vectors, embedder
    idx.close()


def brute(q, vectors, metric):
    q, x = q.astype(np.float64), vectors.astype(np.float64)
    if metric == "cosine":
        return 1 - x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    return np.linalg.norm(x - q, axis=1)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_query_vector_nearest_and_farthest_are_brute_force(index, metric):
    idx, vectors, embedder = index
    q = vectors[3] + 0.1
    d = brute(q, vectors, metric)
    ids = {m.path: m.id for m in idx.query_vector(q, 100).results}
    for mode, order in (("nearest", np.argsort(d, kind="stable")), ("farthest", np.argsort(-d, kind="stable"))):
        found = idx.query_vector(q, 4, mode, metric, label="q")
        assert (found.query, found.mode, found.metric) == ("q", mode, metric)
        want = [f"/p/{i:02d}.png" for i in order][:3]  # /p/copy.png ties with /p/00.png
        got = [m.path for m in found.results if m.path != "/p/copy.png"][:3]
        assert got == want
        np.testing.assert_allclose([m.distance for m in found.results if m.path != "/p/copy.png"][:3],
                                   [d[int(p[3:5])] for p in got[:3]], rtol=1e-9)
        assert [m.rank for m in found.results] == [1, 2, 3, 4]
    # ids in ``exclude`` never appear; k beyond the collection gives every image once
    everything = idx.query_vector(q, 1000, exclude=[ids["/p/05.png"]])
    assert len(everything.results) == 30 and "/p/05.png" not in {m.path for m in everything.results}


def test_random_is_reproducible_and_bad_options_fail_first(index):
    idx, vectors, embedder = index
    a = idx.query_vector(vectors[0], 5, "random", seed=3)
    assert [m.path for m in a.results] == [m.path for m in idx.query_vector(vectors[0], 5, "random", seed=3).results]
    for bad, message in (({"metric": "dot"}, "unknown metric 'dot'"), ({"mode": "sideways"}, "unknown mode 'sideways'"),
                         ({"k": 0}, "k must be at least 1, not 0")):
        with pytest.raises(ValueError, match=message):
            idx.query(b"never decoded", **bad)
    assert embedder.images == 0


def test_catalog_lookups_and_stats(index, tmp_path):
    idx, vectors, embedder = index
    assert idx.root == tmp_path and idx.model["dim"] == DIM and len(idx) == 31
    assert idx.stats() == {"count": 31, "model": idx.model["name"], "layer": idx.model["layer"], "dims": DIM,
                           "index_type": "exact"}
    first = idx.query_vector(vectors[7], 1).results[0]
    assert idx.paths([first.id]) == ["/p/07.png"]
    assert idx.info(first.id)["hash"] == "h7" and idx.info(10**6) is None
    vector, same = idx.stored(first.id)
    np.testing.assert_array_equal(vector, vectors[7])
    assert same == [first.id] and idx.stored(10**6) is None
    copies = idx.stored(idx.query_vector(vectors[0], 2).results[0].id)[1]
    assert sorted(idx.paths(copies)) == ["/p/00.png", "/p/copy.png"]


def test_embed_reuses_indexed_and_cached_vectors_and_checks_the_pixel_limit(index):
    idx, _, embedder = index
    red = png((255, 0, 0))
    cache: dict = {}
    vector, same = idx.embed(red, cache=cache)
    assert same == [] and embedder.images == 1 and list(cache) == [content_hash(red)]
    again, _ = idx.embed(red, cache=cache)
    assert embedder.images == 1 and again is vector
    idx.embed(red)  # no cache: the model runs again
    assert embedder.images == 2
    with pytest.raises(ImageError, match="too large"):
        idx.embed(png((0, 0, 255), size=(100, 100)), max_pixels=1000)
    assert embedder.images == 2


def test_a_new_generation_gets_a_new_searcher(index):
    idx, vectors, embedder = index
    before = idx.searcher()
    assert idx.searcher() is before
    idx.collection.store.put([Entry("/p/new.png", 1, 1, "new", 1, 1, -vectors[4])])
    assert idx.searcher() is not before and len(idx.searcher()) == 32
    assert idx.query_vector(-vectors[4], 1).results[0].path == "/p/new.png"


def test_a_raw_onnx_model_gets_one_session(tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper

    from lookalike.models import embedder as embedder_module

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["x"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["y"])],
        "mean-colour", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "mean.onnx")
    (tmp_path / "mean.json").write_text('{"input_size": 16, "mean": [0, 0, 0], "std": [1, 1, 1]}')  # no dim
    sessions = []
    real = embedder_module.ort_session
    monkeypatch.setattr(embedder_module, "ort_session", lambda *a, **kw: sessions.append(a) or real(*a, **kw))
    with Index.open(tmp_path / "index", model=str(tmp_path / "mean.onnx"), create=True, threads=1) as idx:
        assert idx.spec.dim == 3
        vector, _ = idx.embed(png((255, 0, 0)))
    np.testing.assert_allclose(vector, [1.0, 0.0, 0.0], atol=1e-6)
    assert len(sessions) == 1


def test_rebuild_wipes_the_index_a_tilde_in_lookalike_index_names(monkeypatch, tmp_path):
    """``LOOKALIKE_INDEX='~/idx'``: --rebuild starts that index again (the path is expanded before the
    wipe looks for it, not after)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LOOKALIKE_INDEX", "~/idx")
    with Index.open(create=True) as idx:
        idx.collection.store.put([Entry("/p/a.jpg", 1, 1, "h", 2, 2, np.ones(idx.collection.store.dim or 1280, np.float32))])
        assert len(idx) == 1 and idx.root == tmp_path / "idx"
    (tmp_path / "idx" / "stray.txt").write_text("left by the old index")
    with Index.open(create=True, rebuild=True) as idx:
        assert len(idx) == 0 and idx.root == tmp_path / "idx"
    assert not (tmp_path / "idx" / "stray.txt").exists()


def test_query_by_image_labels_it_keeps_its_own_file_unless_excluded_and_honours_the_seed(index, tmp_path):
    """``query`` embeds a path, bytes or a PIL image and names it (the path, ``<upload>``, ``<image>``,
    or the label given); an indexed file with the query's bytes comes first unless ``exclude_self``;
    a random draw with a seed is the one ``query_vector`` draws for that vector and seed."""
    idx, vectors, embedder = index
    red = png((255, 0, 0))
    red_vector = embedder.embed_images([Image.open(io.BytesIO(red)).convert("RGB")])[0]
    idx.collection.store.put([Entry("/p/red.png", len(red), 1, content_hash(red), 16, 12, red_vector)])
    (tmp_path / "red.png").write_bytes(red)
    queries = {str(tmp_path / "red.png"): tmp_path / "red.png", "<upload>": red,
               "<image>": Image.open(io.BytesIO(red))}
    for label, image in queries.items():
        found = idx.query(image, 3)
        assert found.query == label and found.results[0].path == "/p/red.png" and found.results[0].distance == 0
        if label != "<image>":  # a PIL image has no file bytes to match
            assert "/p/red.png" not in [m.path for m in idx.query(image, 3, exclude_self=True).results]
        assert idx.query(image, 1, label="mine").query == "mine"
    drawn = idx.query(red, 6, "random", seed=11)
    assert drawn.seed == 11
    by_vector = idx.query_vector(red_vector, 6, "random", seed=11)
    assert [m.path for m in drawn.results] == [m.path for m in by_vector.results]
    assert [m.path for m in drawn.results] != [m.path for m in idx.query(red, 6, "random", seed=12).results]


def test_members_below_a_folder_leave_out_a_sibling_whose_name_extends_it_and_read_gives_a_files_bytes(index, tmp_path):
    idx, vectors, _ = index
    (tmp_path / "q").mkdir()
    red = png((255, 0, 0))
    (tmp_path / "q" / "red.png").write_bytes(red)
    red_file = Entry(str(tmp_path / "q" / "red.png"), len(red), 1, content_hash(red), 16, 12, vectors[1])
    idx.collection.store.put([red_file,
                              Entry(str(tmp_path / "q2.png"), 1, 1, "hq2", 4, 3, vectors[2]),
                              Entry(str(tmp_path / "q2" / "x.png"), 1, 1, "hx", 4, 3, vectors[3])],
                             [(str(tmp_path / "q" / "broken.png"), 5, 1, "not an image"),
                              (str(tmp_path / "q2" / "broken.png"), 5, 1, "not an image")])
    ids, skipped = idx.members(str(tmp_path / "q"))
    assert idx.paths(ids) == [str(tmp_path / "q" / "red.png")]
    assert skipped == [(str(tmp_path / "q" / "broken.png"), "not an image")]
    everything, all_skipped = idx.members()
    assert len(everything) == 34 and len(all_skipped) == 2
    assert idx.read(str(tmp_path / "q" / "red.png")) == red


def test_a_map_laid_out_or_brought_up_to_date_is_kept_packed_for_the_page(index, monkeypatch):
    """layout() keeps the map as the page reads it beside the index (map.bin), decoding to the map
    it returned; a change of the index makes it stale until the map is brought up to date."""
    from helpers import read_binary_map
    from lookalike.map import layout, packed

    idx, vectors, _ = index
    monkeypatch.setattr(layout, "lay_out", lambda v: layout.fit_unit_square(v[:, :2]))  # no UMAP here
    m = idx.layout()
    assert m.how == "laid out"
    head, col = read_binary_map(packed.stored(idx.root, idx.map_generation()))
    assert col["ids"].tolist() == m.ids.tolist() and head["generation"] == m.generation
    assert col["x"].tobytes() == m.xy[:, 0].tobytes() and col["y"].tobytes() == m.xy[:, 1].tobytes()
    assert col["names"] == [p.rsplit("/", 1)[1] for p in idx.paths(m.ids)]
    assert col["cluster"].tolist() == m.clusters.tolist()
    kept = (idx.root / packed.PACKED_FILE).read_bytes()
    assert idx.layout().how == "cached" and (idx.root / packed.PACKED_FILE).read_bytes() == kept
    idx.collection.store.put([Entry("/p/new.png", 99, 1, "hnew", 4, 3, vectors[1] * 2)])
    assert packed.stored(idx.root, idx.map_generation()) is None  # stale: another generation
    m2 = idx.layout()
    assert m2.how == "placed" and len(m2.ids) == len(m.ids) + 1
    head, col = read_binary_map(packed.stored(idx.root, idx.map_generation()))
    assert col["ids"].tolist() == m2.ids.tolist() and col["x"].tobytes() == m2.xy[:, 0].tobytes()
    assert "new.png" in col["names"] and head["generation"] == idx.map_generation()
