"""The package's public names: ``lookalike.Index`` and the rest, each imported from its module on first use."""

import subprocess
import sys

import pytest

import lookalike


def test_the_public_names_are_the_classes_of_their_modules():
    from lookalike.api import Index, Match, QueryResult
    from lookalike.images import ImageError
    from lookalike.index.store import StoreError
    from lookalike.models.errors import ModelError

    assert lookalike.__all__ == ["ImageError", "Index", "Match", "ModelError", "QueryResult", "StoreError"]
    got = [getattr(lookalike, name) for name in lookalike.__all__]
    assert got == [ImageError, Index, Match, ModelError, QueryResult, StoreError]


def test_another_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError) as e:
        lookalike.Searcher  # noqa: B018  (a name of a submodule, not of the package)
    assert str(e.value) == "module 'lookalike' has no attribute 'Searcher'"


def test_importing_the_package_loads_none_of_its_modules():
    code = "import sys, lookalike; print(sorted(m for m in sys.modules if m.startswith('lookalike')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "['lookalike']\n"


def test_dedup_names_its_public_parts_the_same_way():
    from lookalike import dedup
    from lookalike.dedup.find import find_duplicates
    from lookalike.dedup.ondisk import StaleIndex

    assert (dedup.find_duplicates, dedup.StaleIndex) == (find_duplicates, StaleIndex)
    with pytest.raises(AttributeError) as e:
        dedup.phash_of  # noqa: B018
    assert str(e.value) == "module 'lookalike.dedup' has no attribute 'phash_of'"
