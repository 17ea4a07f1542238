"""stories.py: stories from proposed groups — matching, splits, merges, waiting, ids.

Pure over arrays (HashingEmbedder vectors or hand-built ones), no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from clustering.embed import HashingEmbedder
from clustering.scoring import ScoredEdges, StoryParams
from clustering.stories import StoryDoc, assign_stories, new_story_id, reconcile, story_features

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
PARAMS = StoryParams()
EMBEDDER = HashingEmbedder(256)


def quake(place: str, magnitude: str) -> list[str]:
    return [
        f"Magnitude {magnitude} earthquake hits {place}. Rescue teams in {place} search collapsed buildings "
        "after the earthquake.",
        f"Rescue teams search collapsed buildings in {place} after magnitude {magnitude} earthquake hits the "
        f"{place} coast.",
        f"{place} earthquake: rescue teams search buildings that collapsed when the {magnitude} earthquake "
        f"hit {place}.",
        f"After the {magnitude} earthquake in {place}, rescue teams search collapsed buildings across {place}.",
        f"{place} earthquake death toll rises as rescue teams search collapsed buildings after {magnitude} quake.",
    ]


QUAKE = quake("Northvale", "6.1")
BANK = [
    "Eastmarch central bank raises interest rates. The Eastmarch central bank cites inflation as rates rise.",
    "The central bank of Eastmarch raises interest rates again as Eastmarch inflation persists.",
    "Interest rates rise in Eastmarch: central bank raises rates to fight Eastmarch inflation.",
    "Eastmarch inflation pushes the central bank of Eastmarch to raise interest rates.",
]
LONE = "Pinecrest bakery wins national award for sourdough bread"


def docs_for(texts: list[str], *, first_id: int = 1, story_ids: dict[int, str] | None = None,
             hours: list[int] | None = None) -> list[StoryDoc]:
    story_ids = story_ids or {}
    docs = []
    for offset, text in enumerate(texts):
        article_id = first_id + offset
        hour = hours[offset] if hours is not None else offset
        docs.append(StoryDoc(article_id=article_id, title="", text=text, published=T0 + timedelta(hours=hour),
                             source=f"feed{offset % 3}", story_id=story_ids.get(article_id),
                             is_new=article_id not in story_ids))
    return docs


def assign(docs: list[StoryDoc], params: StoryParams = PARAMS):  # noqa: ANN201
    return assign_stories(docs, EMBEDDER.embed([d.text for d in docs]), params)


def stories_of(story_of: dict[int, str]) -> dict[str, set[int]]:
    grouped: dict[str, set[int]] = {}
    for article_id, story_id in story_of.items():
        grouped.setdefault(story_id, set()).add(article_id)
    return grouped


# --- end to end on text -----------------------------------------------------------------------------
def test_clear_clusters_form_stories_and_a_lone_article_stays_unassigned() -> None:
    result = assign(docs_for(QUAKE + BANK + [LONE]))
    assert stories_of(result.story_of) == {"s1": {1, 2, 3, 4, 5}, "s6": {6, 7, 8, 9}}
    assert set(result.new_story_ids) == {"s1", "s6"} and result.updated_story_ids == ()
    assert 10 not in result.story_of


def test_a_window_holding_a_single_event_forms_its_story() -> None:
    result = assign(docs_for(QUAKE + [LONE]))
    assert stories_of(result.story_of) == {"s1": {1, 2, 3, 4, 5}} and result.new_story_ids == ("s1",)


def test_story_id_derives_from_the_earliest_article_not_the_lowest_id() -> None:
    result = assign(docs_for(QUAKE[:4], first_id=20, hours=[5, 3, 9, 4]))  # id 21 is the earliest
    assert set(result.story_of.values()) == {new_story_id(21)} == {"s21"}


_WORDS = ("apples bridges candles dolphins engines forests glaciers harbours islands jackets kettles lanterns "
          "meadows needles orchards pebbles quarries rivers saddles tunnels umbrellas violins wagons yachts "
          "zebras anchors barrels cactus daisies easels falcons gardens hammers igloos jugglers kites lemons "
          "magnets nests owls").split()
FILLER = [f"{_WORDS[2 * n]} {_WORDS[2 * n + 1]}" for n in range(20)]
"""Twenty unrelated lines: a window large enough for a pair alone to make a story."""


def test_two_articles_found_a_story_only_when_the_pair_is_sure() -> None:
    result = assign(docs_for(QUAKE[:2] + FILLER))  # two tellings of one event: a pair story
    assert stories_of(result.story_of) == {"s1": {1, 2}}
    loose = [QUAKE[0], "Rescue teams train for collapsed buildings in a national exercise"]
    assert assign(docs_for(loose + FILLER)).story_of == {}  # a pair of one kind, not of one event
    assert assign(docs_for(QUAKE[:2] + [LONE])).story_of == {}  # a window of three: names say too much
    assert set(assign(docs_for(QUAKE[:2] + [LONE]), StoryParams(min_cluster_size=2)).story_of) == {1, 2}


def test_nothing_to_assign() -> None:
    assert assign([]).story_of == {}
    assert assign(docs_for(QUAKE[:3], story_ids={1: "s1", 2: "s1", 3: "s1"})).story_of == {}


def test_two_events_of_one_kind_with_different_names_are_two_stories() -> None:
    result = assign(docs_for(quake("Northvale", "6.1")[:4] + quake("Southport", "5.4")[:4]))
    assert stories_of(result.story_of) == {"s1": {1, 2, 3, 4}, "s5": {5, 6, 7, 8}}


def test_new_articles_join_their_stories_and_assigned_ones_stay() -> None:
    run1 = assign(docs_for(QUAKE[:3] + BANK[:3]))
    assert stories_of(run1.story_of) == {"s1": {1, 2, 3}, "s4": {4, 5, 6}}
    run2 = assign(docs_for(QUAKE[:3] + BANK[:3] + QUAKE[3:] + BANK[3:] + [LONE], story_ids=run1.story_of))
    assert run2.story_of == {7: "s1", 8: "s1", 9: "s4"}  # only the new articles; the lone one stays out
    assert run2.new_story_ids == () and run2.updated_story_ids == ("s1", "s4") and run2.moved_from == {}


def test_a_new_story_forms_next_to_existing_ones() -> None:
    result = assign(docs_for(QUAKE[:3] + BANK, story_ids={1: "s1", 2: "s1", 3: "s1"}))
    assert stories_of(result.story_of) == {"s4": {4, 5, 6, 7}}
    assert result.new_story_ids == ("s4",) and result.updated_story_ids == ()


def test_assignment_is_deterministic() -> None:
    docs = docs_for(QUAKE + BANK + [LONE])
    assert assign(docs) == assign(docs)


# --- reconciliation rules, on hand-built vectors ----------------------------------------------------------
VECTORS = StoryParams(entity_weight=0.0, story_threshold=0.6)
"""Similarity = the vectors' dot product; groups merge from 0.6."""
EVENT_A = np.array([1.0, 0.0, 0.0], dtype=np.float32)
EVENT_B = np.array([0.5, 0.8660254, 0.0], dtype=np.float32)  # cosine 0.5 to EVENT_A: one kind, two events
UNRELATED = np.array([0.0, 0.0, 1.0], dtype=np.float32)


