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
    sessions, devices = [], []
    real = embedder_module.ort_session
    monkeypatch.setattr(embedder_module, "ort_session", lambda *a, **kw: sessions.append(a) or real(*a, **kw))
    monkeypatch.setattr(embedder_module, "providers", lambda device: devices.append(device) or ["CPUExecutionProvider"])
    with Index.open(tmp_path / "index", model=str(tmp_path / "mean.onnx"), create=True, threads=1, device="auto") as idx:
        assert idx.spec.dim == 3
        vector, _ = idx.embed(png((255, 0, 0)))
    np.testing.assert_allclose(vector, [1.0, 0.0, 0.0], atol=1e-6)
    assert len(sessions) == 1 and sessions[0][1] == 1 and devices == ["auto"]  # the threads and device asked for


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


# -- found by mutation testing: the answers' shape, the options passed on, the index folder's lifecycle --

from lookalike import api  # noqa: E402
from lookalike.api import Match, QueryResult  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402
from lookalike.vectors import Mode  # noqa: E402


class StandInSearcher:
    """Answers every query with the (distance, id) rows it was made with, recording each query."""

    def __init__(self, rows) -> None:
        self.rows, self.asked = rows, []

    def query(self, vector, k, mode, metric, seed, **options):
        self.asked.append({"k": k, "mode": mode, "metric": metric.name, "seed": seed, **options})
        return np.array([[d for d, _ in self.rows]]), np.array([[i for _, i in self.rows]])


class StandInCollection:
    """A collection that is not an index folder (as a Milvus collection is): ids 0-3 at /c/0.png ...,
    id 2 removed since its vector was read; records what the searcher and paths were asked."""

    location = "collection c at http://milvus"
    model_ref = "efficientnet-lite0"
    index_type = "milvus-hnsw"
    dim = 1280
    readonly = False

    def __init__(self, model=None, rows=((0.0, 0), (0.1, -1), (0.2, 2), (0.3, 3), (0.4, 1))) -> None:
        self.model, self.closed, self.approximate, self.missing_ok = model, False, [], []
        self.search = StandInSearcher(list(rows))

    def count(self) -> int:
        return 4

    def searcher(self, approximate):
        self.approximate.append(approximate)
        return self.search

    def paths(self, ids, missing_ok):
        self.missing_ok.append(missing_ok)
        return [None if i == 2 else f"/c/{i}.png" for i in ids]

    def close(self) -> None:
        self.closed = True


def test_a_query_result_as_json_rounds_distances_and_carries_a_seed_only_when_there_is_one():
    matches = [Match(1, 7, "/p/a.png", 0.123456789), Match(2, 0, "/p/b <c>.png", 1.0000004)]
    plain = QueryResult("q.png", "nearest", "cosine", matches)
    assert plain.to_dict() == {"query": "q.png", "mode": "nearest", "metric": "cosine",
                               "results": [{"rank": 1, "path": "/p/a.png", "distance": 0.123457},
                                           {"rank": 2, "path": "/p/b <c>.png", "distance": 1.0}]}
    drawn = QueryResult("<upload>", "random", "l2", matches[:1], seed=0)  # seed 0 is a seed
    assert drawn.to_dict() == {"query": "<upload>", "mode": "random", "metric": "l2", "seed": 0,
                               "results": [{"rank": 1, "path": "/p/a.png", "distance": 0.123457}]}


def test_a_fresh_seed_is_any_32_bit_unsigned_number():
    seeds = [api.fresh_seed() for _ in range(300)]
    assert all(isinstance(s, int) and 0 <= s < 2**32 for s in seeds)
    assert max(seeds) >= 2**31 and len(set(seeds)) == 300  # the upper half is reached (all below: 2^-300)


def test_the_search_asks_the_approximate_index_for_nearest_and_farthest_only_and_passes_its_options():
    """ids the searcher pads with (-1) and ids removed since (no path) are left out, id 0 is kept; k asks
    for as many more as are excluded; a random draw's seed is returned with it, none otherwise."""
    coll = StandInCollection()
    idx = Index(coll, resolve())
    found = idx.query_vector(np.ones(4, np.float32), 2, "farthest", "l2", seed=5, exclude=[3], ef_search=9, nprobe=4)
    assert [(m.rank, m.id, m.path, m.distance) for m in found.results] == [(1, 0, "/c/0.png", 0.0),
                                                                           (2, 1, "/c/1.png", 0.4)]
    assert (found.query, found.mode, found.metric, found.seed) == ("<vector>", "farthest", "l2", None)
    assert coll.search.asked[-1] == {"k": 3, "mode": Mode.farthest, "metric": "l2", "seed": 5, "ef_search": 9,
                                     "nprobe": 4}
    assert coll.approximate == [True] and coll.missing_ok == [True]
    idx.query_vector(np.ones(4, np.float32), 1, exact=True)
    drawn = idx.query_vector(np.ones(4, np.float32), 1, "random", seed=8)
    assert coll.approximate == [True, False, False] and drawn.seed == 8
    assert coll.search.asked[-1] == {"k": 1, "mode": Mode.random, "metric": "cosine", "seed": 8, "ef_search": None,
                                     "nprobe": None}
    default = idx.query_vector(np.ones(4, np.float32))
    assert coll.search.asked[-1]["k"] == 10 and coll.approximate[-1] is True and default.query == "<vector>"
    assert len(default.results) == 3  # the rows there are, less padding and removed files


