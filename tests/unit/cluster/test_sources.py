"""Where images and shards live (cluster/sources.py): a URI whose file system needs a package that is
not installed is one line that names the package."""

from __future__ import annotations

import importlib.util

import pytest

pytest.importorskip("pyarrow")

from lookalike.cluster.sources import filesystem  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402


@pytest.mark.parametrize("uri, package", [("s3://bucket/photos", "s3fs"), ("abfs://container/photos", "adlfs")])
def test_a_uri_without_its_file_system_package_names_the_package_in_one_line(uri, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    with pytest.raises(StoreError) as caught:
        filesystem(uri)
    message = str(caught.value)
    assert uri in message and package in message and "\n" not in message, message
