"""The map's columns for pages: the JSON of payload() and the same map in binary(), read back here
by the layout its docstring gives (magic, header length, JSON header, aligned little-endian columns)."""

from __future__ import annotations

import os

import numpy as np

from helpers import read_binary_map as read_binary
from lookalike.map.cache import Map
from lookalike.map.payload import SCALE, binary, payload

PATHS = ["/p/cats/a.jpg", "/p/cats/b.jpg", "/q/cats/c.jpg", "/p/dogs/été.png", "/p/dogs/e.jpg"]


def small_map() -> Map:
    xy = np.array([[0.0, 0.25], [1.0, 0.5], [0.125, 0.75], [0.3, 0.1], [1 / 3, 0.9]], np.float32)
    central = np.array([[5, 1, -1], [2, -1, -1]], np.int64)
    return Map(ids=np.array([1, 2, 5, 9, 2**40], np.int64), xy=xy, clusters=np.array([1, 1, 0, 0, 0], np.int32),
               centres=np.eye(2, 4, dtype=np.float32), central=central, generation=7, method="pca50+umap15",
               laid_out=5, placed=0)


def test_binary_holds_what_the_json_holds():
    m = small_map()
    js = payload(m, PATHS, os.path.basename)
    head, col = read_binary(binary(m, PATHS, os.path.basename))
    assert col["ids"].tolist() == js["ids"] == [1, 2, 5, 9, 2**40]
    assert col["x"].tobytes() == m.xy[:, 0].tobytes() and col["y"].tobytes() == m.xy[:, 1].tobytes()
    assert js["x"] == [0, SCALE, SCALE // 8, 300_000, 333_333]  # rounded by hand
    assert col["names"] == js["names"] == ["a.jpg", "b.jpg", "c.jpg", "été.png", "e.jpg"]
    # folders by full path, sorted: /p/cats, /p/dogs, /q/cats; the second "cats" numbered
    assert head["folders"] == js["folders"] == [{"name": "cats", "size": 2}, {"name": "dogs", "size": 2},
                                                {"name": "cats (2)", "size": 1}]
    assert col["folder"].tolist() == js["folder"] == [0, 0, 2, 1, 1]
    assert col["cluster"].tolist() == js["cluster"] == [1, 1, 0, 0, 0]
    assert head["clusters"] == js["clusters"] == [{"size": 3, "central": [5, 1]}, {"size": 2, "central": [2]}]
    assert (head["generation"], head["count"], head["method"], head["color"]) == (7, 5, "pca50+umap15", "folder")


def test_an_empty_map():
    m = Map(np.zeros(0, np.int64), np.zeros((0, 2), np.float32), np.zeros(0, np.int32), np.zeros((0, 4), np.float32),
            np.zeros((0, 8), np.int64), 1, "pca50+umap15", 0, 0)
    head, col = read_binary(binary(m, [], os.path.basename))
    assert head["count"] == 0 and head["folders"] == [] and head["color"] == "cluster"
    assert all(len(c) == 0 for c in col.values())


def test_the_json_names_every_column_and_places_are_integers():
    m = small_map()
    js = payload(m, PATHS, os.path.basename)
    assert set(js) == {"generation", "count", "method", "scale", "color", "ids", "x", "y", "names", "folder", "folders",
                       "cluster", "clusters"}
    assert (js["generation"], js["count"], js["method"], js["scale"], js["color"]) == (7, 5, "pca50+umap15", SCALE,
                                                                                        "folder")
    assert js["y"] == [250_000, 500_000, 750_000, 100_000, 900_000]  # float32 0.1 and 0.9 rounded by hand
    assert all(type(v) is int for v in js["x"] + js["y"])  # integers in the JSON, not 250000.0


def test_the_columns_start_at_the_first_aligned_byte_after_a_header_of_any_length():
    m = small_map()
    starts = set()
    for extra in range(8):  # one of these header lengths ends exactly on an aligned byte
        data = binary(Map(**{**m.__dict__, "method": "m" * (1 + extra)}), PATHS, os.path.basename)
        head, col = read_binary(data)  # checks the columns' start and the answer's length
        assert head["method"] == "m" * (1 + extra) and col["ids"].tolist() == [1, 2, 5, 9, 2**40]
        starts.add((8 + 4 + int.from_bytes(data[8:12], "little")) % 8)
    assert starts == set(range(8))


def _map_of(ids: list[int], central: list[list[int]]) -> Map:
    n = len(ids)
    return Map(ids=np.array(ids, np.int64), xy=np.zeros((n, 2), np.float32), clusters=np.zeros(n, np.int32),
               centres=np.zeros((len(central), 4), np.float32), central=np.array(central, np.int64), generation=1,
               method="by hand", laid_out=n, placed=0)


def test_image_0_is_a_central_image_like_any_other_and_only_minus_1_is_padding():
    m = _map_of([0, 3, 4], [[0, 3, -1]])
    assert payload(m, ["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"], os.path.basename)["clusters"] == [
        {"size": 3, "central": [0, 3]}]
    assert read_binary(binary(m, ["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"], os.path.basename))[0]["clusters"] == [
        {"size": 3, "central": [0, 3]}]


def test_the_map_starts_coloured_by_folder_from_exactly_two_folders():
    # one folder: colouring by it shows one colour, so clusters; two folders or more: folders
    for paths, colour in ((["/p/a.jpg", "/p/b.jpg"], "cluster"), (["/p/a.jpg", "/q/b.jpg"], "folder"),
                          (["/p/a.jpg", "/q/b.jpg", "/r/c.jpg"], "folder")):
        m = _map_of(list(range(1, len(paths) + 1)), [[1, -1, -1]])
        assert payload(m, paths, os.path.basename)["color"] == colour, paths
        assert read_binary(binary(m, paths, os.path.basename))[0]["color"] == colour, paths
