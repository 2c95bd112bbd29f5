from pathlib import Path

import platformdirs

from lookalike import paths


def test_environment_first_then_the_user_directories(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("LOOKALIKE_INDEX", str(tmp_path / "i"))
    assert paths.cache_dir("onnx", "x.onnx") == tmp_path / "c" / "onnx" / "x.onnx"
    assert paths.index_path() == tmp_path / "i"
    assert paths.index_path(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("LOOKALIKE_CACHE")
    monkeypatch.delenv("LOOKALIKE_INDEX")
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda app: str(tmp_path / "cache" / app))
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda app: str(tmp_path / "data" / app))
    assert paths.cache_dir("eval") == tmp_path / "cache" / "lookalike" / "eval"
    assert paths.index_path() == Path(tmp_path / "data" / "lookalike" / "index")


def test_a_tilde_and_a_relative_path_are_made_absolute_in_one_place(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOKALIKE_INDEX", "~/idx")
    monkeypatch.setenv("LOOKALIKE_CACHE", "~/cache")
    assert paths.index_path() == tmp_path / "home" / "idx"
    assert paths.cache_dir("onnx") == tmp_path / "home" / "cache" / "onnx"
    assert paths.index_path("rel") == tmp_path / "rel"
