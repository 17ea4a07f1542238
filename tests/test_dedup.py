"""dedup.py: pure over arrays, no database."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from clustering import dedup
from clustering.dedup import (
    EMPTY_TEXT_HASH,
    DedupItem,
    DedupParams,
    Link,
    _order_key,
    containment,
    find_duplicates,
    is_near_duplicate,
    normalize_text,
    shingles,
    text_hash,
)
from clustering.embed import HashingEmbedder

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
PARAMS = DedupParams()
DIM = 16

QUAKE = ("A magnitude 6.1 earthquake struck off the coast of Northvale early on Tuesday, shaking buildings "
         "in the harbour town and cutting power to thousands of homes, officials said.")
QUAKE_EDITED = QUAKE + " Rescue teams were searching two collapsed warehouses near the port on Tuesday afternoon."
QUAKE_OTHER_WRITEUP = ("Residents of Northvale spent the night outdoors after a strong tremor rattled the region; "
                       "the mayor asked people to stay away from damaged buildings until engineers inspect them.")
BANK = ("The central bank of Eastmarch raised its main interest rate by half a point on Thursday, the third "
        "increase this year, citing stubborn inflation in food and energy prices.")


def unit(index: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = 1.0
    return vector


def near(base: int, other: int, cosine: float) -> np.ndarray:
    """A unit vector with the given cosine to ``unit(base)``."""
    return (cosine * unit(base) + np.sqrt(1.0 - cosine ** 2) * unit(other)).astype(np.float32)


def item(article_id: int, text: str, *, minutes: int = 0, url: str | None = None, new: bool = True,
         duplicate_of: int | None = None, kind: str | None = None, score: float | None = None) -> DedupItem:
    return DedupItem(article_id=article_id, published=T0 + timedelta(minutes=minutes), text=text,
                     canonical_url=url, text_hash=text_hash("", text), is_new=new, duplicate_of=duplicate_of,
                     link_kind=kind, link_score=score)


def links_of(items: list[DedupItem], vectors: list[np.ndarray], params: DedupParams = PARAMS) -> set[tuple]:
    found = find_duplicates(items, np.stack(vectors).astype(np.float32), params)
    assert all(isinstance(link, Link) for link in found)
    return {(link.article_id, link.canonical_id, link.kind, round(link.score, 3)) for link in found}


# --- text keys ----------------------------------------------------------------------------------------
def test_normalize_text_ignores_case_punctuation_and_whitespace() -> None:
    assert normalize_text("  Hello,   WORLD!\n\tIt's  “here”… ") == "hello world it s here"
    assert normalize_text("STRASSE") == normalize_text("straße")  # casefold, not lower
    assert normalize_text("ﬁne １２") == "fine 12"  # NFKC
    assert normalize_text("") == ""


def test_text_hash_equal_for_byte_different_copies() -> None:
    assert text_hash("Quake hits Northvale", "Power cut, officials say.") == text_hash(
        "QUAKE hits  northvale!", "power cut officials say")
    assert text_hash("Quake hits Northvale", "Power cut") != text_hash("Quake hits Eastmarch", "Power cut")
    assert text_hash("a b", "") != text_hash("a", "b")  # title and summary stay apart


def test_shingles_and_containment() -> None:
    assert len(shingles("one two three four")) == 2
    assert shingles("One, two; THREE four") == shingles("one two three four")
    assert len(shingles("just two")) == 1  # shorter than a shingle: the whole text
    assert shingles("") == frozenset() and shingles("!!!") == frozenset()
    lead = shingles(QUAKE)
    assert containment(lead, shingles(QUAKE_EDITED)) == 1.0  # shorter wholly inside the longer
    assert containment(shingles(QUAKE_EDITED), lead) == 1.0  # symmetric
    assert containment(lead, shingles(BANK)) == 0.0
    assert containment(lead, frozenset()) == 0.0
    assert 0.0 < containment(shingles("a b c d e f"), shingles("a b c x y z")) < 1.0


@pytest.mark.parametrize(("cosine", "share", "expected"), [
    (0.85, 0.50, True),     # both thresholds are inclusive
    (0.99, 0.49, False),    # same event, different words: the lexical guard
    (0.84, 0.59, False),    # neither rule
    (0.60, 0.60, True),     # new headline on an unchanged body
    (0.59, 1.00, False),    # below the lexical floor
    (1.00, 0.00, False),
])
def test_is_near_duplicate_rule(cosine: float, share: float, expected: bool) -> None:
    assert is_near_duplicate(cosine, share, PARAMS) is expected


def test_params_validation() -> None:
    with pytest.raises(ValueError, match="near_threshold"):
        DedupParams(near_threshold=1.5)
    with pytest.raises(ValueError, match="lexical_floor"):
        DedupParams(lexical_floor=-0.1)
    with pytest.raises(ValueError, match="neighbours"):
        DedupParams(neighbours=0)


# --- find_duplicates --------------------------------------------------------------------------------
def test_empty_input() -> None:
    assert find_duplicates([], np.zeros((0, DIM), dtype=np.float32), PARAMS) == []


def test_unrelated_articles_are_not_linked() -> None:
    assert links_of([item(1, QUAKE), item(2, BANK)], [unit(0), unit(1)]) == set()


def test_exact_url() -> None:
    items = [item(2, BANK, minutes=5, url="https://example.com/a"),
             item(1, QUAKE, minutes=0, url="https://example.com/a")]
    assert links_of(items, [unit(0), unit(1)]) == {(2, 1, "url", 1.0)}


def test_exact_text() -> None:
    items = [item(1, QUAKE, url="https://a.example/1"), item(2, QUAKE.upper() + "!!", minutes=3,
                                                              url="https://b.example/2")]
    assert links_of(items, [unit(0), unit(1)]) == {(2, 1, "text", 1.0)}


def test_articles_without_words_are_not_exact_copies() -> None:
    """Bare links (no title, no text) all share one text hash; that is no evidence."""
    items = [item(1, "", url="https://a.example/1"), item(2, "", minutes=1, url="https://b.example/2"),
             item(3, " — ", minutes=2, new=False)]
    assert links_of(items, [unit(0), unit(1), unit(2)]) == set()


def test_near_duplicate_needs_cosine_and_shared_text() -> None:
    items = [item(1, QUAKE), item(2, QUAKE_EDITED, minutes=10), item(3, BANK, minutes=20)]
    assert links_of(items, [unit(0), near(0, 1, 0.95), unit(2)]) == {(2, 1, "near", 0.95)}


def test_near_duplicate_on_lexical_evidence_with_a_lower_cosine() -> None:
    items = [item(1, QUAKE), item(2, QUAKE_EDITED, minutes=10)]
    assert links_of(items, [unit(0), near(0, 1, 0.7)]) == {(2, 1, "near", 0.7)}
    assert links_of(items, [unit(0), near(0, 1, 0.5)]) == set()


def test_same_event_different_text_is_not_a_duplicate() -> None:
    """The lexical guard: a very high cosine alone links nothing."""
    items = [item(1, QUAKE), item(2, QUAKE_OTHER_WRITEUP, minutes=10)]
    assert containment(shingles(QUAKE), shingles(QUAKE_OTHER_WRITEUP)) < PARAMS.shingle_threshold
    assert links_of(items, [unit(0), near(0, 1, 0.99)]) == set()


def test_with_hashing_embedder_vectors() -> None:
    texts = [QUAKE, BANK, QUAKE_EDITED, QUAKE_OTHER_WRITEUP]
    vectors = HashingEmbedder(256).embed(texts)
    items = [item(i + 1, text, minutes=i) for i, text in enumerate(texts)]
    assert {(link.article_id, link.canonical_id, link.kind) for link in find_duplicates(items, vectors, PARAMS)} \
        == {(3, 1, "near")}


def test_short_texts_are_never_near_linked() -> None:
    items = [item(1, "Storm hits coast"), item(2, "Storm hits the coast", minutes=1)]
    params = DedupParams(near_threshold=0.5, shingle_threshold=0.0, lexical_only_threshold=0.0, lexical_floor=0.0)
    assert links_of(items, [unit(0), unit(0)], params) == set()
    # identical normalized text is still an exact duplicate
    assert links_of([item(1, "Storm hits coast"), item(2, "storm hits COAST.", minutes=1)],
                    [unit(0), unit(1)]) == {(2, 1, "text", 1.0)}


def test_canonical_is_earliest_among_new_articles_whatever_their_order() -> None:
    items = [item(7, QUAKE_EDITED, minutes=30), item(8, QUAKE, minutes=5), item(9, QUAKE, minutes=60)]
    found = links_of(items, [near(0, 1, 0.95), unit(0), unit(0)])
    assert found == {(7, 8, "near", 0.95), (9, 8, "text", 1.0)}


def test_ties_in_time_go_to_the_lower_id() -> None:
    items = [item(5, QUAKE, url="https://x.example/q"), item(3, BANK, url="https://x.example/q")]
    assert links_of(items, [unit(0), unit(1)]) == {(5, 3, "url", 1.0)}


def test_earlier_copy_arriving_later_becomes_canonical() -> None:
    """Old canonical 1 (with its duplicate 2) is re-pointed to the new, earlier 3."""
    items = [
        item(1, QUAKE, minutes=10, url="https://a.example/quake", new=False),
        item(2, QUAKE, minutes=20, url="https://b.example/quake", new=False, duplicate_of=1),
        item(3, QUAKE_EDITED, minutes=0, url="https://a.example/quake"),
    ]
    found = links_of(items, [unit(0), unit(0), unit(1)])
    assert {(a, c) for a, c, _, _ in found} == {(1, 3), (2, 3)}
    assert (1, 3, "url", 1.0) in found


def test_a_re_pointed_duplicate_keeps_the_kind_and_score_of_its_link() -> None:
    items = [
        item(1, QUAKE, minutes=10, url="https://a.example/quake", new=False),
        item(2, QUAKE_EDITED, minutes=20, new=False, duplicate_of=1, kind="near", score=0.91),
        item(4, QUAKE, minutes=25, new=False, duplicate_of=1, kind="text", score=1.0),
        item(3, BANK, minutes=0, url="https://a.example/quake"),
    ]
    found = links_of(items, [unit(0), unit(0), unit(0), unit(1)])
    assert found == {(1, 3, "url", 1.0), (2, 3, "near", 0.91), (4, 3, "text", 1.0)}


def test_earlier_near_copy_arriving_later_becomes_canonical() -> None:
    items = [item(1, QUAKE_EDITED, minutes=10, new=False), item(2, QUAKE, minutes=0)]
    assert links_of(items, [unit(0), near(0, 1, 0.93)]) == {(1, 2, "near", 0.93)}


def test_chains_resolve_to_one_root() -> None:
    """4 copies 3 (text) which copies 1 (near), and 0 is earlier than all (url of 1)."""
    items = [
        item(1, QUAKE_EDITED, minutes=10, url="https://a.example/q", new=False),
        item(3, QUAKE, minutes=20),
        item(4, QUAKE, minutes=30),
        item(9, BANK, minutes=0, url="https://a.example/q"),
    ]
    found = find_duplicates(items, np.stack([unit(0), near(0, 1, 0.95), near(0, 1, 0.95), unit(2)]), PARAMS)
    assert {(link.article_id, link.canonical_id) for link in found} == {(1, 9), (3, 9), (4, 9)}
    assert all(link.canonical_id == 9 for link in found)


def test_already_linked_old_articles_are_left_alone() -> None:
    items = [
        item(1, QUAKE, new=False),
        item(2, QUAKE_EDITED, minutes=5, new=False, duplicate_of=1),
        item(3, BANK, minutes=10, new=False),
        item(4, QUAKE, minutes=15),  # a new copy: the only link
        item(5, QUAKE_OTHER_WRITEUP, minutes=20),  # new, not a copy: no link
    ]
    found = links_of(items, [unit(0), near(0, 1, 0.95), unit(2), unit(0), near(0, 3, 0.97)])
    assert found == {(4, 1, "text", 1.0)}


def test_old_articles_only_produce_no_links() -> None:
    items = [item(1, QUAKE, new=False), item(2, QUAKE, minutes=5, new=False, duplicate_of=1)]
    assert links_of(items, [unit(0), unit(0)]) == set()


def test_old_duplicate_whose_canonical_left_the_window_is_left_alone() -> None:
    """The canonical (id 1) is older than the window: its copy keeps its link, untouched."""
    items = [item(2, QUAKE, minutes=5, new=False, duplicate_of=1), item(3, BANK, minutes=10)]
    assert links_of(items, [unit(0), unit(1)]) == set()


def test_copy_of_an_old_duplicate_links_to_its_canonical() -> None:
    """Exact keys of duplicates count too: 3 has 2's URL, and 2 is a copy of 1."""
    items = [
        item(1, QUAKE, minutes=0, url="https://a.example/q", new=False),
        item(2, QUAKE_EDITED, minutes=5, url="https://b.example/q", new=False, duplicate_of=1),
        item(3, BANK, minutes=10, url="https://b.example/q"),
    ]
    assert links_of(items, [unit(0), near(0, 1, 0.95), unit(2)]) == {(3, 1, "url", 1.0)}


