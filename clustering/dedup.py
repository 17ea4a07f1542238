"""Duplicate detection: exact keys, then FAISS near-duplicate search with a lexical guard.

Pure over arrays: takes the window's articles (vectors, texts, times, current
canonical links) and returns links for the new ones; only core.py touches the store.

Two kinds of sameness are kept apart (see docs/design.md): a *duplicate* is the same
article republished (wire copy, re-post, updated version); a *story* is the same event
told by different articles.  Same-event articles reach cosine 0.8+ with full texts, so
the embedding alone cannot tell them from copies; a copy also shares its word sequences,
which independent write-ups do not.  A near-duplicate therefore needs both a high
cosine and a high share of word shingles.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .graph import WindowPairs


@dataclass(frozen=True)
class DedupParams:
    """Thresholds of the near-duplicate test (keys of ``settings.dedup`` in feeds.yaml)."""

    near_threshold: float = 0.85
    """Cosine (title + lead embedding) at or above which two articles *may* be copies.
    SemHash ships 0.9.  On the near-dup benchmark (bench/neardup.py, seed 13), with the
    shingle guard: recall 0.92 at 0.85 vs 0.85 at 0.90, precision 1.0 and no hard negative
    (same event, different article) linked at either."""

    shingle_threshold: float = 0.50
    """Share of word 3-shingles of the shorter text found in the longer one (containment)
    needed on top of ``near_threshold``.  Copies cut to the first paragraphs keep ~1.0,
    lightly edited copies 0.6–0.9; independent articles on one event stay below 0.2."""

    lexical_only_threshold: float = 0.60
    """Containment at which a pair is a copy even when its cosine is only
    ``lexical_floor`` or more: a new headline on an unchanged body lowers the cosine of
    short RSS texts well below ``near_threshold``.  Benchmark recall 0.92 at 0.80, 0.95 at
    0.60, still with precision 1.0 and no hard negative linked."""

    lexical_floor: float = 0.60
    """Lowest cosine a pair may have to be called a copy on lexical evidence."""

    neighbours: int = 10
    """FAISS neighbours examined per new article."""

    min_shingles: int = 4
    """Texts with fewer word 3-shingles than this are too short for the lexical test;
    they are duplicates only when their normalized text is identical."""

    def __post_init__(self) -> None:
        for name in ("near_threshold", "shingle_threshold", "lexical_only_threshold", "lexical_floor"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.neighbours < 1:
            raise ValueError("neighbours must be at least 1")


_WORD = re.compile(r"\w+", re.UNICODE)


def normalize_text(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form of a text (NFKC; accents are kept)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD.findall(text))


def text_hash(title: str, summary: str) -> str:
    """Hash of the normalized title + summary: equal for byte-different exact copies."""
    return hashlib.sha1(f"{normalize_text(title)}\n{normalize_text(summary)}".encode()).hexdigest()


EMPTY_TEXT_HASH = text_hash("", "")
"""The hash of an article with no words (a bare link): never an exact-copy key."""


def shingles(text: str, size: int = 3) -> frozenset[int]:
    """Hashed word n-grams of the normalized text."""
    words = normalize_text(text).split()
    if len(words) < size:
        return frozenset([hash(" ".join(words))]) if words else frozenset()
    return frozenset(hash(" ".join(words[i:i + size])) for i in range(len(words) - size + 1))


def containment(a: frozenset[int], b: frozenset[int]) -> float:
    """|a ∩ b| / min(|a|, |b|): 1.0 when the shorter text is wholly inside the longer."""
    if not a or not b:
        return 0.0
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return sum(1 for s in small if s in large) / len(small)


@dataclass(frozen=True)
class DedupItem:
    """One article of the window as the dedup core sees it."""

    article_id: int
    published: datetime
    text: str                      # body used for the lexical test (summary or full text)
    canonical_url: str | None
    text_hash: str
    is_new: bool
    duplicate_of: int | None = None   # current link (old articles only)
    link_kind: str | None = None      # ...its kind and score, kept when the link is re-pointed
    link_score: float | None = None


@dataclass(frozen=True)
class Link:
    article_id: int
    canonical_id: int
    kind: str      # "url" | "text" | "near"
    score: float


def _order_key(item: DedupItem) -> tuple[datetime, int]:
    return (item.published, item.article_id)


def is_near_duplicate(cosine: float, shingle_share: float, params: DedupParams) -> bool:
    """The near-duplicate rule (documented at DedupParams)."""
    if cosine >= params.near_threshold and shingle_share >= params.shingle_threshold:
        return True
    return cosine >= params.lexical_floor and shingle_share >= params.lexical_only_threshold


_RANGE_MARGIN = 1e-3
"""The block's articles are compared with each other down to ``lexical_floor`` minus this (the
exact comparison follows): rounding never drops a pair."""

SEARCH_BLOCK = 1024
"""New articles searched per FAISS call.  A block is searched at once against the rows
searchable before it (``neighbours`` nearest each) and against itself (block² scores: 4 MB at
1024); larger blocks mean fewer calls and a larger block² search.  A first run of 10k synthetic
articles (``python bench/scale.py --dedup 10000,20000``): see docs/speed.md."""


APPROXIMATE_PAIRS = 2_000_000_000
"""Above this many (query, searchable row) pairs a search is no longer one exact search per block: a
first run of a large window compares every article with every earlier one, which grew as N² (a
100k-article backfill spent 244 s in dedup).  Such a first run takes its nearest rows from the
window's pairs (:func:`shares_search`, exact); another run that large (tens of thousands of new
articles into a kept window), or a window too dense for the pairs, searches the IVF index
(:func:`ivf_index`).  A 500-article run into a 100k window (5·10⁷ pairs) and a first run of 20k
(2·10⁸) stay as they were, so those keep the exact search's results."""

