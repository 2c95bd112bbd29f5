"""The approximate index kept in step with the catalog, as queries see it."""

import numpy as np
import pytest

from lookalike.index import approximate
from lookalike.api import Index
from lookalike.index.embedded import EmbeddedCollection
from lookalike.models.registry import resolve
from lookalike.index.store import Entry, Store

DIM = 32


def _vectors(n, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, DIM))
    return np.maximum(centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, DIM)), 0).astype(np.float32)


def _index(tmp_path, vectors, setting, prefix="/p"):
    spec = resolve()
    store = Store.create(tmp_path, {**spec.identity(), "dim": DIM}, ref=spec.name)
    approximate.configure(store, setting)
    store.put(Entry(f"{prefix}/{i:04d}", 1, 1, f"{prefix}{i}", 1, 1, v) for i, v in enumerate(vectors))
    return Index(EmbeddedCollection(store), spec)


@pytest.mark.parametrize("n", [1, 5, 100])
@pytest.mark.parametrize("setting", approximate.SETTINGS)
def test_every_setting_works_on_tiny_collections_and_matches_exact(tmp_path, n, setting):
    vectors = _vectors(n)
    with _index(tmp_path, vectors, setting) as idx:
        assert idx.index_type == ("exact" if setting == "auto" else setting)
        for mode in ("nearest", "farthest"):
            q = vectors[0] + 0.05
            approx = idx.query_vector(q, 3, mode)
            exact = idx.query_vector(q, 3, mode, exact=True)
            assert [m.path for m in approx.results] == [m.path for m in exact.results]
            np.testing.assert_allclose([m.distance for m in approx.results], [m.distance for m in exact.results])
            assert len(approx.results) == min(3, n)
        ann_file = tmp_path / approximate.ANN_FILE
        if ann_file.exists():  # queries reuse the saved structure until the catalog changes
            before = ann_file.stat().st_mtime_ns
            Index(EmbeddedCollection(Store.open(tmp_path)), resolve()).query_vector(vectors[0], 2)
            assert ann_file.stat().st_mtime_ns == before


def test_removed_and_changed_images_never_come_back(tmp_path):
    vectors = _vectors(300)
    with _index(tmp_path, vectors, "hnsw") as idx:
        q = vectors[7]
        first = idx.query_vector(q, 5)
        assert first.results[0].path == "/p/0007" and first.results[0].distance == 0.0
        gone = [m.path for m in first.results[:3]]
        idx.collection.store.remove(gone)
        after = idx.query_vector(q, 50)
        assert not set(gone) & {m.path for m in after.results}
        old_id = next(m.id for m in after.results if m.path == first.results[3].path)
        idx.collection.store.put([Entry(first.results[3].path, 1, 2, "new", 1, 1, -q)])  # changed content
        again = idx.query_vector(q, 300)
        assert old_id not in {m.id for m in again.results}
        assert again.results[-1].path == first.results[3].path  # now the farthest
        idx.collection.store.put([Entry("/p/new", 1, 1, "n", 1, 1, q)])
        assert idx.query_vector(q, 1).results[0].path == "/p/new"
        assert idx.ann().ntotal == 300 - 3 + 1


def test_a_torn_ann_file_is_rebuilt(tmp_path):
    vectors = _vectors(50)
    with _index(tmp_path, vectors, "hnsw") as idx:
        idx.query_vector(vectors[0], 1)
    (tmp_path / approximate.ANN_FILE).write_bytes(b"torn")
    with Index(EmbeddedCollection(Store.open(tmp_path)), resolve()) as idx:
        assert idx.query_vector(vectors[3], 1).results[0].path == "/p/0003"


def test_unknown_setting_is_refused(tmp_path):
    with Store.create(tmp_path, {"name": "m", "dim": DIM}, ref="m") as store:
        with pytest.raises(ValueError) as e:
            approximate.configure(store, "lsh")
        assert str(e.value) == "unknown --ann 'lsh'; choose from: auto, exact, hnsw, ivfpq"
        assert approximate.setting(store) == "auto"  # unset: auto


def test_an_older_index_whose_setting_is_none_searches_exactly(tmp_path):
    with _index(tmp_path, _vectors(5), "auto") as idx:
        idx.collection.store.set_meta("ann", "none")  # the name of exact search before it was called exact
        assert approximate.setting(idx.collection.store) == "exact"
        assert idx.index_type == "exact" and idx.ann() is None


def _store(tmp_path, n, setting="hnsw"):
    store = Store.create(tmp_path, {"name": "m", "dim": DIM}, ref="m")
    approximate.configure(store, setting)
    store.put(Entry(f"/p/{i:04d}", 1, 1, f"c{i}", 1, 1, v) for i, v in enumerate(_vectors(n)))
    return store


@pytest.fixture
def builds(monkeypatch):
    """How many times a FAISS structure is built from scratch (not loaded and diffed)."""
    from lookalike.vectors.faiss_backend import FaissBackend

    made = []
    real = FaissBackend.build.__func__
    monkeypatch.setattr(FaissBackend, "build", classmethod(lambda cls, *a, **k: made.append(a[-1]) or real(cls, *a, **k)))
    return made


