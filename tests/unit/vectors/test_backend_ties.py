"""Equal distances at the cut of the exact backend's top-k (vectors/backend.py): the smaller ids are
kept whichever row, chunk or query they come in, id 0 included; worked by hand on l2 distances of
vectors along one axis."""

import numpy as np

from lookalike.vectors import ExactBackend
from lookalike.vectors.backend import top_k
from lookalike.vectors.metric import METRICS

L2 = METRICS["l2"]


def _along(*lengths):
    """Vectors along the first axis of 4-d space: their l2 distances to the origin are ``lengths``."""
    return np.array([[x, 0, 0, 0] for x in lengths], np.float32)


def test_id_0_is_the_smallest_of_equal_distances_across_chunks():
    copy = _along(0.3)
    for chunks in ([(copy, [5]), (copy, [0])], [(_along(0.3, 0.3), [5, 0])]):
        d, ids = top_k(_along(0.0), chunks, 1, L2)
        assert ids.tolist() == [[0]] and d == np.float32(0.3)


def test_a_tie_at_the_cut_behind_smaller_distances_keeps_the_smaller_id():
    # ids 7 and 1 tie at 0.3 for the third place, 7 first in the scan
    backend = ExactBackend(np.array([9, 8, 7, 1, 6]), _along(0.1, 0.2, 0.3, 0.3, 0.5), "l2")
    d, ids = backend.nearest(_along(0.0), 3)
    assert ids.tolist() == [[9, 8, 1]]
    np.testing.assert_allclose(d, [[0.1, 0.2, 0.3]], rtol=1e-6)


def test_each_query_settles_its_own_ties():
    # query 0 ties ids 7 and 1 (7 first in the scan); query 1 has one nearest (id 3): no tie
    backend = ExactBackend(np.array([7, 1, 3]), _along(0.3, 0.3, 0.9), "l2")
    _, ids = backend.nearest(_along(0.3, 0.9), 1)
    assert ids.tolist() == [[1], [3]]