def test_copy_of_a_new_duplicate_links_to_its_canonical() -> None:
    items = [
        item(1, QUAKE, minutes=0, url="https://a.example/q"),
        item(2, QUAKE_EDITED, minutes=5, url="https://b.example/q"),
        item(3, BANK, minutes=10, url="https://b.example/q"),
    ]
    assert links_of(items, [unit(0), near(0, 1, 0.95), unit(2)]) == {(2, 1, "near", 0.95), (3, 1, "url", 1.0)}


def test_neighbours_limits_the_search() -> None:
    """With one neighbour, the nearest (a different article) hides the copy."""
    items = [item(1, QUAKE), item(2, BANK, minutes=1), item(3, QUAKE_EDITED, minutes=2)]
    copy = 0.92 * unit(0) + 0.3 * unit(1) + np.sqrt(1 - 0.92 ** 2 - 0.3 ** 2) * unit(2)
    vectors = [unit(0), near(0, 1, 0.99), copy.astype(np.float32)]
    assert float(vectors[2] @ vectors[1]) > float(vectors[2] @ vectors[0]) >= PARAMS.near_threshold
    assert {(a, c) for a, c, _, _ in links_of(items, vectors)} == {(3, 1)}
    assert links_of(items, vectors, DedupParams(neighbours=1)) == set()


