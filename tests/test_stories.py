"""stories.py: pure over arrays (HashingEmbedder vectors or hand-built ones), no database."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from clustering.embed import HashingEmbedder
from clustering.stories import (
    StoryDoc,
    StoryParams,
    assign_stories,
    group_topics,
    hybrid_similarity,
    name_terms,
    new_story_id,
    story_labels,
)

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
        docs.append(StoryDoc(article_id=article_id, title=text.split(".")[0], text=text,
                             published=T0 + timedelta(hours=hour), source=f"feed{offset % 3}",
                             story_id=story_ids.get(article_id)))
    return docs


def assign(docs: list[StoryDoc], params: StoryParams = PARAMS):  # noqa: ANN201
    return assign_stories(docs, EMBEDDER.embed([d.text for d in docs]), params)


def stories_of(story_of: dict[int, str]) -> dict[str, set[int]]:
    grouped: dict[str, set[int]] = {}
    for article_id, story_id in story_of.items():
        grouped.setdefault(story_id, set()).add(article_id)
    return grouped


# --- names ---------------------------------------------------------------------------------------
def test_name_terms_drop_sentence_initial_capitals() -> None:
    assert name_terms("Police said the Harbour Authority closed the port.") == ["harbour", "authority"]
    assert name_terms("It rained. Officials in Berlin said so.") == ["berlin"]
    assert name_terms("Storm warning!  Residents of Kent told to stay home") == ["kent"]


def test_name_terms_keep_multiword_names_and_numbers() -> None:
    assert name_terms("Joe Biden visited Kyiv on Tuesday") == ["joe", "biden", "kyiv", "tuesday"]
    assert name_terms("The Bank of England raised rates") == ["bank", "england"]
    assert name_terms("a 6.1 magnitude quake killed 12 people at 10:30") == ["6.1", "12", "10:30"]
    assert name_terms("") == []
    assert name_terms("no capitals here at all") == []


# --- similarity ------------------------------------------------------------------------------------
def test_hybrid_similarity_shape_symmetry_diagonal() -> None:
    texts = QUAKE[:3] + BANK[:2] + [LONE]
    vectors = EMBEDDER.embed(texts)
    similarity = hybrid_similarity(texts, vectors, PARAMS)
    assert similarity.shape == (6, 6) and similarity.dtype == np.float32
    assert np.allclose(similarity, similarity.T, atol=1e-6)
    assert np.all(np.diag(similarity) == 1.0)
    assert np.all(similarity <= 1.0 + 1e-6) and np.all(similarity >= -1.0 - 1e-6)
    assert similarity[0, 1] > 0.5 > similarity[0, 3]  # same story vs different story


def test_hybrid_similarity_weights() -> None:
    texts = QUAKE[:2] + BANK[:1]
    vectors = EMBEDDER.embed(texts)
    embedding_only = hybrid_similarity(texts, vectors, StoryParams(lexical_weight=0, entity_weight=0))
    expected = vectors @ vectors.T
    np.fill_diagonal(expected, 1.0)
    assert np.allclose(embedding_only, expected, atol=1e-6)
    # weights are relative: doubling all of them changes nothing
    doubled = StoryParams(embedding_weight=2 * PARAMS.embedding_weight, lexical_weight=2 * PARAMS.lexical_weight,
                          entity_weight=2 * PARAMS.entity_weight)
    assert np.allclose(hybrid_similarity(texts, vectors, doubled), hybrid_similarity(texts, vectors, PARAMS),
                       atol=1e-6)


def test_hybrid_similarity_without_any_words_or_names() -> None:
    texts = ["...", "!!!"]
    vectors = np.eye(2, dtype=np.float32)
    assert np.allclose(hybrid_similarity(texts, vectors, PARAMS), np.eye(2))


# --- assign_stories ----------------------------------------------------------------------------------
def test_clear_clusters_form_stories_and_a_lone_article_stays_unassigned() -> None:
    docs = docs_for(QUAKE + BANK + [LONE])
    result = assign(docs)
    assert stories_of(result.story_of) == {"s1": {1, 2, 3, 4, 5}, "s6": {6, 7, 8, 9}}
    assert set(result.new_story_ids) == {"s1", "s6"}
    assert result.updated_story_ids == ()
    assert 10 not in result.story_of
    assert all(len(members) >= PARAMS.min_cluster_size for members in stories_of(result.story_of).values())


def test_a_window_holding_a_single_event_forms_its_story() -> None:
    """HDBSCAN alone never makes one cluster of everything (a first run, a small feed set)."""
    result = assign(docs_for(QUAKE + [LONE]))
    assert stories_of(result.story_of) == {"s1": {1, 2, 3, 4, 5}}
    assert result.new_story_ids == ("s1",)


def test_story_id_derives_from_the_earliest_article_not_the_lowest_id() -> None:
    docs = docs_for(QUAKE[:4], first_id=20, hours=[5, 3, 9, 4])  # id 21 is the earliest
    result = assign(docs)
    assert set(result.story_of.values()) == {new_story_id(21)} == {"s21"}


def test_too_few_articles_found_no_story() -> None:
    result = assign(docs_for(QUAKE[:2] + [LONE]))
    assert result.story_of == {} and result.new_story_ids == ()
    params = StoryParams(min_cluster_size=2)
    assert set(assign(docs_for(QUAKE[:2] + [LONE]), params).story_of) == {1, 2}


def test_nothing_to_assign() -> None:
    assert assign([]).story_of == {}
    docs = docs_for(QUAKE[:3], story_ids={1: "s1", 2: "s1", 3: "s1"})
    assert assign(docs) == assign_stories([], np.zeros((0, 256), dtype=np.float32), PARAMS)


def test_two_events_of_one_kind_with_different_names_are_two_stories() -> None:
    docs = docs_for(quake("Northvale", "6.1")[:4] + quake("Southport", "5.4")[:4])
    assert stories_of(assign(docs).story_of) == {"s1": {1, 2, 3, 4}, "s5": {5, 6, 7, 8}}


def test_assigned_articles_never_change_story() -> None:
    """Run 1 founds two stories; run 2 brings more articles; nothing already assigned moves."""
    first = docs_for(QUAKE[:3] + BANK[:3])
    run1 = assign(first)
    assert stories_of(run1.story_of) == {"s1": {1, 2, 3}, "s4": {4, 5, 6}}

    # run 2: the window also holds new articles of both stories and a lone one
    texts = QUAKE[:3] + BANK[:3] + QUAKE[3:] + BANK[3:] + [LONE]
    second = docs_for(texts, story_ids=run1.story_of)
    run2 = assign(second)
    assert set(run2.story_of) == {7, 8, 9}  # only the new articles, never the old
    assert run2.story_of == {7: "s1", 8: "s1", 9: "s4"}
    assert run2.new_story_ids == ()
    assert run2.updated_story_ids == ("s1", "s4")


def test_wrongly_assigned_articles_stay_put() -> None:
    """An assigned article never moves to another existing story (only to a new one split off)."""
    texts = QUAKE[:3] + BANK[:3] + [QUAKE[3]]
    story_ids = {1: "s1", 2: "s1", 3: "s4", 4: "s4", 5: "s4", 6: "s4"}  # 3 is "wrong"
    result = assign(docs_for(texts, story_ids=story_ids))
    assert set(result.story_of) == {7}
    assert result.story_of[7] == "s1"


def test_a_new_article_joins_the_existing_story() -> None:
    texts = QUAKE[:3] + [QUAKE[4]]
    result = assign(docs_for(texts, story_ids={1: "s1", 2: "s1", 3: "s1"}))
    assert result.story_of == {4: "s1"}
    assert result.updated_story_ids == ("s1",) and result.new_story_ids == ()


def test_an_unrelated_new_article_does_not_join() -> None:
    texts = QUAKE[:3] + [LONE]
    result = assign(docs_for(texts, story_ids={1: "s1", 2: "s1", 3: "s1"}))
    assert result.story_of == {} and result.updated_story_ids == ()


def test_new_story_next_to_existing_ones() -> None:
    texts = QUAKE[:3] + BANK
    result = assign(docs_for(texts, story_ids={1: "s1", 2: "s1", 3: "s1"}))
    assert stories_of(result.story_of) == {"s4": {4, 5, 6, 7}}
    assert result.new_story_ids == ("s4",) and result.updated_story_ids == ()


def test_assignment_is_deterministic() -> None:
    docs = docs_for(QUAKE + BANK + [LONE])
    assert assign(docs) == assign(docs)


# --- splits, deferred founding, ids (hand-built vectors: similarity = their dot product) -------------------
VECTOR_ONLY = StoryParams(lexical_weight=0, entity_weight=0)
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
    docs = [StoryDoc(article_id=i, title=f"article {i}", text=f"article {i}", published=T0 + timedelta(hours=i),
                     source="feed", story_id=story_ids.get(i), is_new=new is None or i in new,
                     pending_group=pending.get(i)) for i in range(1, len(vectors) + 1)]
    return docs, np.stack(vectors)


def test_a_split_moves_the_articles_of_the_second_event_to_a_new_story() -> None:
    """s1 once mixed 4 articles of event A with 3 of event B; 5 more of B show two events."""
    vectors = around(EVENT_A, 4, 0) + around(EVENT_B, 3, 4) + around(EVENT_B, 5, 7)
    docs, matrix = vector_docs(vectors, story_ids={i: "s1" for i in range(1, 8)}, new=set(range(8, 13)))
    result = assign_stories(docs, matrix, VECTOR_ONLY)
    assert result.new_story_ids == ("s5",)  # founded by the earliest article of event B
    assert result.story_of == {i: "s5" for i in range(5, 13)}
    assert result.moved_from == {5: "s1", 6: "s1", 7: "s1"}
    assert result.updated_story_ids == ("s1",)  # it lost members
    assert result.pending == {}


def test_existing_stories_are_never_merged() -> None:
    """Two stories that now fall in one group both keep their articles; a new one joins the closer."""
    vectors = around(EVENT_A, 3, 0) + around(EVENT_A, 3, 3) + around(EVENT_A, 1, 6)
    docs, matrix = vector_docs(vectors, story_ids={1: "s1", 2: "s1", 3: "s1", 4: "s4", 5: "s4", 6: "s4"},
                               new={7})
    result = assign_stories(docs, matrix, VECTOR_ONLY)
    assert set(result.story_of) == {7} and result.story_of[7] in {"s1", "s4"}
    assert result.moved_from == {} and result.new_story_ids == ()


def test_a_small_new_group_like_an_existing_story_waits_one_run() -> None:
    vectors = around(EVENT_A, 4, 0) + around(EVENT_B, 3, 4)
    story_ids = {i: "s1" for i in range(1, 5)}
    docs, matrix = vector_docs(vectors, story_ids=story_ids, new={5, 6, 7})
    first = assign_stories(docs, matrix, VECTOR_ONLY)
    assert first.story_of == {} and first.new_story_ids == ()
    assert first.pending == {5: "p5", 6: "p5", 7: "p5"}

    # next run: the group held together, so it founds its story
    docs, matrix = vector_docs(vectors, story_ids=story_ids, new=set(), pending=first.pending)
    second = assign_stories(docs, matrix, VECTOR_ONLY)
    assert second.new_story_ids == ("s5",) and second.story_of == {5: "s5", 6: "s5", 7: "s5"}
    assert second.pending == {}


def test_a_small_new_group_founds_at_once_when_it_resembles_nothing_or_is_large() -> None:
    story_ids = {i: "s1" for i in range(1, 5)}
    docs, matrix = vector_docs(around(EVENT_A, 4, 0) + around(UNRELATED, 3, 4), story_ids=story_ids,
                               new={5, 6, 7})
    assert assign_stories(docs, matrix, VECTOR_ONLY).new_story_ids == ("s5",)
    docs, matrix = vector_docs(around(EVENT_A, 4, 0) + around(EVENT_B, 3, 4), story_ids=story_ids,
                               new={5, 6, 7})
    assert assign_stories(docs, matrix, replace(VECTOR_ONLY, confirm_size=3)).new_story_ids == ("s5",)
    assert assign_stories(docs, matrix, replace(VECTOR_ONLY, confirm_similarity=0.6)).new_story_ids == ("s5",)


def test_on_a_first_run_small_groups_found_their_stories_at_once() -> None:
    docs, matrix = vector_docs(around(EVENT_A, 4, 0) + around(EVENT_B, 3, 4))
    result = assign_stories(docs, matrix, VECTOR_ONLY)
    assert result.new_story_ids == ("s1", "s5") and result.pending == {}


def test_a_new_story_never_reuses_an_id() -> None:
    docs, matrix = vector_docs(around(EVENT_A, 3, 0))
    assert assign_stories(docs, matrix, VECTOR_ONLY, taken_ids={"s1"}).new_story_ids == ("s2",)
    assert assign_stories(docs, matrix, VECTOR_ONLY, taken_ids={"s1", "s2", "s3"}).new_story_ids == ("s1-2",)


@pytest.mark.parametrize(("options", "message"), [
    ({"min_cluster_size": 1}, "min_cluster_size"),
    ({"min_cluster_size": 4, "confirm_size": 3}, "confirm_size"),
    ({"confirm_similarity": 1.2}, "confirm_similarity"),
    ({"min_samples": 0}, "min_samples"),
    ({"embedding_weight": -0.1}, "weights"),
    ({"embedding_weight": 0, "lexical_weight": 0, "entity_weight": 0}, "weights"),
    ({"attach_threshold": 1.5}, "attach_threshold"),
    ({"story_threshold": -2}, "story_threshold"),
    ({"topic_threshold": -1.01}, "topic_threshold"),
])
def test_story_params_validation(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StoryParams(**options)  # type: ignore[arg-type]


# --- labels and topics ----------------------------------------------------------------------------------
def test_headline_is_the_member_nearest_the_centroid() -> None:
    diagonal = np.array([[1, 0, 0], [0.7071, 0.7071, 0], [0, 1, 0]], dtype=np.float32)
    labels = story_labels({"s1": ["Edge one", "Middle", "Edge two"]}, {"s1": ["a a", "b b", "c c"]},
                          {"s1": diagonal}, 3)
    assert labels["s1"][0] == "Middle"


def test_headline_falls_back_to_the_text_without_a_title() -> None:
    text = "x" * 200
    labels = story_labels({"s1": [""]}, {"s1": [text]}, {"s1": np.eye(1, 3, dtype=np.float32)}, 3)
    assert labels["s1"][0] == "x" * 120


def test_keywords_favour_story_specific_words() -> None:
    quake_texts = [t + " Officials said." for t in QUAKE[:4]]
    bank_texts = [t + " Officials said." for t in BANK]
    vectors = EMBEDDER.embed(quake_texts + bank_texts)
    labels = story_labels({"s1": [t[:30] for t in quake_texts], "s5": [t[:30] for t in bank_texts]},
                          {"s1": quake_texts, "s5": bank_texts},
                          {"s1": vectors[:4], "s5": vectors[4:]}, 4)
    quake_keywords, bank_keywords = labels["s1"][1], labels["s5"][1]
    assert len(quake_keywords) == 4 and len(bank_keywords) == 4
    assert {"northvale", "earthquake"} <= set(quake_keywords)
    assert {"eastmarch", "bank"} & set(bank_keywords)
    assert "officials" not in quake_keywords + bank_keywords  # in every story: not a keyword
    assert not set(quake_keywords) & set(bank_keywords)
    assert story_labels({"s1": ["t"]}, {"s1": ["Northvale Northvale"]}, {"s1": np.eye(1, 3, dtype=np.float32)},
                        0)["s1"][1] == ()


def test_group_topics_close_centroids_share_the_oldest_story_topic() -> None:
    centroids = np.array([[0.0, 0.0, 1.0],      # s12: alone
                          [0.9, 0.4359, 0.0],   # s10: close to s9
                          [1.0, 0.0, 0.0]], dtype=np.float32)  # s9: the oldest of the pair
    topics = group_topics(["s12", "s10", "s9"], centroids, 0.45)
    assert topics == {"s12": "t12", "s10": "t9", "s9": "t9"}  # numeric, not text, order


def test_group_topics_threshold() -> None:
    centroids = np.array([[1.0, 0.0], [0.5, 0.8660]], dtype=np.float32)  # cosine 0.5
    assert group_topics(["s1", "s2"], centroids, 0.45) == {"s1": "t1", "s2": "t1"}
    assert group_topics(["s1", "s2"], centroids, 0.6) == {"s1": "t1", "s2": "t2"}
    # centroids need not be normalized
    assert group_topics(["s1", "s2"], centroids * 7, 0.45) == {"s1": "t1", "s2": "t1"}


def test_group_topics_small_inputs() -> None:
    assert group_topics([], np.zeros((0, 3), dtype=np.float32), 0.45) == {}
    assert group_topics(["s4"], np.ones((1, 3), dtype=np.float32), 0.45) == {"s4": "t4"}


def test_group_topics_joins_mutually_nearest_stories_from_the_pair_threshold() -> None:
    a, b, c = [1.0, 0.0, 0.0], [0.45, 0.893, 0.0], [0.0, 0.0, 1.0]  # a-b cosine 0.45, c apart
    centroids = np.array([a, b, c], dtype=np.float32)
    ids = ["s1", "s2", "s3"]
    assert group_topics(ids, centroids, 0.55) == {"s1": "t1", "s2": "t2", "s3": "t3"}
    assert group_topics(ids, centroids, 0.55, 0.4) == {"s1": "t1", "s2": "t1", "s3": "t3"}
    assert group_topics(ids, centroids, 0.55, 0.5) == {"s1": "t1", "s2": "t2", "s3": "t3"}
    # s1's nearest is s2, but s2's nearest is s3: not a mutual pair, s1 stays alone
    c_near_b = [0.0, 0.95, 0.312]
    centroids = np.array([a, b, c_near_b], dtype=np.float32)
    assert group_topics(ids, centroids, 0.55, 0.4) == {"s1": "t1", "s2": "t2", "s3": "t2"}


def test_group_topics_orders_numbered_variant_ids_after_their_base() -> None:
    centroids = np.array([[1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    assert group_topics(["s7-2", "s7"], centroids, 0.5) == {"s7-2": "t7", "s7": "t7"}
