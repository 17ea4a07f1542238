"""The neighbour graph of a window: each article's nearest articles by embedding cosine.

Pure over arrays (FAISS and NumPy imported inside the functions).  The story stage
never builds an n×n matrix: FAISS finds each article's ``k`` nearest neighbours, the
hybrid similarity is computed on those candidate edges only (cluster.py), and
clustering runs on the sparse graph.  Memory grows as n·k, not n².

Neighbour lists are exact (a flat inner-product index over L2-normalized vectors) and
ordered by (cosine, row) so that the same window always gives the same graph; the
graph is derived data, rebuilt from the stored embeddings whenever it is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

SEARCH_BLOCK_ROWS = 4096
"""Query rows per FAISS search call: bounds the temporary result arrays."""


@dataclass(frozen=True)
class NeighbourGraph:
    """``neighbours[i]`` are the rows nearest to row ``i`` (−1 pads a short list),
    ``similarity[i]`` their cosines, best first."""

    neighbours: np.ndarray   # (n, k) int64
    similarity: np.ndarray   # (n, k) float32

    @property
    def size(self) -> int:
        return int(self.neighbours.shape[0])

    def restricted(self, rows: np.ndarray) -> NeighbourGraph:
        """The graph among ``rows`` only (ascending), renumbered 0..len(rows)-1: neighbours
        outside them are dropped (−1)."""
        import numpy as np

        rows = np.asarray(rows, dtype=np.int64)
        renumber = np.full(self.size + 1, -1, dtype=np.int64)
        renumber[rows] = np.arange(len(rows))
        lists = self.neighbours[rows]
        return NeighbourGraph(np.where(lists >= 0, renumber[lists], -1), self.similarity[rows])

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Each undirected edge once, as (head, tail) arrays with head < tail, sorted."""
        import numpy as np

        n, k = self.neighbours.shape
        if n == 0 or k == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        heads = np.repeat(np.arange(n, dtype=np.int64), k)
        tails = self.neighbours.reshape(-1)
        keep = (tails >= 0) & (tails != heads)
        low = np.minimum(heads[keep], tails[keep])
        high = np.maximum(heads[keep], tails[keep])
        keys = unique_keys(low * n + high)
        return keys // n, keys % n