def around(base: np.ndarray, count: int, start: int) -> list[np.ndarray]:
    """``count`` unit vectors close to ``base`` (cosine ~0.99), each nudged along its own axis."""
    result = []
    for k in range(count):
        vector = np.zeros(64, dtype=np.float32)
        vector[:3] = base
        vector[3 + start + k] = 0.12
        result.append(vector / np.linalg.norm(vector))
    return result


def vector_docs(vectors: list[np.ndarray], *, story_ids: dict[int, str] | None = None, new: set[int] | None = None,
                pending: dict[int, str] | None = None) -> tuple[list[StoryDoc], np.ndarray]:
    story_ids, pending = story_ids or {}, pending or {}
    docs = [StoryDoc(article_id=i, title="", text=f"article {i}", published=T0 + timedelta(hours=i),
                     source="feed", story_id=story_ids.get(i), is_new=new is None or i in new,
                     pending_group=pending.get(i)) for i in range(1, len(vectors) + 1)]
    return docs, np.stack(vectors)


def test_a_split_moves_the_second_events_articles_to_a_new_story() -> None:
    """s1 once mixed 4 articles of event A with 3 of event B; 5 more of B show two events."""
    docs, matrix = vector_docs(around(EVENT_A, 4, 0) + around(EVENT_B, 3, 4) + around(EVENT_B, 5, 7),
                               story_ids={i: "s1" for i in range(1, 8)}, new=set(range(8, 13)))
    result = assign_stories(docs, matrix, VECTORS)
    assert result.new_story_ids == ("s5",)  # founded by the earliest article of event B
    assert result.story_of == {i: "s5" for i in range(5, 13)}
    assert result.moved_from == {5: "s1", 6: "s1", 7: "s1"}
    assert result.split_from == {"s5": "s1"} and result.merged_into == {}
    assert result.updated_story_ids == ("s1",)  # it lost members


def test_two_stories_of_one_event_merge_into_the_older() -> None:
    """Early in a stream one event founded two stories; now one group holds both."""
    docs, matrix = vector_docs(around(EVENT_A, 7, 0), story_ids={1: "s1", 2: "s1", 3: "s1", 4: "s4", 5: "s4",
                                                                 6: "s4"}, new={7})
    result = assign_stories(docs, matrix, VECTORS)
    assert result.story_of == {4: "s1", 5: "s1", 6: "s1", 7: "s1"}
    assert result.moved_from == {4: "s4", 5: "s4", 6: "s4"}
    assert result.merged_into == {"s4": "s1"} and result.new_story_ids == ()