IVF_ROWS_PER_LIST = 256
"""Rows per inverted list of the approximate index (lists = rows / this): with a fixed number of
lists probed, a query scans a fixed number of rows, so the search grows as N, not N²."""

IVF_PROBES = 64
"""Inverted lists searched per query.  On the synthetic news (``python bench/scale.py --recall``,
docs/speed.md), 32 probes of a 100k window's 390 lists kept 0.9935 of the exact search's links
(near-duplicate links 0.9872); with lists as small on a 20k window, 32 probes kept 0.9966 of the
near-duplicate links, 64 kept 0.9983 and 128 all of them."""

IVF_TRAINING_ROWS_PER_LIST = 64
"""k-means trains on at most this many rows per list, taken at a fixed stride (no random draw)."""


def ivf_index(vectors: np.ndarray) -> Any:  # a faiss.IndexIVFFlat
    """An empty inner-product IVF index trained on ``vectors`` (float32, L2-normalized), probing
    :data:`IVF_PROBES` lists: what a large search uses instead of the exact flat one.  The
    training sample is every n-th row and k-means is seeded, so one window trains one index."""
    import numpy as np

    from .graph import import_faiss

    faiss = import_faiss()

    dimension = vectors.shape[1]
    lists = max(1, len(vectors) // IVF_ROWS_PER_LIST)
    stride = max(1, len(vectors) // (lists * IVF_TRAINING_ROWS_PER_LIST))
    sample = np.ascontiguousarray(vectors[::stride], dtype=np.float32)
    quantizer = faiss.IndexFlatIP(dimension)
    index = faiss.IndexIVFFlat(quantizer, dimension, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 1234
    index.cp.max_points_per_centroid = IVF_TRAINING_ROWS_PER_LIST + 1
    index.train(sample)
    index.nprobe = min(IVF_PROBES, lists)
    return index


def shares_search(items: Sequence[DedupItem]) -> bool:
    """Whether the window is searched once for dedup and the neighbour graph: a first run (every
    article new) whose search would be approximate (over :data:`APPROXIMATE_PAIRS`).  Its copies are
    then found in the window's pairs (graph.window_pairs: every pair at or above ``lexical_floor``,
    from one exact range search over each pair once, which the graph takes its lists from too)
    instead of the IVF index: exact, and on the synthetic 100k backfill the two searches had taken
    about 95 of its 135 CPU seconds (docs/speed.md)."""
    new = sum(1 for item in items if item.is_new)
    return new == len(items) and new * (new / 2) > APPROXIMATE_PAIRS


def searched_items(items: Sequence[DedupItem]) -> list[int]:
    """The items of a first run (every article new) that may be searched: all but those an earlier
    article (in time order) links by URL or text before any search (:func:`find_duplicates` registers
    every article's URL and text hash as it goes), in order of position."""
    seen_urls: set[str] = set()
    seen_hashes: set[str] = set()
    copies = set()
    for index in sorted(range(len(items)), key=lambda i: _order_key(items[i])):
        item = items[index]
        url = item.canonical_url
        hashed = item.text_hash if item.text_hash != EMPTY_TEXT_HASH else None
        if (url and url in seen_urls) or (hashed is not None and hashed in seen_hashes):
            copies.add(index)
        if url:
            seen_urls.add(url)
        if hashed is not None:
            seen_hashes.add(hashed)
    return [index for index in range(len(items)) if index not in copies]


def pairs_floor(params: DedupParams) -> float:
    """The cosine down to which the window's pairs must reach for dedup (``lexical_floor`` less the
    rounding margin)."""
    return params.lexical_floor - _RANGE_MARGIN


def find_duplicates(items: Sequence[DedupItem], vectors: np.ndarray, params: DedupParams,
                    progress: Callable[[int, int], None] | None = None,
                    pairs: WindowPairs | None = None) -> list[Link]:
    """Links for every article whose canonical changes: the new ones, and old canonicals
    that a newly seen *earlier* copy now precedes (with their duplicates re-pointed).

    ``vectors[i]`` is the L2-normalized embedding of ``items[i]``.  The canonical of a
    group is always its earliest article (publication time, then id).

    New articles are taken in time order, and each is compared with its ``neighbours``
    nearest among the rows searchable at that moment: the group roots of the window's old
    articles, then each new article that became a canonical (or took over a group) before it.
    Those are found per block of :data:`SEARCH_BLOCK` new articles: one exact inner-product
    search of the block against the rows searchable before it, one of the block against
    itself, and for each article :func:`nearest_rows` merges the two as one search over the
    rows searchable at its moment would (the decisions of one FAISS search per article over
    a growing index; tests/test_dedup.py compares the two).  ``progress(done, total)`` is
    called after each block.

    ``pairs`` (graph.window_pairs over ``vectors``, down to ``lexical_floor`` less
    :data:`_RANGE_MARGIN` at least; a first run's may leave out the items it links by URL or text,
    :func:`searched_items`) replace the search of the rows before each block: a row's nearest are
    its pairs among them, scored exactly (graph.exact_cosine, as float32).
    """
    import numpy as np

    from .graph import import_faiss

    faiss = import_faiss()

    if not items:
        return []
    canonical: dict[int, int] = {}          # index -> index of its canonical (root)
    for index in range(len(items)):
        canonical[index] = index
    position = {item.article_id: index for index, item in enumerate(items)}
    # an old copy whose canonical has left the window keeps its link and takes no part
    outside = {i for i, it in enumerate(items)
               if not it.is_new and it.duplicate_of is not None and it.duplicate_of not in position}
    kinds: dict[int, tuple[str, float]] = {}
    for index, item in enumerate(items):
        if not item.is_new and item.duplicate_of is not None and item.duplicate_of in position:
            canonical[index] = position[item.duplicate_of]
            if item.link_kind is not None:
                kinds[index] = (item.link_kind, item.link_score if item.link_score is not None else 1.0)

    by_url: dict[str, int] = {}
    by_hash: dict[str, int] = {}

    def register(index: int, root: int) -> None:
        """Exact keys of every member (not only the canonical) lead to the group's root."""
        url = items[index].canonical_url
        if url:
            by_url.setdefault(url, root)
        if items[index].text_hash != EMPTY_TEXT_HASH:
            by_hash.setdefault(items[index].text_hash, root)

    old_roots = [i for i, it in enumerate(items) if not it.is_new and canonical[i] == i and i not in outside]
    for index in old_roots:
        register(index, index)
    for index, item in enumerate(items):
        if not item.is_new and canonical[index] != index:
            register(index, canonical[index])

    new_order = sorted((i for i, it in enumerate(items) if it.is_new), key=lambda i: _order_key(items[i]))
    # searchable rows, in the order they became searchable: each group's canonical at the
    # time it was added (a row keeps its own article, whose group root is canonical[article])
    index_rows: list[int] = list(old_roots)
    row_vectors = np.empty((len(old_roots) + len(new_order), vectors.shape[1]), dtype=np.float32)
    row_vectors[:len(old_roots)] = vectors[old_roots]
    shingle_cache: dict[int, frozenset[int]] = {}

    def shingles_of(i: int) -> frozenset[int]:
        if i not in shingle_cache:
            shingle_cache[i] = shingles(items[i].text)
        return shingle_cache[i]

    def attach(child: int, root: int, kind: str, score: float) -> None:
        # keep the earliest as canonical; re-point the later group if the child is earlier
        if _order_key(items[child]) < _order_key(items[root]):
            for i, r in list(canonical.items()):
                if r == root:
                    canonical[i] = child
            canonical[child] = child
            kinds[root] = (kind, score)
            _replace_root(by_url, root, child, items[child].canonical_url)
            _replace_root(by_hash, root, child, items[child].text_hash)
            # the old root's row stays (its text still finds its copies); the child is added
            index_rows.append(child)
        else:
            canonical[child] = root
            kinds[child] = (kind, score)
            register(child, root)

    def nearest_copy(index: int, nearest: list[tuple[float, int]]) -> tuple[float, int] | None:
        """The best near-duplicate root among the article's ``nearest`` (score, row), nearest
        first: the first of the best scores wins."""
        best: tuple[float, int] | None = None
        own = shingles_of(index)
        for score, row in nearest:
            if np.float32(score) < params.lexical_floor:  # compared as one FAISS search per article did
                break
            member = index_rows[row]
            candidate = canonical[member]
            if candidate == index:
                continue
            other = shingles_of(member)
            if min(len(own), len(other)) < params.min_shingles:
                continue
            if is_near_duplicate(score, containment(own, other), params) and (best is None or score > best[0]):
                best = (score, candidate)
        return best

    def linked_by_key(index: int) -> bool:
        """Link a new article to the group holding its URL or its text, if one does."""
        item = items[index]
        root = by_url.get(item.canonical_url) if item.canonical_url else None
        if root is not None:
            attach(index, root, "url", 1.0)
            return True
        root = by_hash.get(item.text_hash) if item.text_hash != EMPTY_TEXT_HASH else None
        if root is not None:
            attach(index, root, "text", 1.0)
            return True
        return False

    # a large search (a backfill) goes through one approximate index that grows with the rows
    approximate = None
    row_of_item = np.full(len(items), -1, dtype=np.int64)   # the row an article has, if searchable
    row_of_item[old_roots] = np.arange(len(old_roots))
    if pairs is not None:
        if pairs.size != len(items) or pairs.floor > pairs_floor(params):
            raise ValueError("pairs must cover every item down to lexical_floor")
    elif len(new_order) * (len(old_roots) + len(new_order) / 2) > APPROXIMATE_PAIRS:
        approximate = ivf_index(vectors)
        if old_roots:
            approximate.add(row_vectors[:len(old_roots)])
    for start in range(0, len(new_order), SEARCH_BLOCK):
        block = new_order[start:start + SEARCH_BLOCK]
        queries = np.ascontiguousarray(vectors[block], dtype=np.float32)
        searched = len(index_rows)
        # the rows searchable before this block, and the block's own articles against each other
        # (FAISS's exact search both times: equal vectors score equal); a block article is searchable
        # by the later ones once added
        before_scores, before_rows = np.empty((len(block), 0), np.float32), np.empty((len(block), 0), np.int64)
        if searched and pairs is not None:
            before_scores, before_rows = paired_nearest(pairs, vectors, block, row_of_item, searched,
                                                        params.neighbours)
        elif searched and approximate is not None:
            before_scores, before_rows = approximate.search(queries, min(params.neighbours, searched))
            found = before_rows >= 0   # fewer hits than asked in the probed lists: -1 rows, dropped below
            before_scores = np.where(found, before_scores, -np.inf).astype(np.float32)
        elif searched:
            before_scores, before_rows = faiss.knn(queries, row_vectors[:searched], min(params.neighbours, searched),
                                                   metric=faiss.METRIC_INNER_PRODUCT)
        block_index = faiss.IndexFlatIP(queries.shape[1])
        block_index.add(queries)
        limits, within_scores, within_offsets = block_index.range_search(queries, params.lexical_floor - _RANGE_MARGIN)
        row_of: dict[int, int] = {}  # offset in the block -> its row, for the articles added so far
        for offset, index in enumerate(block):
            rows_before = len(index_rows)
            if not linked_by_key(index):
                before = list(zip(before_scores[offset].tolist(), before_rows[offset].tolist(), strict=True))
                # earlier articles of the block that were added, in the order they were (rows grow with offsets)
                within = zip(within_offsets[limits[offset]:limits[offset + 1]].tolist(),
                             within_scores[limits[offset]:limits[offset + 1]].tolist(), strict=True)
                added = sorted((row_of[j], score) for j, score in within if j < offset and j in row_of)
                best = nearest_copy(index, nearest_rows(before, [(score, row) for row, score in added],
                                                        params.neighbours))
                if best is not None:
                    attach(index, best[1], "near", min(best[0], 1.0))
                else:  # a new canonical: searchable by later new articles
                    register(index, index)
                    index_rows.append(index)
            if len(index_rows) > rows_before:
                row_of[offset] = rows_before
        row_vectors[searched:len(index_rows)] = vectors[index_rows[searched:]]
        row_of_item[index_rows[searched:]] = np.arange(searched, len(index_rows))
        if approximate is not None and len(index_rows) > searched:
            approximate.add(row_vectors[searched:len(index_rows)])
        if progress is not None:
            progress(start + len(block), len(new_order))

    links: list[Link] = []
    for index, item in enumerate(items):
        if index in outside:
            continue
        root = canonical[index]
        while canonical[root] != root:
            root = canonical[root]
        new_canonical = None if root == index else items[root].article_id
        if item.is_new or new_canonical != item.duplicate_of:
            if new_canonical is None:
                if not item.is_new:  # an old duplicate became canonical (cannot happen today)
                    links.append(Link(item.article_id, item.article_id, "none", 0.0))
                continue
            kind, score = kinds.get(index, ("near", 1.0))
            links.append(Link(item.article_id, new_canonical, kind, score))
    return links


def paired_nearest(pairs: WindowPairs, vectors: np.ndarray, block: Sequence[int], row_of_item: np.ndarray,
                   searched: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each article of ``block``, its ``k`` nearest among the first ``searched`` rows at or above
    ``pairs.floor``, from its pairs: (scores, rows), each (len(block), k), best first, −inf / −1
    padded.  Scores are exact cosines (as float32), ties to the smaller row."""
    import numpy as np

    from .graph import exact_cosine

    block_items = np.asarray(block, dtype=np.int64)
    starts, ends = pairs.starts[block_items], pairs.starts[block_items + 1]
    lengths = ends - starts
    owner = np.repeat(np.arange(len(block_items)), lengths)
    entry = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths) \
        + np.repeat(starts, lengths)
    tails = pairs.rows[entry]
    rows = row_of_item[tails]
    usable = (pairs.scores[entry] >= pairs.floor) & (rows >= 0) & (rows < searched)
    owner, tails, rows = owner[usable], tails[usable], rows[usable]
    scores = exact_cosine(vectors, block_items[owner], tails).astype(np.float32)
    order = np.lexsort((rows, -scores, owner))
    owner, rows, scores = owner[order], rows[order], scores[order]
    first = np.r_[0, np.cumsum(np.bincount(owner, minlength=len(block_items)))]
    rank = np.arange(len(owner)) - first[owner]
    keep = rank < k
    found_scores = np.full((len(block_items), k), -np.inf, dtype=np.float32)
    found_rows = np.full((len(block_items), k), -1, dtype=np.int64)
    found_scores[owner[keep], rank[keep]] = scores[keep]
    found_rows[owner[keep], rank[keep]] = rows[keep]
    return found_scores, found_rows


def nearest_rows(before: Sequence[tuple[float, int]], added: Sequence[tuple[float, int]],
                 k: int) -> list[tuple[float, int]]:
    """The ``k`` nearest (score, row) as FAISS's flat search keeps them, nearest first.

    FAISS scans the rows in order; a row enters the ``k`` kept when its score is above the
    lowest kept one's (strictly), and the lowest kept leaves (among equal scores, the earlier
    row); the result is sorted by score, then row, descending.  ``before`` is FAISS's result
    over the earlier rows (the same scan stopped there; rows < 0 are empty places), ``added``
    the later rows in their order: the result is what one search over all of them gives.
    Rows below ``lexical_floor`` may be left out of ``added``: such a row only ever takes the
    place of an empty one or of a lower row, so the rows at or above the floor kept are the same.
    """
    kept = [(score, row) for score, row in before if row >= 0]
    kept += [(-math.inf, -1)] * (k - len(kept))
    heapq.heapify(kept)
    for score, row in added:
        if score > kept[0][0]:
            heapq.heapreplace(kept, (score, row))
    return sorted((entry for entry in kept if entry[1] >= 0), reverse=True)


def _replace_root(table: dict[str, int], old: int, new: int, new_key: str | None) -> None:
    for key, value in list(table.items()):
        if value == old:
            table[key] = new
    if new_key:
        table.setdefault(new_key, new)
