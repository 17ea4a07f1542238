"""dedup.py: pure over arrays, no database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from clustering.dedup import (
    DedupItem,
    DedupParams,
    Link,
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