def unique_keys(keys: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an integer array (``np.unique`` by sorting: numpy 2's hashing
    ``np.unique`` took 0.6 s on a million keys here, sorting 6 ms)."""
    import numpy as np

    ordered = np.sort(keys)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


SEARCH_EXTRA = 8
"""Candidates FAISS returns beyond ``k``: the final lists are chosen by exactly recomputed
similarities, so FAISS's own float rounding never decides which near-tie makes the list."""

ENTRANT_TOLERANCE = 1e-4
"""A new article enters an existing list when its (BLAS) cosine is within this of the list's last;
the exact comparison then decides."""

SELECT_BLOCK_ROWS = 1024
"""Rows whose candidates are scored exactly per block (bounds the gathered vectors)."""


def build_graph(vectors: np.ndarray, k: int, ids: np.ndarray | None = None,
                pairs: WindowPairs | None = None) -> NeighbourGraph:
    """Exact k-nearest-neighbour lists of every row of ``vectors`` (L2-normalized), best first;
    ties go to the smaller article id (``ids``, default the row).  ``pairs`` (:func:`window_pairs`
    over these rows) give the candidates of each row they hold enough of; the others are searched."""
    import numpy as np

    n = int(vectors.shape[0])
    k = max(0, min(k, n - 1))
    if n == 0 or k == 0:
        return NeighbourGraph(np.full((n, 0), -1, dtype=np.int64), np.zeros((n, 0), dtype=np.float32))
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    if pairs is None:
        candidates = _search(data, np.arange(n), k + SEARCH_EXTRA)
    else:
        candidates = _paired_candidates(data, pairs, k + SEARCH_EXTRA)
    return _select(data, ids, np.arange(n), candidates, k, NeighbourGraph(
        np.full((n, k), -1, dtype=np.int64), np.zeros((n, k), dtype=np.float32)))


def _paired_candidates(data: np.ndarray, pairs: WindowPairs, count: int) -> np.ndarray:
    """Each row's ``count`` best rows from ``pairs`` (the same as :func:`_search` finds: a list
    holds every row above its last), −1 padded; the rows whose list is shorter are searched."""
    import numpy as np

    n = len(data)
    count = min(count, n - 1)
    candidates = np.full((n, count + 1), -1, dtype=np.int64)
    enough = np.diff(pairs.starts) >= count
    listed = np.flatnonzero(enough)
    candidates[listed, :count] = pairs.rows[pairs.starts[listed][:, None] + np.arange(count)]
    short = np.flatnonzero(~enough)
    if short.size:
        candidates[short] = _search(data, short, count)
    return candidates


def update_graph(previous_ids: np.ndarray, previous: NeighbourGraph, ids: np.ndarray, vectors: np.ndarray,
                 k: int) -> tuple[NeighbourGraph, int]:
    """The graph of the window ``ids`` (rows of ``vectors``) from the previous window's graph
    (``previous_ids`` its rows' article ids): the same lists :func:`build_graph` would give,
    searching only the new rows and the rows that lost a neighbour.  Returns the graph and the
    number of rows searched."""
    import numpy as np

    n = len(ids)
    k = max(0, min(k, n - 1))
    if n == 0 or k == 0 or previous.neighbours.shape[1] != k:
        return build_graph(vectors, k, ids), n
    ids = np.asarray(ids, dtype=np.int64)
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    order = np.argsort(ids)
    position = np.searchsorted(ids[order], previous_ids)
    position = np.clip(position, 0, n - 1)
    still = ids[order][position] == previous_ids
    row_of_previous = np.where(still, order[position], -1)          # previous row -> row now
    result = NeighbourGraph(np.full((n, k), -1, dtype=np.int64), np.zeros((n, k), dtype=np.float32))
    kept_rows = row_of_previous[still]
    old_lists = previous.neighbours[still]
    mapped = np.where(old_lists >= 0, row_of_previous[np.clip(old_lists, 0, None)], -1)
    complete = (mapped >= 0).all(axis=1)                             # lost no neighbour
    result.neighbours[kept_rows[complete]] = mapped[complete]
    result.similarity[kept_rows[complete]] = previous.similarity[still][complete]
    searched = np.ones(n, dtype=bool)
    searched[kept_rows[complete]] = False
    new_rows = np.flatnonzero(~np.isin(np.arange(n), row_of_previous[still]))
    search_rows = np.flatnonzero(searched)
    if search_rows.size:
        _select(data, ids, search_rows, _search(data, search_rows, k + SEARCH_EXTRA), k, result)
    unchanged = np.flatnonzero(~searched)
    if new_rows.size and unchanged.size:
        _take_entrants(data, ids, unchanged, new_rows, k, result)
    return result, int(search_rows.size)


def _search(data: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """FAISS candidates (rows, −1 padded) for ``rows`` among all rows, themselves excluded, on
    :func:`search_threads` threads."""
    import numpy as np

    faiss = import_faiss()

    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    count = min(count + 1, len(data))
    found = np.empty((len(rows), count), dtype=np.int64)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(search_threads(threads))
    try:
        for start in range(0, len(rows), SEARCH_BLOCK_ROWS):
            block = rows[start:start + SEARCH_BLOCK_ROWS]
            _, hits = index.search(data[block], count)
            found[start:start + len(block)] = hits
    finally:
        faiss.omp_set_num_threads(threads)
    found[found == rows[:, None]] = -1
    return found


FAISS_WAIT_POLICY = "PASSIVE"
"""How FAISS's OpenMP threads wait for each other (``OMP_WAIT_POLICY`` while FAISS loads, unless
the environment sets it): passive, asleep, not spinning.  By default a waiting thread spins; on
this 2-core machine, busy with other work, dedup's search of 500 new articles against a 95k window
took 1.0–1.5 s (as much CPU) on two spinning threads and 0.28 s waiting passively, the same
scores to the bit (the work is split as before; only the waiting changed); on a quiet moment
0.15 s either way."""


def import_faiss() -> Any:
    """The faiss module, its OpenMP runtime started with ``FAISS_WAIT_POLICY``: the variable is set
    only while faiss loads (libgomp reads it then), so the process's environment, its children
    and libraries loaded later see it as it was."""
    import os
    import sys

    if "faiss" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        import faiss
        return faiss
    os.environ["OMP_WAIT_POLICY"] = FAISS_WAIT_POLICY
    try:
        import faiss
    finally:
        os.environ.pop("OMP_WAIT_POLICY", None)
    return faiss


def search_threads(threads: int, *, load: float | None = None) -> int:
    """OpenMP threads for the graph's FAISS searches: at most ``threads`` (FAISS's own setting),
    and no more than the CPUs the machine has free (embed.resolve_threads ``auto``: the usable CPUs
    less the 1-minute load average, at least 1).  On this 2-core machine, busy with other work, a
    search of 583 rows against a 95k window took 0.5–1.4 s (CPU as much) on two threads, each
    spinning while it waits for the other, and 0.3 s on one.  The lists do not depend on it: FAISS
    only proposes candidates, chosen by exact cosine (``_select``), while dedup, which keeps FAISS's
    own scores, leaves FAISS's thread count as it is (its float rounding follows the count)."""
    from .embed import resolve_threads

    return max(1, min(threads, resolve_threads("auto", load=load)))


def _take_entrants(data: np.ndarray, ids: np.ndarray, rows: np.ndarray, new_rows: np.ndarray, k: int,
                   graph: NeighbourGraph) -> None:
    """Let the new rows into the lists of ``rows`` where they beat the last neighbour."""
    import numpy as np

    new_vectors = data[new_rows].T
    for start in range(0, len(rows), SEARCH_BLOCK_ROWS):
        block = rows[start:start + SEARCH_BLOCK_ROWS]
        cosine = data[block] @ new_vectors
        last = graph.similarity[block, -1]
        enter = cosine >= (last - ENTRANT_TOLERANCE)[:, None]
        changed = np.flatnonzero(enter.any(axis=1))
        if not changed.size:
            continue
        width = int(enter[changed].sum(axis=1).max())
        candidates = np.full((len(changed), k + width), -1, dtype=np.int64)
        candidates[:, :k] = graph.neighbours[block[changed]]
        for slot, row in enumerate(changed):
            entrants = new_rows[enter[row]]
            candidates[slot, k:k + len(entrants)] = entrants
        _select(data, ids, block[changed], candidates, k, graph)


def _select(data: np.ndarray, ids: np.ndarray, rows: np.ndarray, candidates: np.ndarray, k: int,
            graph: NeighbourGraph) -> NeighbourGraph:
    """Write into ``graph`` each row's best k candidates (distinct rows, −1 padded) by exact cosine
    (float64), ties to the smaller article id."""
    import numpy as np

    for start in range(0, len(rows), SELECT_BLOCK_ROWS):
        block = rows[start:start + SELECT_BLOCK_ROWS]
        found = candidates[start:start + SELECT_BLOCK_ROWS]
        valid = found >= 0
        safe = np.where(valid, found, 0)
        cosine = exact_cosine(data, np.repeat(block, found.shape[1]), safe.reshape(-1)).reshape(found.shape)
        cosine[~valid] = -np.inf
        tie = np.where(valid, ids[safe], np.iinfo(np.int64).max)
        order = np.lexsort((tie, -cosine), axis=1)[:, :k]
        chosen = np.take_along_axis(found, order, axis=1)
        chosen_cosine = np.take_along_axis(cosine, order, axis=1)
        missing = ~np.isfinite(chosen_cosine)
        chosen[missing] = -1
        graph.neighbours[block] = chosen
        graph.similarity[block] = np.where(missing, 0.0, chosen_cosine).astype(np.float32)
    return graph


def exact_cosine(data: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of row pairs in float64, summed the same way whatever else is computed with them:
    the one similarity the graph is built on, so an updated graph equals a rebuilt one."""
    import numpy as np

    products: np.ndarray = (data[a].astype(np.float64) * data[b].astype(np.float64)).sum(axis=1)
    return products


# --- one search for a whole window: dedup's and the graph's, on a large first run ------------------

@dataclass(frozen=True)
class WindowPairs:
    """Each row's close rows, best first (FAISS's float32 scores): ``rows[starts[i]:starts[i + 1]]``
    are those of row ``i``.  Row ``i``'s list holds *every* row whose cosine with it is at least
    ``floor`` (dedup's lexical floor), and beyond those its best rows down to the window's
    threshold (:func:`window_pairs`), ``count`` in all (more where scores tie): whatever the list
    leaves out is below each row it holds.  Equal scores are in row order."""

    starts: np.ndarray   # (n + 1,) int64
    rows: np.ndarray     # (pairs,) int64
    scores: np.ndarray   # (pairs,) float32
    floor: float

    @property
    def size(self) -> int:
        return int(self.starts.shape[0]) - 1

    def restricted(self, keep: np.ndarray | Sequence[int]) -> WindowPairs:
        """The lists of the rows ``keep`` (ascending) among themselves, renumbered 0..len(keep)-1:
        the others are dropped from every list (a list still holds every kept row above its last)."""
        import numpy as np

        keep = np.asarray(keep, dtype=np.int64)
        renumber = np.full(self.size, -1, dtype=np.int64)
        renumber[keep] = np.arange(len(keep))
        head = np.repeat(np.arange(self.size, dtype=np.int64), np.diff(self.starts))
        mine = (renumber[head] >= 0) & (renumber[self.rows] >= 0)
        counts = np.bincount(renumber[head[mine]], minlength=len(keep))
        return WindowPairs(np.r_[0, np.cumsum(counts)].astype(np.int64), renumber[self.rows[mine]],
                           self.scores[mine], self.floor)


    def renumbered(self, rows: np.ndarray, size: int) -> WindowPairs:
        """These pairs (of ``rows``' vectors) as pairs of ``size`` rows: row ``i`` here is ``rows[i]``,
        and the rows not in ``rows`` have empty lists."""
        import numpy as np

        sizes = np.zeros(size, dtype=np.int64)
        sizes[rows] = np.diff(self.starts)
        return WindowPairs(np.r_[0, np.cumsum(sizes)].astype(np.int64), rows[self.rows], self.scores, self.floor)


PAIR_SAMPLE_ROWS = 256
"""Rows (every n-th) whose nearest rows choose the window's pair threshold (:func:`pair_threshold`)."""

PAIR_COMPLETE_SHARE = 0.9
"""Share of the sampled rows whose ``count`` nearest rows all lie above the pair threshold: the
others' graph lists are searched again (exactly, :func:`build_graph`).  A lower threshold finds more
pairs (each row's list is cut to ``count`` as they come, so it costs sorting, not memory).  On the
synthetic 100k window (hashing vectors, ``count`` 32) the threshold is about 0.34: the range search finds
about 300 pairs a row, 31 a row are kept, and 3.9 % of the canonical articles are searched again for
the graph (docs/speed.md)."""

PAIR_MAX_PER_ROW = 600
"""Most pairs a row may have above the threshold on average (the sample's mean) for the window to be
searched as pairs: beyond it (a window of near-identical texts) the pairs would not fit in memory,
and dedup and the graph search apart as before."""

PAIR_BLOCK_ROWS = 4096
"""Query rows per range search (each against the rows after it)."""

PAIR_COMPACT_ENTRIES = 8_000_000
"""Pairs gathered before each row's list is cut to its ``count`` best and those above the floor."""


def pair_threshold(data: np.ndarray, count: int, floor: float) -> float | None:
    """The cosine down to which :func:`window_pairs` keeps pairs: the ``1 - PAIR_COMPLETE_SHARE``
    quantile of the sampled rows' ``count``-th nearest cosine, at most ``floor`` (rounded down to
    10⁻³); None when the sample has more than :data:`PAIR_MAX_PER_ROW` pairs a row above it."""
    import numpy as np

    faiss = import_faiss()
    n = len(data)
    if n <= count + 1:
        return None
    sample = np.ascontiguousarray(data[::max(1, n // PAIR_SAMPLE_ROWS)])
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    scores, _ = index.search(sample, count + 1)   # the row itself among them
    quantile = float(np.quantile(scores[:, count].astype(np.float64), 1.0 - PAIR_COMPLETE_SHARE))
    threshold = min(floor, np.floor(quantile * 1000.0) / 1000.0)
    if threshold <= 0.0:
        return None
    limits, _, _ = index.range_search(sample, threshold)
    if float(np.diff(limits.astype(np.int64)).mean()) > PAIR_MAX_PER_ROW + 1:
        return None
    return float(threshold)


def window_pairs(vectors: np.ndarray, count: int, floor: float,
                 rows: np.ndarray | Sequence[int] | None = None) -> WindowPairs | None:
    """Every pair of rows of ``vectors`` (L2-normalized) above :func:`pair_threshold`, found by one
    exact range search over each pair once (a block of rows against the rows after it: half the
    products of a k-nearest search of every row), each row's list cut to its ``count`` best and
    every row at or above ``floor``.  ``rows`` (ascending): only these are searched, the others'
    lists are empty and they are in none.  None where the pairs would not fit (see pair_threshold)."""
    import numpy as np

    if rows is None:
        return _all_pairs(np.ascontiguousarray(vectors, dtype=np.float32), count, floor)
    rows = np.asarray(rows, dtype=np.int64)
    found = _all_pairs(np.ascontiguousarray(np.asarray(vectors)[rows], dtype=np.float32), count, floor)
    return None if found is None else found.renumbered(rows, len(vectors))


def _all_pairs(data: np.ndarray, count: int, floor: float) -> WindowPairs | None:
    """:func:`window_pairs` of every row of ``data`` (float32, contiguous)."""
    import numpy as np

    faiss = import_faiss()
    n = len(data)
    threshold = pair_threshold(data, count, floor)
    if threshold is None:
        return None
    heads: list[np.ndarray] = []
    tails: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    gathered = 0
    index = faiss.IndexFlatIP(data.shape[1])
    order = np.zeros(0, dtype=np.int64)   # the index's rows: blocks added from the last one back
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(search_threads(threads))
    try:
        for start in reversed(range(0, n, PAIR_BLOCK_ROWS)):
            block = np.arange(start, min(n, start + PAIR_BLOCK_ROWS), dtype=np.int64)
            index.add(data[block])
            order = np.r_[order, block]
            limits, found, hits = index.range_search(data[block], threshold)
            head = np.repeat(block, np.diff(limits.astype(np.int64)))
            tail = order[hits]
            upper = tail > head     # each pair once (the block's own pairs come both ways)
            head, tail, found = head[upper], tail[upper], found[upper]
            # a row's best among this block's pairs hold its best of all: cut them now
            _, head, tail, found = _best_pairs(np.concatenate((head, tail)), np.concatenate((tail, head)),
                                               np.concatenate((found, found)), n, count, floor)
            heads.append(head)
            tails.append(tail)
            scores.append(found)
            gathered += len(head)
            if gathered > PAIR_COMPACT_ENTRIES:
                _, head, tail, found = _best_pairs(np.concatenate(heads), np.concatenate(tails),
                                                   np.concatenate(scores), n, count, floor)
                heads, tails, scores, gathered = [head], [tail], [found], len(head)
    finally:
        faiss.omp_set_num_threads(threads)
    starts, head, tail, score = _best_pairs(np.concatenate(heads), np.concatenate(tails), np.concatenate(scores),
                                            n, count, floor, by_row=True)
    return WindowPairs(starts, tail, score, floor)


def _best_pairs(head: np.ndarray, tail: np.ndarray, score: np.ndarray, n: int, count: int, floor: float, *,
                by_row: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs (scores above 0) sorted by head, then score (best first); each head's cut to those
    at or above its ``count``-th best score (ties kept: the cut does not depend on the order the
    pairs came in) and all at or above ``floor``.  ``by_row``: equal scores in row order (else in
    the order found).  Returns the heads' starts and the arrays."""
    import numpy as np

    if by_row:
        first = np.argsort(tail, kind="stable")
        head, tail, score = head[first], tail[first], score[first]
    # one integer key: the head, then the score's bits reversed (scores are positive: their bits
    # order as they do); a stable sort keeps equal scores in the order they are in
    key = head.astype(np.int64) << 31
    key |= np.int64(0x7FFFFFFF) - np.ascontiguousarray(score, dtype=np.float32).view(np.int32)
    order = np.argsort(key, kind="stable")
    head, tail, score = head[order], tail[order], score[order]
    sizes = np.bincount(head, minlength=n)
    starts = np.r_[0, np.cumsum(sizes)]
    full = np.flatnonzero(sizes > count)
    if full.size:   # only heads with more than ``count`` lose any
        cut = np.full(n, -np.inf, dtype=np.float32)
        cut[full] = score[starts[full] + count - 1]
        keep = (score >= cut[head]) | (score >= floor)
        head, tail, score = head[keep], tail[keep], score[keep]
        starts = np.r_[0, np.cumsum(np.bincount(head, minlength=n))]
    return starts.astype(np.int64), head, tail, score
