from pathlib import Path

import platformdirs

from lookalike import paths


def test_environment_first_then_the_user_directories(monkeypatch, tmp_path):
    monkeypatch.setenv("LOOKALIKE_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("LOOKALIKE_INDEX", str(tmp_path / "i"))
    assert paths.cache_dir("onnx", "x.onnx") == tmp_path / "c" / "onnx" / "x.onnx"
    assert paths.default_index_path() == tmp_path / "i"
    monkeypatch.delenv("LOOKALIKE_CACHE")
    monkeypatch.delenv("LOOKALIKE_INDEX")
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda app: str(tmp_path / "cache" / app))
    monkeypatch.setattr(platformdirs, "user_data_dir", lambda app: str(tmp_path / "data" / app))
    assert paths.cache_dir("eval") == tmp_path / "cache" / "lookalike" / "eval"
    assert paths.default_index_path() == Path(tmp_path / "data" / "lookalike" / "index")