def test_a_change_is_diffed_into_the_saved_structure_and_stamped_with_the_catalogs_generation(tmp_path, builds):
    with _store(tmp_path, 60) as store:
        first = approximate.sync(store)
        assert builds == ["hnsw"] and store.meta("ann_stamp") == f"hnsw:{store.generation}"
        assert approximate.sync(store).ntotal == 60 and builds == ["hnsw"]  # loaded as saved
        store.remove(["/p/0003"])
        store.put([Entry("/p/new", 1, 1, "n", 1, 1, _vectors(1, seed=9)[0])])
        ann = approximate.sync(store)
        assert builds == ["hnsw"] and ann.ntotal == 60 and store.meta("ann_stamp") == f"hnsw:{store.generation}"
        ids, _ = store.vectors()
        assert sorted(ann.ids().tolist()) == sorted(ids.tolist()) != sorted(first.ids().tolist())
        assert approximate.sync(store, rebuild=True).ntotal == 60 and builds == ["hnsw", "hnsw"]


def test_a_fallback_structure_is_built_again_rather_than_diffed(tmp_path, builds):
    with _store(tmp_path, 5, "ivfpq") as store:
        assert approximate.sync(store).kind != "ivfpq"  # too few vectors to train product quantisers
        store.put([Entry("/p/new", 1, 1, "n", 1, 1, _vectors(1, seed=9)[0])])
        assert approximate.sync(store).ntotal == 6 and builds == ["ivfpq", "ivfpq"]


def test_a_structure_saved_for_another_dimension_is_built_again(tmp_path, builds):
    from lookalike.vectors.faiss_backend import FaissBackend

    with _store(tmp_path, 40) as store:
        approximate.sync(store)
        stamp = store.meta("ann_stamp")
        other = np.random.default_rng(1).random((40, DIM // 2)).astype(np.float32)
        FaissBackend.build(other, np.arange(40), "cosine", "hnsw").save(tmp_path / approximate.ANN_FILE)
        builds.clear()
        assert store.meta("ann_stamp") == stamp  # the stamp alone would take the foreign file
        ann = approximate.sync(store)
        assert builds == ["hnsw"] and ann.dim == DIM
        assert FaissBackend.load(tmp_path / approximate.ANN_FILE).dim == DIM


def test_a_structure_that_cannot_be_saved_still_answers_and_is_saved_later(tmp_path, monkeypatch):
    from lookalike.vectors.faiss_backend import FaissBackend

    with _store(tmp_path, 40) as store:
        real_save = FaissBackend.save

        def full_disk(self, path):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(FaissBackend, "save", full_disk)
        assert approximate.sync(store).ntotal == 40
        assert store.meta("ann_stamp") is None and not (tmp_path / approximate.ANN_FILE).exists()
        monkeypatch.setattr(FaissBackend, "save", real_save)
        assert approximate.sync(store).ntotal == 40 and (tmp_path / approximate.ANN_FILE).exists()


def test_exact_search_drops_a_saved_structure_unless_the_index_is_read_only(tmp_path):
    with _store(tmp_path, 40) as store:
        approximate.sync(store)
        files = [tmp_path / approximate.ANN_FILE, tmp_path / (approximate.ANN_FILE + ".json")]
        assert all(f.exists() for f in files) and approximate.kind(store) == "hnsw"
        approximate.configure(store, "exact")
        store.readonly = True  # as an index opened where it cannot be written
        assert approximate.sync(store) is None and all(f.exists() for f in files)
        store.readonly = False
        assert approximate.sync(store) is None and not any(f.exists() for f in files)



def test_a_structure_with_over_a_quarter_removed_is_built_again(tmp_path, builds):
    with _store(tmp_path, 40) as store:
        approximate.sync(store)
        store.remove([f"/p/{i:04d}" for i in range(10)])  # a quarter: diffed, the removed ones marked
        assert approximate.sync(store).ntotal == 30 and builds == ["hnsw"]
        store.remove(["/p/0010"])  # 11 of 40 removed: over a quarter, built again without them
        ann = approximate.sync(store)
        assert builds == ["hnsw", "hnsw"] and ann.ntotal == 29 and not ann.needs_rebuild


def test_auto_turns_approximate_past_its_number_of_vector_elements(tmp_path, monkeypatch):
    from lookalike.vectors import ann

    monkeypatch.setattr(ann, "AUTO_EXACT_ELEMENTS", 40 * DIM)  # as 25,000 vectors of 1,280 numbers, smaller
    with _store(tmp_path, 40, "auto") as store:
        assert approximate.kind(store) == "exact" and approximate.sync(store) is None
        store.put([Entry("/p/new", 1, 1, "n", 1, 1, _vectors(1, seed=9)[0])])
        assert approximate.kind(store) == "hnsw" and approximate.sync(store).ntotal == 41
