"""The window's derived state, kept between runs: each article's neighbours and terms.

The story stage needs, for every canonical article of the window, its neighbour list
(graph.py) and what terms.py reads of its text.  Both derive from SQLite alone.  A run updates
them for what changed (new articles searched, articles that left dropped, lists that lost a
neighbour searched again) instead of recomputing the whole window, and keeps them in a file
beside the database (``<database>.window``) for the next run: a cron run is a new process.

The file is a cache, and untrusted input: whatever it holds costs time, never a result.  It is
opened only if it is a regular file (no link followed, never blocking on a FIFO), read only if
its size fits the window, and used only if (1) its seal, a keyed hash of every part made with a
key kept in the database, matches: an edited file or another database's is refused; (2) every
array has the dtype, shape and range of the window it describes; and (3) what it records of each
article still in the window, the hash of its stored text and of its stored vector, equals what
the database holds now (an edited title or embedding, two swapped ids).  Anything else is rebuilt
from SQLite with one warning: an updated graph equals a rebuilt one (graph.update_graph) and the
terms are a function of each article's text.  Nothing in it is executable: arrays and JSON,
never pickle.  It is written to ``<database>.window.<pid>.tmp`` (created anew, never through a
link) and renamed over the old file; a temporary file a killed run left behind is removed by the
next run that saves (runs hold the run lock, so no other writer is at work).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .terms import TermTable, article_terms

if TYPE_CHECKING:
    import numpy as np

    from .graph import NeighbourGraph, WindowPairs

log = logging.getLogger(__name__)

CACHE_FORMAT = 3
"""Bumped whenever what the file holds, or how it is computed, changes: an older file is rebuilt.
2: per-article text and vector hashes and the keyed seal.  3: the terms in columns (a vocabulary
and token arrays, terms.TermTable) instead of JSON rows: on a 100k window, writing and reading the
JSON rows took 2.0 s of a 15 s cron run (issue 19)."""

CACHE_BYTES_PER_ROW = 16_384
"""Largest file read per article of the window (plus ``CACHE_BYTES_SLACK``): a row takes about
1 KB (its id, hashes, neighbour list and names), so a larger file is not this window's cache and is
not read into memory (a 4 GiB file planted there)."""

CACHE_BYTES_SLACK = 1_048_576

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_TERM_PARTS = ("name_offsets", "name_tokens", "title_offsets", "title_tokens", "word_counts")
_PARTS = ("header", "ids", "text_hashes", "vector_hashes", "neighbour_rows", "similarity", "vocabulary",
          *_TERM_PARTS, "seal")


class CacheRefused(Exception):
    """Why a cache file is not used (said in the one warning, then the window is rebuilt)."""


@dataclass
class WindowState:
    """Neighbour lists and terms of the window's canonical articles, rows in ``ids`` order, with
    the hashes of the text and vector each row was computed from."""

    model: str
    neighbours: int
    ids: np.ndarray                    # article ids, one per row (int64)
    text_hashes: np.ndarray            # store.content_hash of each row's title and summary (int64)
    vector_hashes: np.ndarray          # vector_hashes() of each row's stored vector (uint64)
    graph: NeighbourGraph
    terms: TermTable                   # a row per row of ids


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


def vector_hashes(vectors: np.ndarray) -> np.ndarray:
    """One 64-bit hash per row of a float32 matrix, exact (integer arithmetic on the bits, no
    rounding): the sum of each 32-bit word times an odd constant, modulo 2**64.  Any change to one
    number of a row changes its hash; 100k rows of 384 take about 0.1 s."""
    import numpy as np

    data = np.ascontiguousarray(vectors, dtype=np.float32)
    rows, width = data.shape if data.ndim == 2 else (len(data), 0)
    constants = np.frombuffer(hashlib.shake_128(b"clustering.window").digest(8 * max(width, 1)),
                              dtype="<u8")[:width] | np.uint64(1)
    words = data.view(np.uint32) if width else np.zeros((rows, 0), dtype=np.uint32)
    result = np.zeros(rows, dtype=np.uint64)
    for start in range(0, rows, 8192):
        result[start:start + 8192] = words[start:start + 8192].astype(np.uint64) @ constants
    return result


def refresh(state: WindowState | None, ids: Sequence[int], vectors: np.ndarray,
            texts: Callable[[int], tuple[str, str]], text_hashes: Sequence[int], *, model: str,
            neighbours: int, pairs: WindowPairs | None = None) -> tuple[WindowState, RefreshReport]:
    """The state of the window ``ids`` (rows of ``vectors``; ``text_hashes`` their stored texts'
    ``store.content_hash``): ``state`` updated, or built anew when there is none or it does not
    fit (``texts(id)`` gives an article's title and summary); a graph built anew takes its candidates
    from ``pairs`` (graph.window_pairs over these rows) where given."""
    import numpy as np

    from .graph import build_graph, update_graph

    ids_array = np.asarray(ids, dtype=np.int64)
    text_array = np.asarray(text_hashes, dtype=np.int64)
    vector_array = vector_hashes(vectors)
    usable = state is not None and state.model == model and state.neighbours == neighbours and \
        _still_matches(state, ids_array, text_array, vector_array)
    if usable:
        assert state is not None
        graph, searched = update_graph(state.ids, state.graph, ids_array, vectors, neighbours)
        known = state.terms
        previous_row = _rows_in(state.ids, ids_array)
    else:
        graph, searched = build_graph(vectors, neighbours, ids_array, pairs), len(ids_array)
        known = TermTable.of(())
        previous_row = np.full(len(ids_array), -1, dtype=np.int64)
    missing = np.flatnonzero(previous_row < 0)
    read = TermTable.of((article_terms(*texts(article_id)) for article_id in ids_array[missing].tolist()),
                        vocabulary=known.vocabulary)
    source = previous_row.copy()   # each row's place in the known rows followed by the rows read now
    source[missing] = len(known) + np.arange(len(missing))
    terms = known.followed_by(read).take(source).compacted()
    return (WindowState(model, neighbours, ids_array, text_array, vector_array, graph, terms),
            RefreshReport(rebuilt=not usable, searched=searched, new_terms=len(missing)))


def _rows_in(previous_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """For each of ``ids``, its row in ``previous_ids`` (distinct), or −1."""
    import numpy as np

    if not len(previous_ids):
        return np.full(len(ids), -1, dtype=np.int64)
    order = np.argsort(previous_ids, kind="stable")
    position = np.clip(np.searchsorted(previous_ids[order], ids), 0, len(previous_ids) - 1)
    return np.where(previous_ids[order][position] == ids, order[position], -1)


def _still_matches(state: WindowState, ids: np.ndarray, texts_now: np.ndarray, vectors_now: np.ndarray) -> bool:
    """Whether every article the state shares with the window has the text and vector the state was
    computed from (an edited title or embedding, ids swapped in the file): else one warning."""
    import numpy as np

    row_now = _rows_in(ids, state.ids)
    shared = row_now >= 0
    rows_now = row_now[shared]
    for what, cached, current in (("text", state.text_hashes[shared], texts_now[rows_now]),
                                  ("embedding", state.vector_hashes[shared], vectors_now[rows_now])):
        differs = np.flatnonzero(cached != current)
        if differs.size:
            log.warning("the window cache does not match the database (the stored %s of %d article(s), e.g. "
                        "article %d, changed since it was saved); rebuilding it", what, differs.size,
                        int(state.ids[shared][differs[0]]))
            return False
    return True


def load(path: Path | None, key: bytes, *, window_rows: int) -> WindowState | None:
    """The state saved at ``path``, or None: no file (silently), or a file that is not a sealed,
    consistent cache of a window of this database (one warning; the caller rebuilds).
    ``window_rows`` (the window's size now) bounds what is read."""
    if path is None:
        return None
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        reason = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror or str(exc)
        log.warning("window cache %s is not used (%s); rebuilding it", path, reason)
        return None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise CacheRefused("not a regular file")
        with os.fdopen(descriptor, "rb") as handle:
            return _read(handle, key, CACHE_BYTES_PER_ROW * window_rows + CACHE_BYTES_SLACK)
    except Exception as exc:  # noqa: BLE001 - a cache that cannot be used is rebuilt, whatever the cause
        log.warning("window cache %s is not used (%s); rebuilding it", path, exc)
        return None


def _read(handle: Any, key: bytes, limit: int) -> WindowState | None:
    import zipfile

    import numpy as np

    from .graph import NeighbourGraph

    status = os.fstat(handle.fileno())
    if status.st_size > limit:
        raise CacheRefused(f"{status.st_size} bytes, more than a cache of this window can take ({limit})")
    with zipfile.ZipFile(handle) as archive:
        members = archive.infolist()
        if sum(m.file_size for m in members) > limit:
            raise CacheRefused("its parts are larger than a cache of this window can take")
    handle.seek(0)
    with np.load(handle, allow_pickle=False) as stored:
        header = json.loads(_bytes_part(stored["header"], "header").decode("utf-8"))
        if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT:
            return None  # another format: rebuilt without a warning (an upgrade)
        if sorted(stored.files) != sorted(_PARTS):
            raise CacheRefused("not the parts of a window cache")
        parts = {name: stored[name] for name in _PARTS}
    if not hmac.compare_digest(_seal(key, parts), _bytes_part(parts["seal"], "seal")):
        raise CacheRefused("its seal does not match: edited, or made for another database")
    model, neighbours = header.get("model"), header.get("neighbours")
    if not isinstance(model, str) or not isinstance(neighbours, int) or isinstance(neighbours, bool):
        raise CacheRefused("its header is not a cache header")
    ids = _array_part(parts["ids"], "ids", np.int64, 1)
    n = len(ids)
    text_hashes = _array_part(parts["text_hashes"], "text_hashes", np.int64, 1, (n,))
    vector_column = _array_part(parts["vector_hashes"], "vector_hashes", np.uint64, 1, (n,))
    rows = _array_part(parts["neighbour_rows"], "neighbour_rows", np.int64, 2)
    similarity = _array_part(parts["similarity"], "similarity", np.float32, 2, rows.shape)
    if rows.shape[0] != n or rows.shape[1] != max(0, min(neighbours, n - 1)):
        raise CacheRefused(f"neighbour_rows has shape {rows.shape}, not ({n}, {max(0, min(neighbours, n - 1))})")
    _check_graph(ids, rows, similarity)
    terms = _terms(n, json.loads(_bytes_part(parts["vocabulary"], "vocabulary").decode("utf-8")), parts)
    return WindowState(model, neighbours, ids, text_hashes, vector_column, NeighbourGraph(rows, similarity), terms)


def _check_graph(ids: np.ndarray, rows: np.ndarray, similarity: np.ndarray) -> None:
    """Ids distinct; each list of distinct rows of the window, none itself, −1 only as padding at
    its end; similarities finite cosines, best first, 0 where padded."""
    import numpy as np

    n = len(ids)
    if n and len(np.unique(ids)) != n:
        raise CacheRefused("an article id appears twice")
    if not rows.size:
        return
    if rows.min() < -1 or rows.max() >= n:
        raise CacheRefused("a neighbour row is outside the window")
    padded = rows < 0
    if (padded[:, :-1] & ~padded[:, 1:]).any():
        raise CacheRefused("a neighbour list has a gap")
    if (rows == np.arange(n)[:, None]).any():
        raise CacheRefused("an article is its own neighbour")
    ordered = np.sort(np.where(padded, -1 - np.arange(rows.shape[1]), rows), axis=1)
    if (ordered[:, 1:] == ordered[:, :-1]).any():
        raise CacheRefused("a neighbour list repeats a row")
    if not np.isfinite(similarity).all() or np.abs(similarity).max() > 1.0001:
        raise CacheRefused("a similarity is not a cosine")
    if (np.diff(np.where(padded, -np.inf, similarity), axis=1) > 0).any() or (similarity[padded] != 0).any():
        raise CacheRefused("a neighbour list is not in order")


def _terms(n: int, vocabulary: object, parts: dict[str, np.ndarray]) -> TermTable:
    """The terms of ``n`` rows: a vocabulary of distinct strings, and per kind of term offsets
    (0 to the token count, non-decreasing) into token ids of that vocabulary."""
    import numpy as np

    if type(vocabulary) is not list or any(type(word) is not str or not word for word in vocabulary):
        raise CacheRefused("the vocabulary is not a list of words")
    if len(set(vocabulary)) != len(vocabulary):
        raise CacheRefused("a word appears twice in the vocabulary")
    columns: list[np.ndarray] = []
    for kind in ("name", "title"):
        offsets = _array_part(parts[f"{kind}_offsets"], f"{kind}_offsets", np.int64, 1, (n + 1,))
        tokens = _array_part(parts[f"{kind}_tokens"], f"{kind}_tokens", np.int64, 1)
        if offsets[0] != 0 or offsets[-1] != len(tokens) or (np.diff(offsets) < 0).any():
            raise CacheRefused(f"the {kind} offsets do not cover the {kind} tokens")
        if len(tokens) and (tokens.min() < 0 or tokens.max() >= len(vocabulary)):
            raise CacheRefused(f"a {kind} token is outside the vocabulary")
        columns += [offsets, tokens]
    word_counts = _array_part(parts["word_counts"], "word_counts", np.int64, 1, (n,))
    if len(word_counts) and word_counts.min() < 0:
        raise CacheRefused("a word count is negative")
    name_offsets, name_tokens, title_offsets, title_tokens = columns
    return TermTable(tuple(vocabulary), name_offsets, name_tokens, title_offsets, title_tokens, word_counts)


def _array_part(value: np.ndarray, name: str, dtype: Any, ndim: int,
                shape: tuple[int, ...] | None = None) -> np.ndarray:
    if value.dtype != dtype or value.ndim != ndim or (shape is not None and value.shape != shape):
        raise CacheRefused(f"{name} is a {value.dtype} array of shape {value.shape}")
    return value


def _bytes_part(value: np.ndarray, name: str) -> bytes:
    import numpy as np

    return _array_part(value, name, np.uint8, 1).tobytes()


def _seal(key: bytes, parts: dict[str, np.ndarray]) -> bytes:
    """A keyed hash of every part but the seal: its name, dtype, shape and bytes."""
    sealer = hashlib.blake2b(key=key[:64], digest_size=32)
    for name in (n for n in _PARTS[:-1] if n in parts):
        value = parts[name]
        sealer.update(f"{name}:{value.dtype.str}:{value.shape}:".encode())
        sealer.update(value.tobytes())
    return sealer.digest()


def save(path: Path | None, state: WindowState, key: bytes) -> None:
    """Write the state atomically (a crash leaves the old file or the new one, never half of one);
    a cache that cannot be written only costs the next run time.  Call it holding the run lock:
    temporary files of earlier writers are swept as stale."""
    import numpy as np

    if path is None:
        return
    sweep_stale(path)
    header = json.dumps({"format": CACHE_FORMAT, "model": state.model, "neighbours": state.neighbours})
    terms = state.terms
    parts: dict[str, np.ndarray] = {"header": np.frombuffer(header.encode("utf-8"), dtype=np.uint8),
             "ids": np.ascontiguousarray(state.ids, dtype=np.int64),
             "text_hashes": np.ascontiguousarray(state.text_hashes, dtype=np.int64),
             "vector_hashes": np.ascontiguousarray(state.vector_hashes, dtype=np.uint64),
             "neighbour_rows": np.ascontiguousarray(state.graph.neighbours, dtype=np.int64),
             "similarity": np.ascontiguousarray(state.graph.similarity, dtype=np.float32),
             "vocabulary": np.frombuffer(json.dumps(list(terms.vocabulary), ensure_ascii=False).encode("utf-8"),
                                         dtype=np.uint8),
             **{name: np.ascontiguousarray(getattr(terms, name), dtype=np.int64) for name in _TERM_PARTS}}
    parts["seal"] = np.frombuffer(_seal(key, parts), dtype=np.uint8)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, _CREATE_FLAGS, 0o644)
    except OSError as exc:
        log.warning("cannot write the window cache %s (%s); the next run rebuilds it", path, exc)
        return
    try:
        with os.fdopen(descriptor, "wb") as handle:
            np.savez(handle, **parts)  # type: ignore[arg-type]
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("cannot write the window cache %s (%s); the next run rebuilds it", path, exc)
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def sweep_stale(path: Path) -> list[Path]:
    """Remove the ``<cache>.<pid>.tmp`` files beside ``path`` (runs that were killed while saving);
    the caller holds the run lock, so none belongs to a writer at work.  Links are removed, never
    followed.  Returns what was removed."""
    pattern = re.compile(re.escape(path.name) + r"\.[0-9]+\.tmp")
    removed: list[Path] = []
    try:
        names = os.listdir(path.parent)
    except OSError:
        return removed
    for name in names:
        if pattern.fullmatch(name):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                os.unlink(path.parent / name)
                removed.append(path.parent / name)
    if removed:
        log.info("removed %d temporary window cache file(s) left by killed runs", len(removed))
    return removed