def test_a_query_by_image_passes_its_search_options_on_and_asks_for_ten_by_default(index):
    idx, _, _ = index
    asked = []
    real = idx.searcher
    idx.searcher = lambda approximate=True: asked.append(approximate) or real(approximate)
    found = idx.query(png((10, 20, 30)), exact=True)
    assert asked == [False] and len(found.results) == 10
    idx.query(png((10, 20, 30)), 3)
    assert asked == [False, True]


def test_a_random_draw_without_a_seed_gets_a_fresh_one_and_reports_it(monkeypatch):
    monkeypatch.setattr(api, "fresh_seed", lambda: 77)
    coll = StandInCollection()
    drawn = Index(coll, resolve()).query_vector(np.ones(4, np.float32), 2, "random")
    assert drawn.seed == 77 and coll.search.asked[-1]["seed"] == 77
    nearest = Index(coll, resolve()).query_vector(np.ones(4, np.float32), 2)
    assert nearest.seed is None and coll.search.asked[-1]["seed"] is None


def test_a_collection_that_is_no_index_folder_says_so_for_what_only_a_folder_has():
    idx = Index(StandInCollection(), resolve())
    where = "collection c at http://milvus"
    for call, what in ((lambda: idx.set_ann("hnsw"), "takes no --ann setting"), (lambda: idx.ann(), "has no FAISS index"),
                       (lambda: idx.index("/p"), "cannot index a folder"), (lambda: idx.root, "has no folder")):
        with pytest.raises(StoreError) as e:
            call()
        assert str(e.value) == f"{where} {what}: it is a Milvus collection (fill it with `lookalike ingest`)"
    with pytest.raises(StoreError) as e:
        idx.map_generation()
    assert str(e.value) == f"{where} has no map: a map is kept in an index folder, and this is a Milvus collection"
    assert idx.stats() == {"count": 4, "model": "", "layer": None, "dims": 1280, "index_type": "milvus-hnsw"}
    assert idx.location == where and idx.index_type == "milvus-hnsw"


def test_over_finds_the_collections_model_and_with_check_refuses_another_closing_the_collection():
    spec = resolve()
    blocks = resolve(None, "blocks")
    idx = Index.over(StandInCollection(spec.identity()))
    assert idx.spec == spec
    assert Index.over(StandInCollection(blocks.identity())).spec == blocks  # the layer the vectors were made with
    assert Index.over(StandInCollection(spec.identity()), layer="blocks").spec == blocks
    assert Index.over(StandInCollection(spec.identity()), check=True).spec == spec
    coll = StandInCollection(blocks.identity())
    with pytest.raises(StoreError) as e:
        Index.over(coll, layer="pool", check=True)
    assert str(e.value) == ("collection c at http://milvus holds vectors of efficientnet-lite0 (layer blocks, 320-d), "
                            "but the model found here is efficientnet-lite0 (layer pool, 1280-d): query with the model "
                            "the collection was embedded with")
    assert coll.closed
    coll = StandInCollection(spec.identity())
    with pytest.raises(Exception, match="unknown model"):
        Index.over(coll, model="no-such-model")
    assert coll.closed


