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
from typing import TYPE_CHECKING

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
        keys = np.unique(low * n + high)
        return keys // n, keys % n


def build_graph(vectors: np.ndarray, k: int) -> NeighbourGraph:
    """Exact k-nearest-neighbour lists of every row of ``vectors`` (L2-normalized)."""
    import numpy as np

    n = int(vectors.shape[0])
    k = max(0, min(k, n - 1))
    if n == 0 or k == 0:
        return NeighbourGraph(np.full((n, 0), -1, dtype=np.int64), np.zeros((n, 0), dtype=np.float32))
    import faiss

    data = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    neighbours = np.empty((n, k), dtype=np.int64)
    similarity = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, SEARCH_BLOCK_ROWS):
        stop = min(n, start + SEARCH_BLOCK_ROWS)
        found_sim, found = index.search(data[start:stop], k + 1)
        rows, sims = _drop_self(found, found_sim, np.arange(start, stop), k)
        neighbours[start:stop], similarity[start:stop] = rows, sims
    return NeighbourGraph(neighbours, similarity)


def _drop_self(found: np.ndarray, found_sim: np.ndarray, own: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row itself from its search result and order the rest by (cosine
    desc, row asc); keep k."""
    import numpy as np

    found = found.astype(np.int64)
    mask = found == own[:, None]
    found_sim = np.where(mask | (found < 0), -np.inf, found_sim)
    order = np.lexsort((np.where(found < 0, np.iinfo(np.int64).max, found), -found_sim), axis=1)
    found = np.take_along_axis(found, order, axis=1)[:, :k]
    found_sim = np.take_along_axis(found_sim, order, axis=1)[:, :k]
    found[~np.isfinite(found_sim)] = -1
    found_sim[~np.isfinite(found_sim)] = 0.0
    return found, found_sim.astype(np.float32)
