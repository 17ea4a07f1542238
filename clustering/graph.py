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


def build_graph(vectors: np.ndarray, k: int, ids: np.ndarray | None = None) -> NeighbourGraph:
    """Exact k-nearest-neighbour lists of every row of ``vectors`` (L2-normalized), best first;
    ties go to the smaller article id (``ids``, default the row)."""
    import numpy as np

    n = int(vectors.shape[0])
    k = max(0, min(k, n - 1))
    if n == 0 or k == 0:
        return NeighbourGraph(np.full((n, 0), -1, dtype=np.int64), np.zeros((n, 0), dtype=np.float32))
    ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    candidates = _search(data, np.arange(n), k + SEARCH_EXTRA)
    return _select(data, ids, np.arange(n), candidates, k, NeighbourGraph(
        np.full((n, k), -1, dtype=np.int64), np.zeros((n, k), dtype=np.float32)))


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

    return (data[a].astype(np.float64) * data[b].astype(np.float64)).sum(axis=1)