def test_a_small_new_group_like_an_existing_story_waits_one_run_then_founds() -> None:
    vectors = around(EVENT_A, 4, 0) + around(EVENT_B, 3, 4)
    story_ids = {i: "s1" for i in range(1, 5)}
    docs, matrix = vector_docs(vectors, story_ids=story_ids, new={5, 6, 7})
    first = assign_stories(docs, matrix, VECTORS)
    assert first.story_of == {} and first.new_story_ids == ()
    assert first.pending == {5: "p5", 6: "p5", 7: "p5"}
    docs, matrix = vector_docs(vectors, story_ids=story_ids, new=set(), pending=first.pending)
    second = assign_stories(docs, matrix, VECTORS)  # it held together: it founds its story
    assert second.new_story_ids == ("s5",) and second.story_of == {5: "s5", 6: "s5", 7: "s5"}
    assert second.pending == {}


def test_a_small_new_group_founds_at_once_when_unlike_anything_or_large_enough() -> None:
    story_ids = {i: "s1" for i in range(1, 5)}
    docs, matrix = vector_docs(around(EVENT_A, 4, 0) + around(UNRELATED, 3, 4), story_ids=story_ids, new={5, 6, 7})
    assert assign_stories(docs, matrix, VECTORS).new_story_ids == ("s5",)
    docs, matrix = vector_docs(around(EVENT_A, 4, 0) + around(EVENT_B, 3, 4), story_ids=story_ids, new={5, 6, 7})
    assert assign_stories(docs, matrix, replace(VECTORS, confirm_size=3)).new_story_ids == ("s5",)
    assert assign_stories(docs, matrix, replace(VECTORS, confirm_similarity=0.6)).new_story_ids == ("s5",)


def test_on_a_first_run_small_groups_found_their_stories_at_once() -> None:
    docs, matrix = vector_docs(around(EVENT_A, 4, 0) + around(EVENT_B, 3, 4))
    result = assign_stories(docs, matrix, VECTORS)
    assert result.new_story_ids == ("s1", "s5") and result.pending == {}


def edges(pairs: dict[tuple[int, int], float], threshold: float = 0.5) -> ScoredEdges:
    heads = np.array([a for a, _ in pairs], dtype=np.int64)
    tails = np.array([b for _, b in pairs], dtype=np.int64)
    return ScoredEdges(heads, tails, np.array(list(pairs.values())), np.full(len(pairs), threshold))


def test_a_group_that_cannot_confirm_after_waiting_joins_its_neighbours_story() -> None:
    """Rows 0–3 are s1; the proposal groups s1's row 3 with new rows 4 and 5 (a story's second
    half, like a strike and its end).  They waited a run already and cannot confirm (only two
    of them wait); their close neighbours are in s1, so they join it."""
    docs, matrix = vector_docs(around(EVENT_A, 4, 0) + around(EVENT_B, 2, 4),
                               story_ids={1: "s1", 2: "s1", 3: "s1", 4: "s1"}, new=set(),
                               pending={5: "p4", 6: "p4"})
    features = story_features(docs, matrix, VECTORS)
    close = edges({(4, 0): 0.7, (4, 1): 0.7, (5, 0): 0.7, (5, 1): 0.65, (4, 5): 0.9, (3, 4): 0.9})
    result = reconcile(docs, [[0, 1, 2], [3, 4, 5]], features, close, VECTORS)
    assert result.story_of == {5: "s1", 6: "s1"} and result.pending == {}
    assert result.new_story_ids == () and result.moved_from == {}
    # the same without having waited: they wait (a first wait is never cut short)
    fresh = [replace(d, pending_group=None, is_new=d.article_id in (5, 6)) for d in docs]
    waiting = reconcile(fresh, [[0, 1, 2], [3, 4, 5]], features, close, VECTORS)
    assert waiting.story_of == {} and waiting.pending == {5: "p4", 6: "p4"}
    # neighbours that are not clearly in one story keep them waiting
    split_vote = edges({(4, 0): 0.7, (4, 5): 0.9, (5, 1): 0.4})
    undecided = reconcile(docs, [[0, 1, 2], [3, 4, 5]], features, split_vote, VECTORS)
    assert undecided.story_of == {} and set(undecided.pending) == {5, 6}


