"""The window's derived state, kept between runs: each article's neighbours and terms.

The story stage needs, for every canonical article of the window, its neighbour list
(graph.py) and what terms.py reads of its text.  Both derive from SQLite alone.  A run updates
them for what changed (new articles searched, articles that left dropped, lists that lost a
neighbour searched again) instead of recomputing the whole window, and keeps them in a file
beside the database (``<database>.window``) for the next run: a cron run is a new process.

The file is a cache.  A missing, unreadable, half-written or stale file (another model, another
``neighbours``, another format, or lists that no longer match the stored vectors) is rebuilt
from SQLite: that costs time, never a result, because an updated graph equals a rebuilt one
(graph.update_graph) and the terms are a function of each article's text.  Nothing in it is
executable: arrays and JSON, never pickle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .terms import ArticleTerms, article_terms

if TYPE_CHECKING:
    import numpy as np

    from .graph import NeighbourGraph

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
"""Bumped whenever what the file holds, or how it is computed, changes: an older file is rebuilt."""

CHECKED_ROWS = 32
"""Cached neighbour lists whose similarities are recomputed from the stored vectors on loading:
any difference (another database at the same path, a restored backup) discards the file."""


@dataclass
class WindowState:
    """Neighbour lists and terms of the window's canonical articles, rows in ``ids`` order."""

    model: str
    neighbours: int
    ids: np.ndarray                    # article ids, one per row
    graph: NeighbourGraph
    terms: dict[int, ArticleTerms]


@dataclass(frozen=True)
class RefreshReport:
    rebuilt: bool          # no usable cache: everything computed anew
    searched: int          # rows whose neighbours were searched this run
    new_terms: int         # articles whose text was read for names


def cache_path(database: str | Path) -> Path | None:
    """Where a database's window cache lives (None for ``:memory:`` and a PostgreSQL URL: kept in the
    process only)."""
    from .store import database_url_scheme

    if str(database) == ":memory:" or database_url_scheme(database) is not None:
        return None  # a server database: each worker keeps its own in memory
    resolved = Path(database).resolve()
    return resolved.with_name(resolved.name + ".window")


def refresh(state: WindowState | None, ids: Sequence[int], vectors: np.ndarray,
            texts: Callable[[int], tuple[str, str]], *, model: str,
            neighbours: int) -> tuple[WindowState, RefreshReport]:
    """The state of the window ``ids`` (rows of ``vectors``): ``state`` updated, or built anew
    when there is none or it does not fit (``texts(id)`` gives an article's title and summary)."""
    import numpy as np

    from .graph import build_graph, update_graph

    ids_array = np.asarray(ids, dtype=np.int64)
    usable = state is not None and state.model == model and state.neighbours == neighbours and \
        _still_matches(state, ids_array, vectors)
    if usable:
        assert state is not None
        graph, searched = update_graph(state.ids, state.graph, ids_array, vectors, neighbours)
        known = state.terms
    else:
        graph, searched = build_graph(vectors, neighbours, ids_array), len(ids_array)
        known = {}
    terms: dict[int, ArticleTerms] = {}
    new_terms = 0
    for article_id in ids_array.tolist():
        found = known.get(article_id)
        if found is None:
            found = article_terms(*texts(article_id))
            new_terms += 1
        terms[article_id] = found
    return (WindowState(model, neighbours, ids_array, graph, terms),
            RefreshReport(rebuilt=not usable, searched=searched, new_terms=new_terms))


def _still_matches(state: WindowState, ids: np.ndarray, vectors: np.ndarray) -> bool:
    """Recompute a few cached lists' similarities from the stored vectors (exactly as the graph
    computes them): a list built on other vectors gives itself away."""
    import numpy as np

    from .graph import exact_cosine

    order = np.argsort(ids)
    position = np.clip(np.searchsorted(ids[order], state.ids), 0, max(len(ids) - 1, 0))
    if not len(ids):
        return True
    row_now = np.where(ids[order][position] == state.ids, order[position], -1)
    neighbour = state.graph.neighbours[:, 0] if state.graph.neighbours.shape[1] else np.full(len(state.ids), -1)
    checkable = np.flatnonzero((row_now >= 0) & (neighbour >= 0))
    checkable = checkable[(row_now[np.clip(neighbour[checkable], 0, None)] >= 0)]
    if not checkable.size:
        return True
    sample = checkable[np.linspace(0, checkable.size - 1, min(CHECKED_ROWS, checkable.size)).astype(np.int64)]
    a, b = row_now[sample], row_now[neighbour[sample]]
    recomputed = exact_cosine(np.ascontiguousarray(vectors, dtype=np.float32), a, b).astype(np.float32)
    if np.array_equal(recomputed, state.graph.similarity[sample, 0]):
        return True
    log.warning("the window cache does not match the stored embeddings; rebuilding it")
    return False


def load(path: Path | None) -> WindowState | None:
    """The state saved at ``path``, or None (no file, another format, unreadable: rebuilt)."""
    import numpy as np

    from .graph import NeighbourGraph

    if path is None or not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as stored:
            header = json.loads(bytes(stored["header"]).decode("utf-8"))
            if header.get("format") != CACHE_FORMAT:
                return None
            ids = stored["ids"].astype(np.int64)
            graph = NeighbourGraph(stored["neighbour_rows"].astype(np.int64), stored["similarity"].astype(np.float32))
            rows = json.loads(bytes(stored["terms"]).decode("utf-8"))
        if len(rows) != len(ids) or graph.neighbours.shape[0] != len(ids):
            raise ValueError("the parts of the file disagree in length")
        terms = {int(i): ArticleTerms(tuple(names), tuple(title_case), int(words))
                 for i, (names, title_case, words) in zip(ids.tolist(), rows, strict=True)}
        return WindowState(str(header["model"]), int(header["neighbours"]), ids, graph, terms)
    except Exception as exc:  # noqa: BLE001 - a cache that cannot be read is rebuilt, whatever the cause
        log.warning("window cache %s is unreadable (%s); rebuilding it", path, exc)
        return None


def save(path: Path | None, state: WindowState) -> None:
    """Write the state atomically (a crash leaves the old file or the new one, never half of one);
    a cache that cannot be written only costs the next run time."""
    import numpy as np

    if path is None:
        return
    header = json.dumps({"format": CACHE_FORMAT, "model": state.model, "neighbours": state.neighbours})
    rows = [[list(t.names), list(t.title_case_words), t.word_count]
            for t in (state.terms[i] for i in state.ids.tolist())]
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, header=np.frombuffer(header.encode("utf-8"), dtype=np.uint8), ids=state.ids,
                     neighbour_rows=state.graph.neighbours, similarity=state.graph.similarity,
                     terms=np.frombuffer(json.dumps(rows, ensure_ascii=False).encode("utf-8"), dtype=np.uint8))
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("cannot write the window cache %s (%s); the next run rebuilds it", path, exc)
        with contextlib.suppress(OSError):
            temporary.unlink()
