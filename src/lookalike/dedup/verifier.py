"""The second stage of a two-stage rule: candidate pairs confirmed by ORB + RANSAC
(:mod:`lookalike.dedup.geometry`) in a thread pool (OpenCV, FAISS and Pillow's decoders release the GIL),
each image's features extracted once, ahead of the grouping that asks for them."""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace

import numpy as np

from lookalike.dedup import geometry
from lookalike.dedup.keep import Traits
from lookalike.dedup.rules import Rule
from lookalike.images import ImageError
from lookalike.vectors import hamming

#: Most images whose features the verifier keeps at a time (about 26 KB each); features of an image
#: the grouping is done with (a keeper or an accepted member) are dropped at once, so each image's
#: features are normally extracted once (at 10k images, about 6,500 are waiting at the peak).
FEATURE_CACHE = 8192
#: Feature extractions kept in flight ahead of the grouping, per worker.
AHEAD = 8


class Verifier:
    """Confirms candidate pairs of ``paths`` (or encoded images) by the second stage of ``rule``
    (:meth:`Rule.accepts` of :func:`geometry.compare`) on ``workers`` threads (default: one per CPU).
    Features are kept for the last :data:`FEATURE_CACHE` images and extracted ahead in the order
    given to :meth:`plan`."""

    def __init__(self, paths: list, rule: Rule, workers: int | None = None) -> None:
        self.paths, self.rule, self.checked, self.extracted = paths, rule, 0, 0
        self.workers = workers or os.cpu_count() or 1
        self.results: dict[tuple[int, int], geometry.Evidence] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._cache: OrderedDict[int, Future] = OrderedDict()
        self._ahead: deque[Future] = deque()
        self._plan: Iterator[int] = iter(())
        self._done: set[int] = set()
        self._keeper: int | None = None

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def plan(self, rows: Iterable[int]) -> None:
        """Rows in the order their features will probably be asked for (repeats allowed): up to
        :data:`AHEAD` per worker are extracted ahead of need."""
        self._plan = iter(rows)

    def accept(self, keeper: int, others: np.ndarray) -> np.ndarray:
        """Which of ``others`` duplicate ``keeper`` (a bool mask); each verification is kept for
        :meth:`evidence`. The caller verifies an accepted member never again, and ``keeper`` no more
        once it asks for another keeper (as :func:`~lookalike.dedup.keep.group_around_keepers`):
        their features are dropped."""
        others = [int(o) for o in others]
        if keeper != self._keeper:
            self._drop(self._keeper)
            self._keeper = keeper
        mine, theirs = self._features(keeper), [self._features(o) for o in others]
        self._top_up()  # the threads extract the next images' features meanwhile
        # comparisons are submitted once their features are there, so no thread waits on another's
        # extraction (comparisons that did kept about one of two CPUs busy at 10k images)
        wait([mine, *theirs])
        pending = [self._executor().submit(self._compare, mine.result(), t.result()) for t in theirs]
        self._top_up()
        found = [p.result() for p in pending]
        self.checked += len(others)
        self.results.update(((keeper, o), f) for o, f in zip(others, found))
        accepted = np.array([self.rule.accepts(f) for f in found], bool)
        for o, ok in zip(others, accepted):
            if ok:
                self._drop(o)
        return accepted

    def evidence(self, keeper: int, other: int, traits: list[Traits]) -> geometry.Evidence:
        """The verification of an accepted pair, with a re-encoding named when the encodings differ."""
        found = self.results[keeper, other]
        a, b = traits[keeper], traits[other]
        if (b.format, b.quality) != (a.format, a.quality):
            found = replace(found, edits=[*found.edits, f"re-encoded ({b.encoding()})"])
        return found

    def _drop(self, i: int | None) -> None:
        """Forget row ``i``'s features: the grouping is done with it."""
        if i is not None:
            self._done.add(i)
            self._cache.pop(i, None)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="verify",
                                            initializer=hamming.single_threaded)
        return self._pool

    def _compare(self, a: geometry.Features | None, b: geometry.Features | None) -> geometry.Evidence:
        if a is None or b is None:
            return geometry.NO_MATCH
        return geometry.compare(a, b, self.rule.min_inliers, self.rule.min_agreement)

    def _extract(self, i: int) -> geometry.Features | None:
        try:
            return geometry.features(self.paths[i])
        except ImageError:
            return None

    def _features(self, i: int) -> Future:
        """The future features of row ``i`` (submitted now unless cached); called from the grouping's thread only."""
        future = self._cache.get(i)
        if future is None:
            future = self._cache[i] = self._executor().submit(self._extract, i)
            self.extracted += 1
            if len(self._cache) > FEATURE_CACHE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return future

    def _top_up(self) -> None:
        """Submit the planned rows' feature extraction until :data:`AHEAD` per worker are in flight."""
        while self._ahead and self._ahead[0].done():
            self._ahead.popleft()
        while len(self._ahead) < AHEAD * self.workers:
            i = next(self._plan, None)
            if i is None:
                return
            if i not in self._cache and i not in self._done:
                self._ahead.append(self._features(i))