# --- the batched search decides as one search per article did ---------------------------------------
# The reference: find_duplicates before it searched in blocks, verbatim.
def reference_find_duplicates(items: Sequence[DedupItem], vectors: np.ndarray, params: DedupParams) -> list[Link]:
    """dedup.find_duplicates as it was before the batched search (one FAISS search per new
    article against an index grown as it goes), kept verbatim as the reference."""
    import numpy as np

    if not items:
        return []
    canonical: dict[int, int] = {}          # index -> index of its canonical (root)
    for index, item in enumerate(items):  # noqa: B007 - verbatim
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
        if items[index].canonical_url:
            by_url.setdefault(items[index].canonical_url, root)
        if items[index].text_hash != EMPTY_TEXT_HASH:
            by_hash.setdefault(items[index].text_hash, root)

    old_roots = [i for i, it in enumerate(items) if not it.is_new and canonical[i] == i and i not in outside]
    for index in old_roots:
        register(index, index)
    for index, item in enumerate(items):
        if not item.is_new and canonical[index] != index:
            register(index, canonical[index])

    new_order = sorted((i for i, it in enumerate(items) if it.is_new), key=lambda i: _order_key(items[i]))
    # FAISS rows: articles searched for copies (each group's canonical at the time it was
    # added); a row keeps its own article, whose group root is canonical[article]
    index_rows: list[int] = list(old_roots)
    faiss_index = _reference_build_index(vectors, index_rows)
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
            _reference_replace_root(by_url, root, child, items[child].canonical_url)
            _reference_replace_root(by_hash, root, child, items[child].text_hash)
            # the old root's row stays (its text still finds its copies); the child is added
            index_rows.append(child)
            faiss_index.add(np.ascontiguousarray(vectors[child:child + 1], dtype=np.float32))
        else:
            canonical[child] = root
            kinds[child] = (kind, score)
            register(child, root)

    for index in new_order:
        item = items[index]
        root = by_url.get(item.canonical_url) if item.canonical_url else None
        if root is not None:
            attach(index, root, "url", 1.0)
            continue
        root = by_hash.get(item.text_hash) if item.text_hash != EMPTY_TEXT_HASH else None
        if root is not None:
            attach(index, root, "text", 1.0)
            continue
        best: tuple[float, int] | None = None
        if faiss_index is not None and faiss_index.ntotal:
            k = min(params.neighbours, faiss_index.ntotal)
            scores, rows = faiss_index.search(vectors[index:index + 1], k)
            own = shingles_of(index)
            for score, row in zip(scores[0], rows[0]):  # noqa: B905 - verbatim
                if row < 0 or score < params.lexical_floor:
                    continue
                member = index_rows[row]
                candidate = canonical[member]
                if candidate == index:
                    continue
                other = shingles_of(member)
                if min(len(own), len(other)) < params.min_shingles:
                    continue
                if is_near_duplicate(float(score), containment(own, other), params):  # noqa: SIM102 - verbatim
                    if best is None or score > best[0]:
                        best = (float(score), candidate)
        if best is not None:
            attach(index, best[1], "near", min(best[0], 1.0))
            continue
        # a new canonical: searchable by later new articles
        register(index, index)
        index_rows.append(index)
        if faiss_index is None:
            faiss_index = _reference_build_index(vectors, [])
        faiss_index.add(np.ascontiguousarray(vectors[index:index + 1], dtype=np.float32))

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


