"""stories.py: pure over arrays (HashingEmbedder vectors or hand-built ones), no database."""

from __future__ import annotations

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
    doubled = StoryParams(embedding_weight=0.8, lexical_weight=0.4, entity_weight=0.8)
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
    """Even when the clustering would now disagree, an assigned article keeps its story."""
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


@pytest.mark.parametrize(("options", "message"), [
    ({"min_cluster_size": 1}, "min_cluster_size"),
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