def test_open_creates_an_index_for_a_model_and_reopens_it_with_that_model_and_layer(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr(api, "Embedder", lambda spec, threads, device: made.append((spec.layer, threads, device)) or
                        CountingEmbedder())
    path = tmp_path / "ix"
    assert not Index.exists(path)
    with pytest.raises(StoreError, match="no index at"):
        Index.open(path)
    with Index.open(path, model="efficientnet-lite0", layer="blocks", create=True, threads=2, device="auto") as idx:
        assert idx.spec.layer == "blocks" and idx.model == resolve(None, "blocks").identity()
        assert idx.collection.model_ref == "efficientnet-lite0"
        idx.embed(png((1, 2, 3)))
    assert made == [("blocks", 2, "auto")] and Index.exists(path) and not Index.exists(tmp_path)
    monkeypatch.setenv("LOOKALIKE_INDEX", str(tmp_path / "elsewhere"))
    with Index.open(path, threads=3, device="auto") as idx:  # its own model and layer
        assert idx.spec == resolve(None, "blocks") and idx.root == path and len(idx) == 0
        idx.embed(png((1, 2, 3)))
    assert made[-1] == ("blocks", 3, "auto")
    with Index.open(path, layer="blocks") as idx:  # its own layer, named
        assert idx.spec == resolve(None, "blocks")
    with pytest.raises(StoreError, match="holds vectors of efficientnet-lite0 .layer blocks.*but the model found here "
                                         "is efficientnet-lite0 .layer pool"):
        Index.open(path, layer="pool")  # another layer's queries could not match the vectors
    with Index.open(path, create=True, threads=2) as idx:  # to add to it: its own model and layer too
        assert idx.spec == resolve(None, "blocks") and len(idx) == 0
    with pytest.raises(StoreError, match="was built with model efficientnet-lite0 .layer blocks"):
        Index.open(path, model="efficientnet-lite0", create=True)  # the model named: its default layer "pool"
    with pytest.raises(StoreError, match="was built with model efficientnet-lite0 .layer blocks"):
        Index.open(path, layer="pool", create=True)
    with Index.open(path, create=True, rebuild=True) as idx:
        assert idx.spec == resolve() and len(idx) == 0
    (tmp_path / "other").mkdir()
    with pytest.raises(StoreError) as e:
        Index.open(tmp_path / "other", create=True, rebuild=True)
    assert str(e.value) == f"refusing to --rebuild {tmp_path / 'other'}: it is not a lookalike index"


def test_open_hands_the_weights_file_to_the_model_it_resolves(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(api, "resolve", lambda model=None, layer=None, weights=None, *rest: asked.append(
        (model, layer, weights)) or resolve(model, layer))
    with Index.open(tmp_path / "ix", create=True, weights=tmp_path / "w.pth", layer="blocks"):
        pass
    with Index.open(tmp_path / "ix", weights=tmp_path / "w.pth"):
        pass
    assert asked == [(None, "blocks", tmp_path / "w.pth"), ("efficientnet-lite0", "blocks", tmp_path / "w.pth")]


def test_an_index_made_without_a_device_embeds_on_the_cpu(monkeypatch):
    made = []
    monkeypatch.setattr(api, "Embedder", lambda spec, threads, device: made.append((threads, device)) or CountingEmbedder())
    idx = Index(StandInCollection(), resolve())
    assert idx.embedder is idx.embedder and made == [(None, "cpu")]
    assert Index.over(StandInCollection(resolve().identity())).embedder is not None and made[-1] == (None, "cpu")


def test_over_resolves_the_model_with_the_weights_the_vectors_were_made_with(monkeypatch):
    asked = []
    monkeypatch.setattr(api, "resolve", lambda model, layer, weights, sha: asked.append((model, layer, weights, sha))
                        or resolve(model, layer))
    Index.over(StandInCollection({**resolve().identity(), "weights_sha256": "abc"}), weights="/w.pth")
    assert asked == [("efficientnet-lite0", "pool", "/w.pth", "abc")]


def test_the_searcher_is_approximate_unless_asked_otherwise_and_a_new_ann_setting_is_followed_at_once(index):
    """set_ann takes effect on the next search of the same Index, not only at the next change of the
    catalog (the approximate index is kept per catalog generation)."""
    coll = StandInCollection()
    idx = Index(coll, resolve())
    idx.searcher(), idx.searcher(False)
    assert coll.approximate == [True, False]
    folder, vectors, _ = index
    folder.set_ann("hnsw")
    assert folder.index_type == "hnsw" and folder.ann().kind == "hnsw"
    assert folder.searcher() is not folder.searcher(False)  # through HNSW
    folder.set_ann("exact")
    assert folder.index_type == "exact" and folder.ann() is None and folder.searcher() is folder.searcher(False)


def test_an_index_made_for_an_onnx_file_names_it_by_its_absolute_path(tmp_path, monkeypatch):
    from helpers import tiny_model

    model = tiny_model(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    with Index.open(tmp_path / "ix", model="m/model.onnx", create=True) as idx:
        assert idx.collection.model_ref == str(model / "model.onnx") and idx.model["dim"] == 8
    with Index.open(tmp_path / "ix") as idx:
        assert idx.spec.name == "tiny-0"


class SizeRecorder(CountingEmbedder):
    """A :class:`CountingEmbedder` that also notes the size of each image it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes = []

    def embed_images(self, images):
        self.sizes += [im.size if hasattr(im, "size") and not isinstance(im, np.ndarray) else im.shape[1::-1]
                       for im in images]
        return super().embed_images(images)


def test_embed_caches_only_vectors_of_bytes_and_decodes_at_the_models_draft_size(index, tmp_path):
    from helpers import sample_photo
    from lookalike.images import max_file_bytes

    idx, _, _ = index
    idx._embedder = recorder = SizeRecorder()
    cache: dict = {}
    idx.embed(Image.open(io.BytesIO(png((0, 9, 0)))), cache=cache)  # a picture, not bytes: nothing to key it by
    assert cache == {} and recorder.images == 1
    big = sample_photo("astronaut").resize((1024, 1024))  # a JPEG drafts to at least the model's input, not below
    big.save(tmp_path / "big.jpg", quality=90)
    idx.embed(tmp_path / "big.jpg")
    draft = idx.spec.preprocessing.decode_size
    assert draft is not None and draft <= min(recorder.sizes[-1]) < 1024
    padded = tmp_path / "padded.png"  # 16 x 12 pixels followed by junk: more bytes than such a picture needs
    padded.write_bytes(png((0, 0, 9)) + bytes(max_file_bytes(192) + 1))
    with pytest.raises(ImageError, match="too large: a file over"):
        idx.embed(padded, max_pixels=192)
    assert recorder.images == 2


def test_indexing_and_the_approximate_index_are_passed_on_to_the_folder(index):
    from lookalike.images import DEFAULT_MAX_PIXELS
    from lookalike.index.indexer import BATCH

    idx, _, _ = index
    calls = []
    folder = idx.collection
    folder.index = lambda *args: calls.append(args) or "report"
    plan, progress = (lambda n: None), (lambda n: None)
    assert idx.index("/f", 3, 4, 99, plan, progress, True) == "report"
    assert idx.index("/g") == "report"
    assert calls == [("/f", idx.embedder, 3, 4, 99, plan, progress, True),
                     ("/g", idx.embedder, BATCH, 2, DEFAULT_MAX_PIXELS, None, None, False)]
    folder.ann = lambda rebuild=False: calls.append(rebuild)
    idx.ann(), idx.ann(rebuild=True)
    assert calls[2:] == [False, True]


def test_paths_of_an_id_not_in_the_catalog_fail_unless_missing_is_allowed_and_columns_follow_the_ids(index):
    idx, _, _ = index
    first, second = (idx.query_vector(v, 1, exact=True).results[0].id for v in index[1][[4, 9]])
    with pytest.raises(KeyError):
        idx.paths([first, 10**6])
    assert idx.paths([first, 10**6], missing_ok=True) == ["/p/04.png", None]
    assert idx.columns([second, first]) == {"path": ["/p/09.png", "/p/04.png"], "size": [19, 14], "mtime_ns": [1, 1],
                                            "hash": ["h9", "h4"], "width": [4, 4], "height": [3, 3]}


def test_a_read_only_index_lays_its_map_out_without_keeping_it(index, monkeypatch):
    from lookalike.map import layout, packed
    from lookalike.map.cache import MAP_FILE

    idx, _, _ = index
    monkeypatch.setattr(layout, "lay_out", lambda v: layout.fit_unit_square(v[:, :2]))
    idx.collection.store.readonly = True
    kept = []
    monkeypatch.setattr(packed, "keep", lambda *args: kept.append(args))
    assert idx.layout().how == "laid out"
    assert kept == [] and not (idx.root / MAP_FILE).exists()


def test_a_cached_map_is_not_packed_again_and_one_with_a_removed_file_is_not_packed(index, monkeypatch):
    from lookalike.map import layout, packed

    idx, _, _ = index
    monkeypatch.setattr(layout, "lay_out", lambda v: layout.fit_unit_square(v[:, :2]))
    real_keep, kept = packed.keep, []
    monkeypatch.setattr(packed, "keep", lambda root, m, paths: kept.append(paths) or real_keep(root, m, paths))
    first = idx.layout()
    assert len(kept) == 1 and idx.layout().how == "cached" and len(kept) == 1
    ids, vectors = idx.vectors()
    gone = int(ids.max()) + 1  # a file removed after the vectors were read
    idx.vectors = lambda: (np.append(ids, gone), np.vstack([vectors, vectors[:1]]))
    m = idx.layout()
    assert m.how == "placed" and gone in m.ids.tolist() and len(m.ids) == len(first.ids) + 1 and len(kept) == 1