def _reference_replace_root(table: dict[str, int], old: int, new: int, new_key: str | None) -> None:
    for key, value in list(table.items()):
        if value == old:
            table[key] = new
    if new_key:
        table.setdefault(new_key, new)


def _reference_build_index(vectors: np.ndarray, rows: Sequence[int]):  # noqa: ANN202 - faiss.IndexFlatIP
    import faiss
    import numpy as np

    index = faiss.IndexFlatIP(vectors.shape[1])
    if len(rows):
        index.add(np.ascontiguousarray(vectors[list(rows)], dtype=np.float32))
    return index


VOCABULARY = [f"w{i}" for i in range(300)]


def random_texts(rng: random.Random, count: int) -> list[str]:
    """Stories (shared words, few shared sequences), exact copies, near copies (edited, cut,
    extended), same words in another order, and very short texts."""
    stories = [rng.sample(VOCABULARY, 12) for _ in range(max(count // 25, 2))]
    texts: list[str] = []
    for _ in range(count):
        roll = rng.random()
        if texts and roll < 0.08:
            texts.append(rng.choice(texts).upper() if rng.random() < 0.5 else rng.choice(texts))
        elif texts and roll < 0.22:
            words = rng.choice(texts).split()
            words = [rng.choice(VOCABULARY) if rng.random() < 0.12 else w for w in words]
            if rng.random() < 0.3:
                words = words[:max(len(words) // 2, 3)]
            elif rng.random() < 0.3:
                words += rng.sample(VOCABULARY, 10)
            texts.append(" ".join(words))
        elif texts and roll < 0.26:
            words = rng.choice(texts).split()
            rng.shuffle(words)
            texts.append(" ".join(words))
        elif roll < 0.30:
            texts.append(" ".join(rng.sample(VOCABULARY, rng.randint(0, 3))))
        else:
            story = rng.choice(stories)
            texts.append(" ".join(rng.choice(story) if rng.random() < 0.6 else rng.choice(VOCABULARY)
                                  for _ in range(rng.randint(15, 60))))
    return texts


def random_vectors(rng: random.Random, texts: Sequence[str], planted: str) -> np.ndarray:
    """``hashing``: the bag-of-words embedder (a small width, so that unrelated texts collide too);
    ``random``: random directions, and for each copy of an earlier text (same first words) a
    vector at a random cosine of 0.5–1.0 to it, sometimes exactly equal (ties)."""
    if planted == "hashing":
        return HashingEmbedder(48).embed(list(texts))
    generator = np.random.default_rng(rng.randrange(2 ** 32))
    vectors = generator.standard_normal((len(texts), 24)).astype(np.float32)
    first: dict[str, int] = {}
    for i, text in enumerate(texts):
        key = " ".join(text.lower().split()[:3])
        if key in first and key:
            base = vectors[first[key]]
            cosine = 1.0 if rng.random() < 0.2 else rng.uniform(0.5, 1.0)
            noise = generator.standard_normal(24).astype(np.float32)
            noise -= (noise @ base) / (base @ base) * base
            vectors[i] = cosine * base / np.linalg.norm(base) + np.sqrt(1 - cosine ** 2) * noise / np.linalg.norm(noise)
        first.setdefault(key, i)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def two_runs(seed: int, planted: str, old: int, new: int) -> tuple[list[DedupItem], list[DedupItem], np.ndarray]:
    """A first run (every article new) and a second run over the same window with ``new`` more
    articles, some published before old ones (late arrivals take over their groups), and old
    copies whose canonical has left the window.  The old articles carry the reference's links."""
    rng = random.Random(seed)
    texts = random_texts(rng, old + new)
    vectors = random_vectors(rng, texts, planted)
    urls = [f"https://x.test/{rng.randrange((old + new) * 4)}" if rng.random() < 0.5 else None for _ in texts]
    minutes = [rng.uniform(0, 5000) for _ in texts]
    first = [DedupItem(article_id=i + 1, published=T0 + timedelta(minutes=minutes[i]), text=texts[i],
                       canonical_url=urls[i], text_hash=text_hash("", texts[i]), is_new=True) for i in range(old)]
    links = {link.article_id: link for link in reference_find_duplicates(first, vectors[:old], PARAMS)}
    second = []
    for i, it in enumerate(first):
        link = links.get(it.article_id)
        outside = link is None and rng.random() < 0.03
        second.append(DedupItem(
            article_id=it.article_id, published=it.published, text=it.text, canonical_url=it.canonical_url,
            text_hash=it.text_hash, is_new=False, duplicate_of=10 ** 6 + i if outside else link and link.canonical_id,
            link_kind=link.kind if link else ("near" if outside else None),
            link_score=link.score if link else (0.9 if outside else None)))
    second += [DedupItem(article_id=old + i + 1, published=T0 + timedelta(minutes=minutes[old + i] - 300),
                         text=texts[old + i], canonical_url=urls[old + i], text_hash=text_hash("", texts[old + i]),
                         is_new=True) for i in range(new)]
    return first, second, vectors


def same_links(items: list[DedupItem], vectors: np.ndarray, params: DedupParams) -> int:
    expected = reference_find_duplicates(items, vectors, params)
    found = find_duplicates(items, vectors, params)
    assert [(link.article_id, link.canonical_id, link.kind) for link in found] == \
        [(link.article_id, link.canonical_id, link.kind) for link in expected]
    assert np.allclose([link.score for link in found], [link.score for link in expected], rtol=0, atol=1e-5)
    return sum(link.kind == "near" for link in expected)


@pytest.mark.parametrize("planted", ["hashing", "random"])
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("block", [512, 7])
def test_batched_search_links_exactly_as_one_search_per_article(planted: str, seed: int, block: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands of articles, two runs each, shipped and looser thresholds, few neighbours:
    the same links (ids, kinds; scores to float precision) as the reference."""
    monkeypatch.setattr(dedup, "SEARCH_BLOCK", block)
    first, second, vectors = two_runs(seed, planted, old=1500, new=1100)
    loose = DedupParams(near_threshold=0.7, shingle_threshold=0.3, lexical_only_threshold=0.4, lexical_floor=0.4,
                        neighbours=3)
    near_links = 0
    for params in (PARAMS, loose):
        near_links += same_links(first, vectors[:len(first)], params)
        near_links += same_links(second, vectors, params)
    assert near_links > 50  # the comparison saw near-duplicate decisions, not only exact keys


def test_batched_search_reports_progress_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dedup, "SEARCH_BLOCK", 4)
    items = [item(i, f"text number {i} " * 3, minutes=i) for i in range(1, 11)] + [item(11, QUAKE, new=False)]
    calls: list[tuple[int, int]] = []
    find_duplicates(items, HashingEmbedder(16).embed([it.text for it in items]), PARAMS,
                    progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 10), (8, 10), (10, 10)]


@pytest.mark.parametrize("seed", [3, 8])
def test_the_approximate_search_of_a_large_run_finds_the_exact_search_links(seed: int,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A run over APPROXIMATE_PAIRS searches an IVF index: forced on thousands of articles with
    small lists (as small a share of them probed as in a 100k window), nearly every link of the
    exact search is made, and no other."""
    first, second, vectors = two_runs(seed, "near", old=1500, new=1100)
    exact = {(x.article_id, x.canonical_id, x.kind) for x in find_duplicates(second, vectors, PARAMS)}
    monkeypatch.setattr(dedup, "APPROXIMATE_PAIRS", 0)
    monkeypatch.setattr(dedup, "IVF_ROWS_PER_LIST", 8)
    approximate = {(x.article_id, x.canonical_id, x.kind) for x in find_duplicates(second, vectors, PARAMS)}
    assert sum(kind == "near" for _, _, kind in exact) > 20
    assert len(exact & approximate) >= 0.99 * len(exact)
    assert len(approximate - exact) <= 0.01 * len(exact)


def test_the_approximate_index_is_trained_the_same_way_each_time() -> None:
    vectors = HashingEmbedder(64).embed([f"story {i % 50} words {i} more {i * 7}" for i in range(3000)])
    one, two = dedup.ivf_index(vectors), dedup.ivf_index(vectors)
    assert (one.nlist, one.nprobe) == (3000 // dedup.IVF_ROWS_PER_LIST, min(dedup.IVF_PROBES, one.nlist))
    one.add(vectors)
    two.add(vectors)
    assert np.array_equal(one.search(vectors[:200], 5)[1], two.search(vectors[:200], 5)[1])


@pytest.mark.parametrize("seed", [3, 8])
@pytest.mark.parametrize("planted", ["hashing", "random"])
def test_a_first_run_from_the_window_pairs_links_as_the_exact_search(seed: int, planted: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A large first run takes each article's nearest from the window's pairs (graph.window_pairs):
    the links of the exact search, blocks of any size, scores within float rounding."""
    from clustering.graph import window_pairs

    monkeypatch.setattr(dedup, "SEARCH_BLOCK", 97)
    first, _, vectors = two_runs(seed, planted, old=1500, new=0)
    exact = find_duplicates(first, vectors, PARAMS)
    searched = dedup.searched_items(first)
    assert len(searched) < len(first) - 50                    # copies by URL or text are left out
    for rows in (None, searched):
        pairs = window_pairs(vectors, 32, dedup.pairs_floor(PARAMS), rows=rows)
        assert pairs is not None
        paired = find_duplicates(first, vectors, PARAMS, pairs=pairs)
        assert [(x.article_id, x.canonical_id, x.kind) for x in paired] == \
            [(x.article_id, x.canonical_id, x.kind) for x in exact]
        assert np.allclose([x.score for x in paired], [x.score for x in exact], rtol=0, atol=1e-5)
    assert sum(x.kind == "near" for x in exact) > 20
    keyed = {x.article_id for x in exact if x.kind in ("url", "text")}
    assert {first[i].article_id for i in range(len(first)) if i not in set(searched)} == keyed


def test_pairs_must_reach_the_lexical_floor() -> None:
    from clustering.graph import window_pairs

    first, _, vectors = two_runs(1, "random", old=300, new=0)
    shallow = window_pairs(vectors, 8, 0.9)
    assert shallow is not None
    with pytest.raises(ValueError, match="lexical_floor"):
        find_duplicates(first, vectors, PARAMS, pairs=shallow)


def test_only_a_large_first_run_shares_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, _ = two_runs(2, "random", old=200, new=20)
    assert not dedup.shares_search(first)                       # under APPROXIMATE_PAIRS
    monkeypatch.setattr(dedup, "APPROXIMATE_PAIRS", 100)
    assert dedup.shares_search(first)
    assert not dedup.shares_search(second)                      # old articles: not a first run