def test_a_new_story_never_reuses_an_id() -> None:
    docs, matrix = vector_docs(around(EVENT_A, 3, 0))
    assert assign_stories(docs, matrix, VECTORS, taken_ids={"s1"}).new_story_ids == ("s2",)
    assert assign_stories(docs, matrix, VECTORS, taken_ids={"s1", "s2", "s3"}).new_story_ids == ("s1-2",)


@pytest.mark.parametrize(("options", "message"), [
    ({"min_cluster_size": 1}, "min_cluster_size"),
    ({"min_cluster_size": 4, "confirm_size": 3}, "confirm_size"),
    ({"neighbours": 0}, "neighbours"),
    ({"confirm_similarity": 1.2}, "confirm_similarity"),
    ({"embedding_weight": -0.1}, "weights"),
    ({"embedding_weight": 0, "lexical_weight": 0}, "weights"),
    ({"story_threshold": -2}, "story_threshold"),
    ({"story_probability": 1.0}, "story_probability"),
    ({"topic_threshold": -1.01}, "topic_threshold"),
])
def test_story_params_validation(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StoryParams(**options)  # type: ignore[arg-type]


def test_the_part_of_a_split_story_that_readers_saw_most_of_keeps_its_id() -> None:
    """s1 mixed 8 articles of event A with 3 of event B, each of B's with three wire copies: twelve of
    the story's twenty articles were B's.  Five more of B show two events: B keeps s1, A moves."""
    vectors = around(EVENT_A, 8, 0) + around(EVENT_B, 3, 8) + around(EVENT_B, 5, 11)
    docs, matrix = vector_docs(vectors, story_ids={i: "s1" for i in range(1, 12)}, new=set(range(12, 17)))
    copied = [replace(d, copies=3) if d.article_id in (9, 10, 11) else d for d in docs]
    result = assign_stories(copied, matrix, VECTORS)
    assert result.new_story_ids == ("s2",)  # s1 is taken: the next earliest of A's articles names it
    assert result.story_of == {**{i: "s2" for i in range(1, 9)}, **{i: "s1" for i in range(12, 17)}}
    assert result.moved_from == {i: "s1" for i in range(1, 9)}
    # counting rows alone, A's eight outnumber B's three: A keeps s1 and B moves
    plain = assign_stories(docs, matrix, VECTORS)
    assert plain.new_story_ids == ("s9",) and plain.moved_from == {9: "s1", 10: "s1", 11: "s1"}


def test_an_orphan_new_in_a_later_run_waits_one_run_then_joins_its_neighbours_story() -> None:
    """A new article near story s1 but under its merge threshold (cosine 0.55): its nearest neighbours
    are all s1's.  On a first run it joins at once; in a later run it waits a run first."""
    near_a = np.array([0.55, 0.0, 0.835], dtype=np.float32)
    vectors = around(EVENT_A, 5, 0) + around(near_a, 1, 5)
    docs, matrix = vector_docs(vectors)
    assert assign_stories(docs, matrix, VECTORS).story_of == {i: "s1" for i in range(1, 7)}
    story_ids = {i: "s1" for i in range(1, 6)}
    docs, matrix = vector_docs(vectors, story_ids=story_ids, new={6})
    first = assign_stories(docs, matrix, VECTORS)
    assert first.story_of == {} and first.pending == {6: "o6"}
    docs, matrix = vector_docs(vectors, story_ids=story_ids, new=set(), pending=first.pending)
    second = assign_stories(docs, matrix, VECTORS)
    assert second.story_of == {6: "s1"} and second.pending == {}


def test_a_new_article_that_barely_fits_the_story_its_group_matched_waits_a_run_before_joining() -> None:
    """Rows 0–4 are s1; the proposal puts two new articles in s1's group, one close to it (cosine 0.99)
    and one at cosine 0.45 (under the 0.6 merge threshold).  The close one joins; the other waits a run,
    then joins if its group still holds it."""
    weak = np.array([0.45, 0.0, 0.893], dtype=np.float32)
    docs, matrix = vector_docs(around(EVENT_A, 6, 0) + around(weak, 1, 6),
                               story_ids={i: "s1" for i in range(1, 6)}, new={6, 7})
    features = story_features(docs, matrix, VECTORS)
    none = edges({})
    result = reconcile(docs, [[0, 1, 2, 3, 4, 5, 6]], features, none, VECTORS)
    assert result.story_of == {6: "s1"} and result.pending == {7: "j7"}
    waited = [replace(d, is_new=False, pending_group="j7") if d.article_id == 7 else d for d in docs]
    assert reconcile(waited, [[0, 1, 2, 3, 4, 5, 6]], features, none, VECTORS).story_of == {6: "s1", 7: "s1"}
    # a first run takes everything in at once
    first = [replace(d, story_id=None, is_new=True) for d in docs]
    assert set(reconcile(first, [[0, 1, 2, 3, 4, 5, 6]], features, none, VECTORS).story_of) == set(range(1, 8))
